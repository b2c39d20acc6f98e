"""Strict JSON for client input."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.jsontext import BadJson, dumps_safe, loads_json, loads_strict


@pytest.mark.parametrize(
    "text", [b'{"a": NaN}', b"[Infinity]", b'{"a": "\\udc80"}', b'"\\ud83d"', b"nope", b"\xff"]
)
def test_refused(text: bytes) -> None:
    with pytest.raises(BadJson):
        loads_strict(text)


def test_lenient_parse_keeps_the_id_readable() -> None:
    assert loads_json(b'{"RequestId": "r", "x": NaN}')["RequestId"] == "r"


def test_pairs_and_unicode_are_fine() -> None:
    assert loads_strict('{"a": "\\ud83d\\ude00 家"}'.encode()) == {"a": "😀 家"}


def test_dumps_safe_escapes_only_when_it_must() -> None:
    assert dumps_safe({"a": "家"}) == '{"a":"家"}'.encode()
    assert dumps_safe({"a": "\udc80"}) == b'{"a":"\\udc80"}'
    assert json.loads(dumps_safe({"a": "\udc80"})) == {"a": "\udc80"}


@given(st.binary(max_size=200))
def test_only_badjson_escapes(data: bytes) -> None:
    with contextlib.suppress(BadJson):
        loads_strict(data)
