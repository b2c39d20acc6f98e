"""A custom thing model with events and an action with input, for tests that need them
(the seed's standard models define no events)."""

from __future__ import annotations

from typing import Any

SENSOR_MODEL: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "", "CategoryId": "0"},
    "properties": [
        {
            "id": "power",
            "name": "power",
            "mode": "rw",
            "define": {"type": "bool", "mapping": {"0": "off", "1": "on"}},
        },
        {
            "id": "temperature",
            "name": "t",
            "mode": "r",
            "define": {
                "type": "float",
                "min": "-40",
                "max": "125",
                "start": "0",
                "step": "0.1",
                "unit": "C",
            },
        },
        {
            "id": "brightness",
            "name": "b",
            "mode": "rw",
            "define": {
                "type": "int",
                "min": "0",
                "max": "100",
                "start": "50",
                "step": "1",
                "unit": "%",
            },
        },
        {
            "id": "label",
            "name": "l",
            "mode": "rw",
            "define": {"type": "string", "min": "0", "max": "8"},
        },
    ],
    "events": [
        {
            "id": "alarm",
            "name": "alarm",
            "type": "alert",
            "params": [
                {
                    "id": "level",
                    "name": "level",
                    "define": {
                        "type": "int",
                        "min": "0",
                        "max": "3",
                        "start": "0",
                        "step": "1",
                        "unit": "",
                    },
                }
            ],
        },
        {
            "id": "status_report",
            "name": "status",
            "type": "info",
            "params": [
                {
                    "id": "message",
                    "name": "m",
                    "define": {"type": "string", "min": "0", "max": "64"},
                }
            ],
        },
    ],
    "actions": [
        {
            "id": "blink",
            "name": "blink",
            "input": [
                {
                    "id": "times",
                    "name": "times",
                    "define": {
                        "type": "int",
                        "min": "1",
                        "max": "10",
                        "start": "1",
                        "step": "1",
                        "unit": "",
                    },
                }
            ],
            "output": [
                {
                    "id": "done",
                    "name": "done",
                    "define": {"type": "bool", "mapping": {"0": "no", "1": "yes"}},
                }
            ],
        },
    ],
}
