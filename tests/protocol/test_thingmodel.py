"""Thing-model import/export and value validation (device-protocol.md §4)."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivcloud.protocol.errors import ThingModelError, ValidationFailed
from ivcloud.protocol.thingmodel import (
    STANDARD_MODELS,
    StandardModel,
    ThingModel,
    default_value,
    load_standard_model,
    loads_thing_model,
    parse_thing_model,
)
from ivcloud.protocol.values import (
    ArrayDefine,
    BoolDefine,
    Define,
    EnumDefine,
    FloatDefine,
    IntDefine,
    StringDefine,
    StringEnumDefine,
    StructDefine,
    TimestampDefine,
)

# --------------------------------------------------------------------------- fixtures


def _prop(pid: str, define: dict[str, Any], mode: str = "rw") -> dict[str, Any]:
    return {"id": pid, "name": pid, "desc": "", "mode": mode, "define": define, "required": False}


#: One property of every data type, plus an event and actions with params.
FULL_DOC: dict[str, Any] = {
    "version": "1.0",
    "profile": {"ProductId": "ABCDEFGHIJ", "CategoryId": "1"},
    "properties": [
        _prop("power", {"type": "bool", "mapping": {"0": "off", "1": "on"}}),
        _prop(
            "level",
            {"type": "int", "min": "-10", "max": "100", "start": "0", "step": "1", "unit": "%"},
        ),
        _prop(
            "temp",
            {
                "type": "float",
                "min": "-20.5",
                "max": "50",
                "start": "0",
                "step": "0.5",
                "unit": "C",
            },
        ),
        _prop("mode", {"type": "enum", "mapping": {"0": "a", "1": "b", "3": "d"}}),
        _prop("color", {"type": "stringenum", "mapping": {"red": "Red", "blue": "Blue"}}),
        _prop("label", {"type": "string", "min": "2", "max": "8"}),
        _prop("seen", {"type": "timestamp"}),
        _prop(
            "pos",
            {
                "type": "struct",
                "specs": [
                    {
                        "id": "x",
                        "name": "x",
                        "dataType": {
                            "type": "int",
                            "min": "0",
                            "max": "9",
                            "start": "0",
                            "step": "1",
                            "unit": "",
                        },
                    },
                    {
                        "id": "tags",
                        "name": "tags",
                        "dataType": {
                            "type": "array",
                            "arrayInfo": {"type": "string", "min": "0", "max": "3"},
                        },
                    },
                ],
            },
        ),
        _prop(
            "nums",
            {
                "type": "array",
                "arrayInfo": {
                    "type": "float",
                    "min": "0",
                    "max": "1",
                    "start": "0",
                    "step": "0.1",
                    "unit": "",
                },
            },
        ),
        _prop(
            "people",
            {
                "type": "array",
                "arrayInfo": {
                    "type": "struct",
                    "specs": [
                        {
                            "id": "id",
                            "name": "id",
                            "dataType": {"type": "string", "min": "0", "max": "10"},
                        },
                        {
                            "id": "on",
                            "name": "on",
                            "dataType": {"type": "bool", "mapping": {"0": "n", "1": "y"}},
                        },
                    ],
                },
            },
        ),
        _prop("status", {"type": "bool", "mapping": {"0": "a", "1": "b"}}, mode="r"),
    ],
    "events": [
        {
            "id": "alarm",
            "name": "Alarm",
            "desc": "",
            "type": "alert",
            "required": False,
            "params": [
                {
                    "id": "code",
                    "name": "code",
                    "desc": "",
                    "define": {
                        "type": "int",
                        "min": "0",
                        "max": "9",
                        "start": "0",
                        "step": "1",
                        "unit": "",
                    },
                },
                {
                    "id": "msg",
                    "name": "msg",
                    "desc": "",
                    "define": {"type": "string", "min": "0", "max": "5"},
                },
            ],
        }
    ],
    "actions": [
        {
            "id": "open",
            "name": "Open",
            "desc": "",
            "input": [
                {
                    "id": "secs",
                    "name": "secs",
                    "define": {
                        "type": "int",
                        "min": "1",
                        "max": "60",
                        "start": "1",
                        "step": "1",
                        "unit": "s",
                    },
                }
            ],
            "output": [
                {
                    "id": "result",
                    "name": "result",
                    "define": {"type": "bool", "mapping": {"0": "fail", "1": "ok"}},
                }
            ],
            "required": False,
        }
    ],
}


@pytest.fixture(scope="module")
def full() -> ThingModel:
    return parse_thing_model(FULL_DOC)


def _raw_standard(name: str) -> dict[str, Any]:
    text = resources.files("ivcloud.protocol").joinpath("models", f"{name}.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _model_error(doc: object) -> str:
    with pytest.raises(ThingModelError) as info:
        parse_thing_model(doc)
    return str(info.value)


def _with_define(define: Any, *, index: int = 0) -> dict[str, Any]:
    doc = {"properties": [_prop(f"p{i}", {"type": "bool"}) for i in range(index)]}
    doc["properties"].append(_prop(f"p{index}", define))
    return doc


# --------------------------------------------------------------------------- standard models


@pytest.mark.parametrize("name", STANDARD_MODELS)
def test_standard_model_parses_and_exports_identically(name: StandardModel) -> None:
    model = load_standard_model(name)
    raw = _raw_standard(name)
    exported = model.to_json()
    assert exported == raw
    # Key order too: the export is diffable against the file it came from.
    assert json.dumps(exported, ensure_ascii=False) == json.dumps(raw, ensure_ascii=False)
    assert parse_thing_model(exported) == model


@pytest.mark.parametrize("name", STANDARD_MODELS)
def test_standard_model_defaults_validate(name: StandardModel) -> None:
    model = load_standard_model(name)
    assert model.validate_report(model.defaults()) == model.defaults()
    for prop in model.properties:
        model.validate_report({prop.id: default_value(prop)})


def test_standard_model_counts_match_readme() -> None:
    counts = {n: (len(m.properties), len(m.events), len(m.actions))
              for n in STANDARD_MODELS for m in [load_standard_model(n)]}  # fmt: skip
    assert counts == {"camera": (6, 0, 0), "lock-image": (9, 0, 1), "lock-video": (19, 0, 2)}


def test_standard_model_is_cached_and_immutable() -> None:
    model = load_standard_model("camera")
    assert load_standard_model("camera") is model
    with pytest.raises(AttributeError):
        model.version = "2"  # type: ignore[misc]
    bound = model.with_product_id("ABCDEFGHIJ")
    assert bound.product_id == "ABCDEFGHIJ" and model.product_id == ""
    assert bound.to_json()["profile"]["ProductId"] == "ABCDEFGHIJ"
    assert bound != model and isinstance(hash(model), int)


def test_unknown_standard_model() -> None:
    with pytest.raises(ValueError, match="unknown standard model"):
        load_standard_model("fridge")  # type: ignore[arg-type]


def test_lock_image_empty_struct() -> None:
    model = load_standard_model("lock-image")
    prop = model.property("mjpg_info")
    assert prop is not None and isinstance(prop.define, StructDefine)
    assert prop.define.specs == ()
    assert model.validate_report({"mjpg_info": {}}) == {"mjpg_info": {}}
    with pytest.raises(ValidationFailed, match=r"mjpg_info\.x: unknown struct member"):
        model.validate_report({"mjpg_info": {"x": 1}})


def test_lock_video_paths() -> None:
    model = load_standard_model("lock-video")
    with pytest.raises(ValidationFailed, match=r"^battery_percentage: 101 is above max 100$"):
        model.validate_report({"battery_percentage": 101})
    with pytest.raises(ValidationFailed, match=r"^faces\[1\]\.face_name: string of length 21"):
        model.validate_report({"faces": [{"id": "1"}, {"id": "2", "face_name": "x" * 21}]})
    with pytest.raises(ValidationFailed, match=r"^user_list\.shared_person\[0\]: 5 is not a str"):
        model.validate_report({"user_list": {"shared_person": [5]}})
    with pytest.raises(ValidationFailed, match=r"^wakeup_state: property is read-only"):
        model.validate_control({"wakeup_state": 1})
    assert model.validate_control({"child_lock_state": True}) == {"child_lock_state": 1}
    assert model.validate_action_output("unlock_remote", {"result": 1}) == {"result": 1}
    assert model.validate_action_input("wake_up", {}) == {}


def test_lookups(full: ThingModel) -> None:
    prop = full.property("level")
    assert prop is not None and prop.writable and isinstance(prop.define, IntDefine)
    assert prop.define.min == -10 and prop.define.unit == "%"
    status = full.property("status")
    assert status is not None and not status.writable
    assert full.property("nope") is None
    event = full.event("alarm")
    assert event is not None and event.type == "alert"
    assert [p.id for p in event.params] == ["code", "msg"]
    action = full.action("open")
    assert action is not None and action.output[0].id == "result"
    assert full.event("nope") is None and full.action("nope") is None
    assert full.product_id == "ABCDEFGHIJ" and full.category_id == "1"


def test_full_round_trip(full: ThingModel) -> None:
    exported = full.to_json()
    assert parse_thing_model(exported) == full
    assert parse_thing_model(json.loads(json.dumps(exported))).to_json() == exported


def test_defaults(full: ThingModel) -> None:
    assert full.defaults() == {
        "power": 0,
        "level": 0,
        "temp": 0,
        "mode": 0,
        "color": "red",
        "label": "00",
        "seen": 0,
        "pos": {"x": 0, "tags": []},
        "nums": [],
        "people": [],
        "status": 0,
    }
    assert full.validate_report(full.defaults()) == full.defaults()
    assert default_value(IntDefine(min=5, max=9, start=7)) == 7


# --------------------------------------------------------------------------- tolerance


def test_tolerates_what_real_exports_contain() -> None:
    doc = {
        "version": "1.0",
        "profile": {"ProductId": "X", "CategoryId": 113, "Extra": "y"},
        "unknownTop": [1, 2],
        "properties": [
            {"id": "a", "mode": "r", "define": {"type": "bool"}, "extra": 1},
            {"id": "b", "mode": "rw", "define": {"type": "int", "min": 0, "max": 10.0}},
            {"id": "c", "mode": "rw", "name": None, "define": {"type": "string"}},
            {"id": "d", "mode": "rw", "define": {"type": "float", "min": "0", "max": "1e2"}},
        ],
    }
    model = parse_thing_model(doc)
    assert model.category_id == "113" and model.events == () and model.actions == ()
    a, b, c, d = model.properties
    assert (a.name, a.desc, a.required) == ("", "", False)
    assert a.define == BoolDefine(mapping=(("0", "关"), ("1", "开")))
    assert b.define == IntDefine(min=0, max=10, start=0, step=1, unit="")
    assert c.define == StringDefine(min=0, max=2048)
    assert d.define == FloatDefine(min=0, max=100.0, start=0, step=1)
    exported = model.to_json()
    assert exported["properties"][1]["define"] == {
        "type": "int", "min": "0", "max": "10", "start": "0", "step": "1", "unit": "",
    }  # fmt: skip
    assert parse_thing_model(exported) == model


def test_start_defaults_to_min_when_zero_is_out_of_range() -> None:
    model = parse_thing_model(_with_define({"type": "int", "min": "5", "max": "9"}))
    assert model.properties[0].define == IntDefine(min=5, max=9, start=5)


def test_empty_document_is_an_empty_model() -> None:
    model = parse_thing_model({})
    assert model.properties == () and model.version == "1.0"
    with pytest.raises(ValidationFailed, match="unknown property"):
        model.validate_report({"x": 1})


def test_loads_thing_model() -> None:
    assert loads_thing_model(json.dumps(FULL_DOC)) == parse_thing_model(FULL_DOC)
    assert loads_thing_model(json.dumps(FULL_DOC).encode()) == parse_thing_model(FULL_DOC)
    with pytest.raises(ThingModelError, match="not a JSON document"):
        loads_thing_model("{")
    with pytest.raises(ThingModelError, match="not a JSON document"):
        loads_thing_model("[" * 100_000)


# --------------------------------------------------------------------------- invalid models

BAD_DEFINES: list[tuple[Any, str]] = [
    ("x", r"^properties\[0\]\.define: expected an object, got \"x\"$"),
    ({}, r"^properties\[0\]\.define\.type: missing$"),
    ({"type": "blob"}, r'^properties\[0\]\.define\.type: "blob" is not a data type'),
    ({"type": 3}, r"^properties\[0\]\.define\.type: 3 is not a data type"),
    # int / float bounds
    ({"type": "int", "max": "1"}, r"^properties\[0\]\.define\.min: missing$"),
    ({"type": "int", "min": "0"}, r"^properties\[0\]\.define\.max: missing$"),
    ({"type": "int", "min": "0", "max": "abc"},
     r'^properties\[0\]\.define\.max: "abc" is not a number$'),
    ({"type": "int", "min": "1.5", "max": "3"},
     r'^properties\[0\]\.define\.min: "1.5" is not an integer$'),
    ({"type": "int", "min": 1.5, "max": "3"}, r"properties\[0\]\.define\.min: 1.5 is not an int"),
    ({"type": "int", "min": True, "max": "3"}, r"properties\[0\]\.define\.min: true is not a num"),
    ({"type": "int", "min": [], "max": "3"}, r"properties\[0\]\.define\.min: an array is not a n"),
    ({"type": "int", "min": "1" * 40, "max": "3"}, r"properties\[0\]\.define\.min: .* out of ran"),
    ({"type": "int", "min": "5", "max": "1"}, r"^properties\[0\]\.define\.min: 5 is above max 1$"),
    ({"type": "int", "min": "0", "max": "9", "start": "10"},
     r"^properties\[0\]\.define\.start: 10 is outside \[0, 9\]$"),
    ({"type": "int", "min": "0", "max": "9", "step": "0"},
     r"^properties\[0\]\.define\.step: 0 is not above 0$"),
    ({"type": "float", "min": "0", "max": "9", "step": "-0.5"},
     r"^properties\[0\]\.define\.step: -0.5 is not above 0$"),
    ({"type": "float", "min": "nan", "max": "9"}, r'define\.min: "nan" is not a number$'),
    ({"type": "float", "min": "0", "max": "1e999"}, r'define\.max: "1e999" is not a finite num'),
    ({"type": "float", "min": "0", "max": math.inf}, r"define\.max: inf is not a finite number"),
    ({"type": "float", "min": "1_0", "max": "20"}, r'define\.min: "1_0" is not a number$'),
    ({"type": "int", "min": "0", "max": "9", "unit": 5}, r"define\.unit: 5 is not a string$"),
    # string
    ({"type": "string", "min": "-1", "max": "5"}, r"^properties\[0\]\.define\.min: -1 is negat"),
    ({"type": "string", "min": "0", "max": "2049"},
     r"^properties\[0\]\.define\.max: 2049 is above the limit 2048$"),
    ({"type": "string", "min": "6", "max": "5"}, r"^properties\[0\]\.define\.min: 6 is above max"),
    # enum
    ({"type": "enum"}, r"^properties\[0\]\.define\.mapping: missing$"),
    ({"type": "enum", "mapping": {}}, r"^properties\[0\]\.define\.mapping: must not be empty$"),
    ({"type": "enum", "mapping": []}, r"^properties\[0\]\.define\.mapping: expected an object"),
    ({"type": "enum", "mapping": {"a": "x"}},
     r'^properties\[0\]\.define\.mapping: key "a" is not an integer$'),
    ({"type": "enum", "mapping": {"1.0": "x"}}, r'mapping: key "1.0" is not an integer$'),
    ({"type": "enum", "mapping": {"1": "x", "01": "y"}},
     r'^properties\[0\]\.define\.mapping: keys "1" and "01" are the same$'),
    ({"type": "enum", "mapping": {"1": 5}},
     r"^properties\[0\]\.define\.mapping\.1: label 5 is not a string$"),
    # bool
    ({"type": "bool", "mapping": {"0": "a", "2": "b"}},
     r'^properties\[0\]\.define\.mapping: keys must be exactly "0" and "1", got "0", "2"$'),
    ({"type": "bool", "mapping": {"0": "a"}}, r'mapping: keys must be exactly "0" and "1"'),
    ({"type": "bool", "mapping": {}}, r"^properties\[0\]\.define\.mapping: must not be empty$"),
    # stringenum
    ({"type": "stringenum", "mapping": {"": "x"}},
     r"^properties\[0\]\.define\.mapping: a key is the empty string$"),
    ({"type": "stringenum", "mapping": {}}, r"define\.mapping: must not be empty$"),
    # struct
    ({"type": "struct"}, r"^properties\[0\]\.define\.specs: missing$"),
    ({"type": "struct", "specs": {}}, r"^properties\[0\]\.define\.specs: expected an array"),
    ({"type": "struct", "specs": [5]}, r"^properties\[0\]\.define\.specs\[0\]: expected an obj"),
    ({"type": "struct", "specs": [{"id": "a"}]},
     r"^properties\[0\]\.define\.specs\[0\]\.dataType: missing$"),
    ({"type": "struct", "specs": [{"id": "9a", "dataType": {"type": "bool"}}]},
     r'^properties\[0\]\.define\.specs\[0\]\.id: "9a" is not an id'),
    ({"type": "struct", "specs": [{"id": "a", "dataType": {"type": "bool"}},
                                  {"id": "a", "dataType": {"type": "int"}}]},
     r'^properties\[0\]\.define\.specs\[1\]\.id: duplicate id "a" \(also properties\[0\]\.define'
     r"\.specs\[0\]\)$"),
    ({"type": "struct", "specs": [{"id": "a", "dataType": {"type": "struct", "specs": []}}]},
     r"^properties\[0\]\.define\.specs\[0\]\.dataType\.type: struct inside a struct is not all"),
    ({"type": "struct", "specs": [{"id": "a", "dataType": {"type": "int", "min": "x"}}]},
     r'^properties\[0\]\.define\.specs\[0\]\.dataType\.min: "x" is not a number$'),
    ({"type": "struct", "specs": [{"id": "a", "dataType": {
        "type": "array", "arrayInfo": {"type": "struct", "specs": []}}}]},
     r"^properties\[0\]\.define\.specs\[0\]\.dataType\.arrayInfo\.type: struct inside a struct"),
    # array
    ({"type": "array"}, r"^properties\[0\]\.define\.arrayInfo: missing$"),
    ({"type": "array", "arrayInfo": "int"}, r"^properties\[0\]\.define\.arrayInfo: expected an o"),
    ({"type": "array", "arrayInfo": {}}, r"^properties\[0\]\.define\.arrayInfo\.type: missing$"),
    ({"type": "array", "arrayInfo": {"type": "bool"}},
     r'^properties\[0\]\.define\.arrayInfo\.type: "bool" is not allowed as an array element'),
    ({"type": "array", "arrayInfo": {"type": "array", "arrayInfo": {"type": "int"}}},
     r'^properties\[0\]\.define\.arrayInfo\.type: "array" is not allowed as an array element'),
    ({"type": "array", "arrayInfo": {"type": "string", "max": "9999"}},
     r"^properties\[0\]\.define\.arrayInfo\.max: 9999 is above the limit 2048$"),
    ({"type": "array", "arrayInfo": {"type": "struct", "specs": [
        {"id": "s", "dataType": {"type": "struct", "specs": []}}]}},
     r"^properties\[0\]\.define\.arrayInfo\.specs\[0\]\.dataType\.type: struct inside a struct"),
]  # fmt: skip


@pytest.mark.parametrize(("define", "pattern"), BAD_DEFINES)
def test_invalid_define(define: Any, pattern: str) -> None:
    with pytest.raises(ThingModelError, match=pattern):
        parse_thing_model(_with_define(define))


def test_path_names_the_property_index() -> None:
    doc = _with_define({"type": "int", "min": "0", "max": "abc"}, index=3)
    assert _model_error(doc) == 'properties[3].define.max: "abc" is not a number'


BAD_DOCS: list[tuple[Any, str]] = [
    ([], r"^expected an object, got an array$"),
    ("x", r'^expected an object, got "x"$'),
    ({"properties": {}}, r"^properties: expected an array, got an object$"),
    ({"events": "x"}, r"^events: expected an array"),
    ({"actions": 1}, r"^actions: expected an array"),
    ({"profile": []}, r"^profile: expected an object"),
    ({"version": 1}, r"^version: 1 is not a string$"),
    ({"profile": {"ProductId": 5}}, r"^profile\.ProductId: 5 is not a string$"),
    ({"properties": [5]}, r"^properties\[0\]: expected an object, got 5$"),
    ({"properties": [{"mode": "rw", "define": {"type": "bool"}}]}, r"^properties\[0\]\.id: miss"),
    ({"properties": [_prop("1abc", {"type": "bool"})]}, r'^properties\[0\]\.id: "1abc" is not an'),
    ({"properties": [_prop("a-b", {"type": "bool"})]}, r'^properties\[0\]\.id: "a-b" is not an'),
    ({"properties": [_prop("é", {"type": "bool"})]}, r'^properties\[0\]\.id: "é" is not an id'),
    ({"properties": [_prop("a" * 65, {"type": "bool"})]}, r"^properties\[0\]\.id: \"a+\S* is not"),
    ({"properties": [_prop("", {"type": "bool"})]}, r'^properties\[0\]\.id: "" is not an id'),
    ({"properties": [{**_prop("a", {"type": "bool"}), "id": 7}]}, r"^properties\[0\]\.id: 7 is n"),
    ({"properties": [_prop("a", {"type": "bool"}), _prop("b", {"type": "bool"}),
                     _prop("a", {"type": "bool"})]},
     r'^properties\[2\]\.id: duplicate id "a" \(also properties\[0\]\)$'),
    ({"properties": [{"id": "a", "define": {"type": "bool"}}]}, r"^properties\[0\]\.mode: missing"),
    ({"properties": [_prop("a", {"type": "bool"}, mode="w")]},
     r'^properties\[0\]\.mode: "w" is not "r" or "rw"$'),
    ({"properties": [{"id": "a", "mode": "r"}]}, r"^properties\[0\]\.define: missing$"),
    ({"properties": [{**_prop("a", {"type": "bool"}), "required": "yes"}]},
     r'^properties\[0\]\.required: "yes" is not true or false$'),
    ({"properties": [{**_prop("a", {"type": "bool"}), "name": 5}]},
     r"^properties\[0\]\.name: 5 is not a string$"),
    ({"properties": [{**_prop("a", {"type": "bool"}), "desc": {}}]},
     r"^properties\[0\]\.desc: an object is not a string$"),
    # events
    ({"events": [{"id": "e"}]}, r"^events\[0\]\.type: missing$"),
    ({"events": [{"id": "e", "type": "warning"}]},
     r'^events\[0\]\.type: "warning" is not one of info, alert, fault$'),
    ({"events": [{"id": "e", "type": "info"}, {"id": "e", "type": "info"}]},
     r'^events\[1\]\.id: duplicate id "e" \(also events\[0\]\)$'),
    ({"events": [{"id": "e", "type": "info", "params": {}}]},
     r"^events\[0\]\.params: expected an array"),
    ({"events": [{"id": "e", "type": "info", "params": [
        {"id": "p", "define": {"type": "bool"}}, {"id": "p", "define": {"type": "bool"}}]}]},
     r'^events\[0\]\.params\[1\]\.id: duplicate id "p" \(also events\[0\]\.params\[0\]\)$'),
    ({"events": [{"id": "e", "type": "info", "params": [{"id": "p"}]}]},
     r"^events\[0\]\.params\[0\]\.define: missing$"),
    ({"events": [{"id": "e", "type": "info", "params": [
        {"id": "p", "define": {"type": "int", "min": "0", "max": "x"}}]}]},
     r'^events\[0\]\.params\[0\]\.define\.max: "x" is not a number$'),
    # actions
    ({"actions": [{"id": "a"}, {"id": "a"}]}, r'^actions\[1\]\.id: duplicate id "a"'),
    ({"actions": [{"id": "a", "input": [{"id": "x", "define": {"type": "bool"}},
                                         {"id": "x", "define": {"type": "bool"}}]}]},
     r'^actions\[0\]\.input\[1\]\.id: duplicate id "x"'),
    ({"actions": [{"id": "a", "output": [{"id": "-", "define": {"type": "bool"}}]}]},
     r'^actions\[0\]\.output\[0\]\.id: "-" is not an id'),
    ({"actions": [{"id": "a", "output": [{"id": "r", "define": {"type": "enum"}}]}]},
     r"^actions\[0\]\.output\[0\]\.define\.mapping: missing$"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "pattern"), BAD_DOCS)
def test_invalid_document(doc: Any, pattern: str) -> None:
    with pytest.raises(ThingModelError, match=pattern):
        parse_thing_model(doc)


def test_same_id_in_different_sections_is_fine() -> None:
    # lock-video's wakeup_state is both a property and an action output (README U13).
    model = parse_thing_model(
        {
            "properties": [_prop("x", {"type": "bool"})],
            "events": [{"id": "x", "type": "info"}],
            "actions": [{"id": "x", "input": [{"id": "x", "define": {"type": "bool"}}]}],
        }
    )
    assert model.property("x") and model.event("x") and model.action("x")


def test_id_limits() -> None:
    parse_thing_model({"properties": [_prop("_" + "a" * 63, {"type": "bool"})]})
    parse_thing_model({"properties": [_prop("_sys_x9", {"type": "bool"})]})


def test_parse_does_not_mutate_input() -> None:
    doc = copy.deepcopy(FULL_DOC)
    parse_thing_model(doc).to_json()["properties"].clear()
    assert doc == FULL_DOC


# --------------------------------------------------------------------------- validation

GOOD_REPORTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"power": 1}, {"power": 1}),
    ({"power": True, "status": False}, {"power": 1, "status": 0}),
    ({"level": -10}, {"level": -10}),
    ({"level": 100}, {"level": 100}),
    ({"temp": -20.5}, {"temp": -20.5}),
    ({"temp": 50}, {"temp": 50}),
    ({"mode": 3}, {"mode": 3}),
    ({"color": "blue"}, {"color": "blue"}),
    ({"label": "ab"}, {"label": "ab"}),
    ({"label": "é" * 8}, {"label": "é" * 8}),
    ({"seen": 0}, {"seen": 0}),
    ({"seen": 1_700_000_000_000}, {"seen": 1_700_000_000_000}),
    ({"pos": {}}, {"pos": {}}),
    ({"pos": {"x": 9, "tags": ["a", ""]}}, {"pos": {"x": 9, "tags": ["a", ""]}}),
    ({"nums": [0, 0.5, 1]}, {"nums": [0, 0.5, 1]}),
    ({"people": [{"id": "a", "on": True}, {}]}, {"people": [{"id": "a", "on": 1}, {}]}),
]


@pytest.mark.parametrize(("params", "expected"), GOOD_REPORTS)
def test_valid_report(full: ThingModel, params: dict[str, Any], expected: dict[str, Any]) -> None:
    assert full.validate_report(params) == expected


BAD_REPORTS: list[tuple[Any, str]] = [
    ([], r"^params: an array is not an object$"),
    (None, r"^params: null is not an object$"),
    ({}, r"^params: empty object$"),
    ({"nope": 1}, r"^nope: unknown property$"),
    ({"power": 1, "bad key": 1}, r'^"bad key": unknown property$'),
    # bool
    ({"power": 2}, r"^power: 2 is not a bool \(0 or 1\)$"),
    ({"power": "1"}, r'^power: "1" is not a bool'),
    ({"power": 1.0}, r"^power: 1.0 is not a bool"),
    ({"power": None}, r"^power: null is not a bool"),
    # int
    ({"level": 1.0}, r"^level: 1.0 is not an integer$"),
    ({"level": True}, r"^level: true is not an integer$"),
    ({"level": "5"}, r'^level: "5" is not an integer$'),
    ({"level": -11}, r"^level: -11 is below min -10$"),
    ({"level": 101}, r"^level: 101 is above max 100$"),
    ({"level": 10**400}, r"^level: a very large integer is above max 100$"),
    # float
    ({"temp": True}, r"^temp: true is not a number$"),
    ({"temp": "1.5"}, r'^temp: "1.5" is not a number$'),
    ({"temp": math.nan}, r"^temp: NaN is not a number$"),
    ({"temp": math.inf}, r"^temp: inf is above max 50$"),
    ({"temp": -20.6}, r"^temp: -20.6 is below min -20.5$"),
    ({"temp": 50.01}, r"^temp: 50.01 is above max 50$"),
    # enum
    ({"mode": 2}, r"^mode: 2 is not one of 0, 1, 3$"),
    ({"mode": "1"}, r'^mode: "1" is not an integer$'),
    ({"mode": True}, r"^mode: true is not an integer$"),
    ({"mode": 1.0}, r"^mode: 1.0 is not an integer$"),
    # stringenum
    ({"color": "green"}, r'^color: "green" is not one of "red", "blue"$'),
    ({"color": 0}, r"^color: 0 is not a string$"),
    # string
    ({"label": 12}, r"^label: 12 is not a string$"),
    ({"label": "a"}, r"^label: string of length 1 is shorter than min 2$"),
    ({"label": "a" * 9}, r"^label: string of length 9 is longer than max 8$"),
    # timestamp
    ({"seen": -1}, r"^seen: -1 is not a timestamp"),
    ({"seen": 1.5}, r"^seen: 1.5 is not a timestamp"),
    ({"seen": True}, r"^seen: true is not a timestamp"),
    ({"seen": 2**63}, r"^seen: \d+ is not a timestamp"),
    # struct
    ({"pos": []}, r"^pos: an array is not an object$"),
    ({"pos": {"y": 1}}, r"^pos\.y: unknown struct member$"),
    ({"pos": {"x": 10}}, r"^pos\.x: 10 is above max 9$"),
    ({"pos": {"tags": ["abcd"]}}, r"^pos\.tags\[0\]: string of length 4 is longer than max 3$"),
    ({"pos": {"tags": "a"}}, r'^pos\.tags: "a" is not an array$'),
    # array
    ({"nums": {}}, r"^nums: an object is not an array$"),
    ({"nums": [0, 0.5, 2]}, r"^nums\[2\]: 2 is above max 1$"),
    ({"nums": [0, "x"]}, r'^nums\[1\]: "x" is not a number$'),
    ({"people": [{}, {"on": 5}]}, r"^people\[1\]\.on: 5 is not a bool"),
    ({"people": [{"who": 1}]}, r"^people\[0\]\.who: unknown struct member$"),
    ({"people": [7]}, r"^people\[0\]: 7 is not an object$"),
]


@pytest.mark.parametrize(("params", "pattern"), BAD_REPORTS)
def test_invalid_report(full: ThingModel, params: Any, pattern: str) -> None:
    with pytest.raises(ValidationFailed, match=pattern):
        full.validate_report(params)


def test_long_values_are_truncated_in_messages(full: ThingModel) -> None:
    with pytest.raises(ValidationFailed) as info:
        full.validate_report({"color": "x" * 10_000})
    assert len(str(info.value)) < 120


def test_report_returns_a_copy(full: ThingModel) -> None:
    params = {"pos": {"x": 1}, "people": [{"on": True}]}
    out = full.validate_report(params)
    assert out == {"pos": {"x": 1}, "people": [{"on": 1}]}
    assert params == {"pos": {"x": 1}, "people": [{"on": True}]}


def test_control(full: ThingModel) -> None:
    assert full.validate_control({"power": True, "level": 3}) == {"power": 1, "level": 3}
    with pytest.raises(ValidationFailed, match=r"^status: property is read-only \(mode r\)$"):
        full.validate_control({"power": 1, "status": 1})
    with pytest.raises(ValidationFailed, match=r"^level: 101 is above max 100$"):
        full.validate_control({"level": 101})
    with pytest.raises(ValidationFailed, match=r"^params: empty object$"):
        full.validate_control({})
    with pytest.raises(ValidationFailed, match=r"^x: unknown property$"):
        full.validate_control({"x": 1})
    # The report path accepts the read-only property.
    assert full.validate_report({"status": 1}) == {"status": 1}


def test_event(full: ThingModel) -> None:
    assert full.validate_event("alarm", "alert", {"code": 3, "msg": "hi"}) == {
        "code": 3,
        "msg": "hi",
    }
    assert full.validate_event("alarm", "alert", {}) == {}  # missing params are allowed
    assert full.validate_event("alarm", None, {"code": 1}) == {"code": 1}
    cases: list[tuple[Any, Any, Any, str]] = [
        ("nope", "info", {}, r"^nope: unknown event$"),
        (["x"], "info", {}, r"^an array: unknown event$"),
        ("alarm", "info", {}, r'^alarm\.type: "info" does not match the model\'s "alert"$'),
        ("alarm", "alert", [], r"^alarm\.params: an array is not an object$"),
        ("alarm", "alert", {"x": 1}, r"^alarm\.params\.x: unknown param$"),
        ("alarm", "alert", {"code": 10}, r"^alarm\.params\.code: 10 is above max 9$"),
        ("alarm", "alert", {"msg": "toolong"}, r"^alarm\.params\.msg: string of length 7 is lo"),
    ]
    for event_id, kind, params, pattern in cases:
        with pytest.raises(ValidationFailed, match=pattern):
            full.validate_event(event_id, kind, params)


def test_action(full: ThingModel) -> None:
    assert full.validate_action_input("open", {"secs": 5}) == {"secs": 5}
    assert full.validate_action_input("open", {}) == {}
    assert full.validate_action_output("open", {"result": True}) == {"result": 1}
    with pytest.raises(ValidationFailed, match=r"^nope: unknown action$"):
        full.validate_action_input("nope", {})
    with pytest.raises(ValidationFailed, match=r"^nope: unknown action$"):
        full.validate_action_output("nope", {})
    with pytest.raises(ValidationFailed, match=r"^open\.input\.secs: 0 is below min 1$"):
        full.validate_action_input("open", {"secs": 0})
    with pytest.raises(ValidationFailed, match=r"^open\.input\.result: unknown input$"):
        full.validate_action_input("open", {"result": 1})
    with pytest.raises(ValidationFailed, match=r"^open\.output\.secs: unknown output$"):
        full.validate_action_output("open", {"secs": 1})
    with pytest.raises(ValidationFailed, match=r"^open\.output\.result: 2 is not a bool"):
        full.validate_action_output("open", {"result": 2})
    with pytest.raises(ValidationFailed, match=r"^open\.output: null is not an object$"):
        full.validate_action_output("open", None)


# --------------------------------------------------------------------------- hypothesis


def valid_values(define: Define) -> st.SearchStrategy[Any]:
    """Values a device may legally send for ``define``."""
    if isinstance(define, BoolDefine):
        return st.sampled_from([0, 1, True, False])
    if isinstance(define, IntDefine):
        return st.integers(define.min, define.max)
    if isinstance(define, FloatDefine):
        floats = st.floats(define.min, define.max, allow_nan=False, allow_infinity=False)
        ints = st.integers(math.ceil(define.min), math.floor(define.max))
        return floats | ints
    if isinstance(define, EnumDefine):
        return st.sampled_from(define.values)
    if isinstance(define, StringEnumDefine):
        return st.sampled_from([k for k, _ in define.mapping])
    if isinstance(define, StringDefine):
        return st.text(min_size=define.min, max_size=min(define.max, define.min + 30))
    if isinstance(define, TimestampDefine):
        return st.integers(0, 2**63 - 1)
    if isinstance(define, StructDefine):
        return st.fixed_dictionaries(
            {}, optional={m.id: valid_values(m.data_type) for m in define.specs}
        )
    assert isinstance(define, ArrayDefine)
    return st.lists(valid_values(define.element), max_size=4)


def valid_reports(model: ThingModel) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={p.id: valid_values(p.define) for p in model.properties}
    ).filter(bool)


def _normalised(value: Any) -> Any:
    if value is True or value is False:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


MODELS = [parse_thing_model(FULL_DOC), *(load_standard_model(n) for n in STANDARD_MODELS)]


@pytest.mark.parametrize("model", MODELS, ids=["full", *STANDARD_MODELS])
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_valid_reports_validate(model: ThingModel, data: st.DataObject) -> None:
    report = data.draw(valid_reports(model))
    out = model.validate_report(report)
    assert out == _normalised(report)
    # Normalised output is JSON and validates again unchanged.
    assert model.validate_report(json.loads(json.dumps(out))) == out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.parametrize("model", MODELS, ids=["full", *STANDARD_MODELS])
@settings(max_examples=200)
@given(data=st.data())
def test_random_json_only_raises_validation_failed(model: ThingModel, data: st.DataObject) -> None:
    ids = [p.id for p in model.properties] + ["x"]
    keys = st.sampled_from(ids) | st.text(max_size=5)
    nested = st.fixed_dictionaries(
        {}, optional={m.id: json_values for p in model.properties
                      if isinstance(p.define, StructDefine) for m in p.define.specs}
    )  # fmt: skip
    params = data.draw(
        json_values | st.dictionaries(keys, json_values | nested | st.lists(nested), max_size=5)
    )
    event_id: Any = data.draw(json_values | st.just("alarm"))
    action_id: Any = data.draw(st.sampled_from(["open", "x"]) | json_values)
    calls: list[Callable[[], dict[str, Any]]] = [
        lambda: model.validate_report(params),
        lambda: model.validate_control(params),
        lambda: model.validate_event(event_id, "alert", params),
        lambda: model.validate_event(event_id, None, params),
        lambda: model.validate_action_input(action_id, params),
        lambda: model.validate_action_output(action_id, params),
        lambda: model.validate_action_output("unlock_remote", params),
    ]
    for call in calls:
        try:
            out = call()
        except ValidationFailed as e:
            assert str(e)
        else:
            assert isinstance(out, dict)


@settings(max_examples=100)
@given(
    lo=st.integers(-(2**40), 2**40),
    span=st.integers(0, 2**40),
    start=st.integers(0, 2**40),
    step=st.integers(1, 100),
    unit=st.text(max_size=5),
)
def test_int_define_round_trip(lo: int, span: int, start: int, step: int, unit: str) -> None:
    define = {"type": "int", "min": str(lo), "max": str(lo + span),
              "start": str(lo + start % (span + 1)), "step": str(step), "unit": unit}  # fmt: skip
    model = parse_thing_model(_with_define(define))
    assert model.to_json()["properties"][0]["define"] == define
    assert parse_thing_model(model.to_json()) == model


@settings(max_examples=100)
@given(
    bounds=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=2, max_size=2).map(
        sorted
    )
)
def test_float_define_round_trip(bounds: list[float]) -> None:
    lo, hi = bounds
    define = {"type": "float", "min": repr(lo), "max": repr(hi), "start": repr(lo),
              "step": "0.1", "unit": ""}  # fmt: skip
    model = parse_thing_model(_with_define(define))
    again = parse_thing_model(model.to_json())
    assert again == model
    prop = model.properties[0].define
    assert isinstance(prop, FloatDefine) and (prop.min, prop.max) == (lo, hi)
    model.validate_report({"p0": lo})
    model.validate_report({"p0": hi})


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


DOC_PATHS = [p for p in _paths(FULL_DOC) if p]


@settings(max_examples=400)
@given(path=st.sampled_from(DOC_PATHS), replacement=json_values, delete=st.booleans())
def test_mutated_documents_only_raise_thing_model_error(
    path: tuple[Any, ...], replacement: Any, delete: bool
) -> None:
    doc = copy.deepcopy(FULL_DOC)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    try:
        model = parse_thing_model(doc)
    except ThingModelError as e:
        assert str(e)
        return
    assert parse_thing_model(model.to_json()) == model
    if model.properties:
        assert model.validate_report(model.defaults()) == model.defaults()


def test_python_caller_mapping_with_int_keys() -> None:
    with pytest.raises(ThingModelError, match=r"define\.mapping: key 0 is not a string$"):
        parse_thing_model(_with_define({"type": "enum", "mapping": {0: "a"}}))
