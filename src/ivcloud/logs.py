"""Structured logging.  Log calls pass fields, never secrets: device keys, passwords, tokens
and AppSecrets are kept out at the call sites, and this processor masks any field whose name
says it is one, as a second line of defence."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_FIELDS = ("secret", "password", "token", "psk", "key", "authorization")


def _mask_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> Any:
    for field in list(event):
        lowered = field.lower()
        if field != "event" and any(word in lowered for word in SECRET_FIELDS):
            event[field] = "***"
    return event


def configure(level: str = "info", as_json: bool = False) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    # These libraries log SQL parameters (device secrets among them) at DEBUG.
    for noisy in ("aiosqlite", "sqlalchemy.engine", "asyncpg"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.INFO))
    # httpx logs every request URL at INFO: signed media URLs carry their signature there.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(numeric, logging.WARNING))
    renderer: Any = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            _mask_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
