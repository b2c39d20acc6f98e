"""Strict JSON for client input.

Python's ``json`` accepts two things that are valid to a JSON *parser* but poison
everything after it: ``NaN``/``Infinity`` (not JSON; JS ``JSON.parse`` rejects them when we
echo them back) and escaped lone surrogates such as ``"\\udc80"`` (valid JSON text, but a
Python string that cannot be encoded as UTF-8, so the database, hashing and the response
writer fail on it).  Input is refused at the door instead."""

from __future__ import annotations

import json
from typing import Any

from ivcloud.protocol.errors import ProtocolError


class BadJson(ProtocolError):
    """Not strict JSON."""


def loads_json(data: str | bytes) -> Any:
    """Parse JSON text leniently (so an id can still be read and echoed); follow with
    ``require_strict`` before using the document."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadJson("not JSON") from None


def require_strict(doc: Any) -> None:
    """Refuse NaN/Infinity and strings with unpaired surrogates."""
    try:
        json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadJson("a string contains an unpaired UTF-16 surrogate") from None
    except ValueError:
        raise BadJson("NaN and Infinity are not JSON") from None


def loads_strict(data: str | bytes) -> Any:
    """``loads_json`` then ``require_strict``."""
    doc = loads_json(data)
    require_strict(doc)
    return doc


class RawJson:
    """JSON text that is already serialised (and was produced by :func:`dumps_safe`), to be
    spliced into a reply as is: a hot list renders its items once, not per request."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawJson({self.text[:40]!r})"


def dumps_safe(doc: Any) -> bytes:
    """Compact UTF-8 JSON; a document that cannot be UTF-8 (an echoed id with a lone
    surrogate) is written with ASCII escapes instead, which round-trips exactly."""
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
