"""The thing-model document: its elements and their import from Tencent-format JSON.

Import is where operators meet our rules, so every refusal is a :class:`ThingModelError`
naming the offending path (``properties[3].define.max: "abc" is not a number``): they fix the
file instead of guessing. It is tolerant where real exports are loose: unknown keys are
ignored, ``required``/``name``/``desc`` may be absent, define numbers may be JSON numbers
instead of strings, and a ``bool`` without ``mapping`` gets default labels. Element
``to_json`` methods write the canonical form back (numbers as strings, Tencent's key order)
so import → export → import is the identity.

Limits chosen here (the spec is silent): ids are ``[A-Za-z_][A-Za-z0-9_]*`` up to 64
characters; string bounds are 0 ≤ min ≤ max ≤ 2048 (``values.STRING_MAX_LEN``); event and
action parameters may use any data type (the spec lists scalars, but the IoT
Explorer C SDK also accepts structs in actions).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NoReturn

from ivcloud.protocol.errors import ThingModelError
from ivcloud.protocol.values import (
    DEFAULT_BOOL_MAPPING,
    STRING_MAX_LEN,
    ArrayDefine,
    BoolDefine,
    Define,
    ElementDefine,
    EnumDefine,
    FloatDefine,
    IntDefine,
    StringDefine,
    StringEnumDefine,
    StructDefine,
    StructMember,
    TimestampDefine,
    show,
)

__all__ = [
    "DATA_TYPES",
    "Action",
    "Document",
    "Event",
    "Param",
    "Property",
    "parse_document",
]

DATA_TYPES = (
    "bool",
    "int",
    "float",
    "enum",
    "stringenum",
    "string",
    "timestamp",
    "struct",
    "array",
)
_ELEMENT_TYPES = ("int", "float", "string", "struct")
_EVENT_TYPES = ("info", "alert", "fault")
_ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ENUM_KEY_RE = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class Property:
    id: str
    name: str
    desc: str
    mode: Literal["r", "rw"]
    define: Define
    required: bool = False

    @property
    def writable(self) -> bool:
        return self.mode == "rw"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "desc": self.desc,
            "mode": self.mode,
            "define": self.define.to_json(),
            "required": self.required,
        }


@dataclass(frozen=True, slots=True)
class Param:
    """An event parameter or an action input/output."""

    id: str
    name: str
    define: Define
    desc: str = ""

    def to_json(self, *, with_desc: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if with_desc or self.desc:
            out["desc"] = self.desc
        out["define"] = self.define.to_json()
        return out


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    name: str
    desc: str
    type: Literal["info", "alert", "fault"]
    params: tuple[Param, ...] = ()
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "desc": self.desc,
            "type": self.type,
            "required": self.required,
            "params": [p.to_json(with_desc=True) for p in self.params],
        }


@dataclass(frozen=True, slots=True)
class Action:
    id: str
    name: str
    desc: str
    input: tuple[Param, ...] = ()
    output: tuple[Param, ...] = ()
    required: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "desc": self.desc,
            "input": [p.to_json(with_desc=False) for p in self.input],
            "output": [p.to_json(with_desc=False) for p in self.output],
            "required": self.required,
        }


# --------------------------------------------------------------------------- import


def _fail(path: str, message: str) -> NoReturn:
    raise ThingModelError(f"{path}: {message}" if path else message)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return show(value)


def _obj(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(path, f"expected an object, got {_kind(value)}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(path, f"expected an array, got {_kind(value)}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _required(d: dict[str, Any], key: str, path: str) -> Any:
    if d.get(key) is None:
        _fail(_join(path, key), "missing")
    return d[key]


def _text(d: dict[str, Any], key: str, path: str, default: str = "") -> str:
    value = d.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        _fail(_join(path, key), f"{_kind(value)} is not a string")
    return value


def _flag(d: dict[str, Any], key: str, path: str) -> bool:
    value = d.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        _fail(_join(path, key), f"{_kind(value)} is not true or false")
    return value


def _ident(d: dict[str, Any], path: str) -> str:
    value = _required(d, "id", path)
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        _fail(
            f"{path}.id",
            f"{show(value)} is not an id (letters, digits and _, starting with a letter or _, "
            "at most 64 characters)",
        )
    return value


def _number(
    d: dict[str, Any], key: str, path: str, *, integer: bool, default: int | float | None = None
) -> Any:
    """A define number: Tencent writes them as strings; JSON numbers are tolerated."""
    where = f"{path}.{key}"
    value = d.get(key)
    if value is None or value == "":
        if default is None:
            _fail(where, "missing")
        return default
    if isinstance(value, bool):
        _fail(where, f"{show(value)} is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if integer and not value.is_integer():
            _fail(where, f"{show(value)} is not an integer")
        if not math.isfinite(value):
            _fail(where, f"{show(value)} is not a finite number")
        return int(value) if integer else value
    if not isinstance(value, str):
        _fail(where, f"{_kind(value)} is not a number")
    text = value.strip()
    if _INT_RE.fullmatch(text):
        if len(text) > 30:
            _fail(where, f"{show(value)} is out of range")
        return int(text)
    if not _FLOAT_RE.fullmatch(text):
        _fail(where, f"{show(value)} is not a number")
    if integer:
        _fail(where, f"{show(value)} is not an integer")
    number = float(text)
    if not math.isfinite(number):
        _fail(where, f"{show(value)} is not a finite number")
    return number


def _mapping(d: dict[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    where = f"{path}.mapping"
    raw = _obj(_required(d, "mapping", path), where)
    if not raw:
        _fail(where, "must not be empty")
    for key, label in raw.items():
        if not isinstance(key, str):  # only reachable from Python callers, not JSON
            _fail(where, f"key {show(key)} is not a string")
        if not isinstance(label, str):
            _fail(f"{where}.{key}", f"label {_kind(label)} is not a string")
    return tuple(raw.items())


def _numeric_define(d: dict[str, Any], path: str, *, integer: bool) -> IntDefine | FloatDefine:
    lo = _number(d, "min", path, integer=integer)
    hi = _number(d, "max", path, integer=integer)
    if lo > hi:
        _fail(f"{path}.min", f"{lo} is above max {hi}")
    start = _number(d, "start", path, integer=integer, default=0 if lo <= 0 <= hi else lo)
    if not lo <= start <= hi:
        _fail(f"{path}.start", f"{start} is outside [{lo}, {hi}]")
    step = _number(d, "step", path, integer=integer, default=1)
    if step <= 0:
        _fail(f"{path}.step", f"{step} is not above 0")
    unit = _text(d, "unit", path)
    if integer:
        return IntDefine(min=lo, max=hi, start=start, step=step, unit=unit)
    return FloatDefine(min=lo, max=hi, start=start, step=step, unit=unit)


def _string_define(d: dict[str, Any], path: str) -> StringDefine:
    lo = _number(d, "min", path, integer=True, default=0)
    hi = _number(d, "max", path, integer=True, default=STRING_MAX_LEN)
    if lo < 0:
        _fail(f"{path}.min", f"{lo} is negative")
    if hi > STRING_MAX_LEN:
        _fail(f"{path}.max", f"{hi} is above the limit {STRING_MAX_LEN}")
    if lo > hi:
        _fail(f"{path}.min", f"{lo} is above max {hi}")
    return StringDefine(min=lo, max=hi)


def _enum_define(d: dict[str, Any], path: str) -> EnumDefine:
    mapping = _mapping(d, path)
    seen: dict[int, str] = {}
    for key, _ in mapping:
        if not _ENUM_KEY_RE.fullmatch(key):
            _fail(f"{path}.mapping", f"key {show(key)} is not an integer")
        value = int(key)
        if value in seen:
            _fail(f"{path}.mapping", f"keys {show(seen[value])} and {show(key)} are the same")
        seen[value] = key
    return EnumDefine(mapping=mapping)


def _bool_define(d: dict[str, Any], path: str) -> BoolDefine:
    if d.get("mapping") is None:
        return BoolDefine(mapping=DEFAULT_BOOL_MAPPING)
    mapping = _mapping(d, path)
    keys = sorted(k for k, _ in mapping)
    if keys != ["0", "1"]:
        got = ", ".join(show(k) for k in keys)
        _fail(f"{path}.mapping", f'keys must be exactly "0" and "1", got {got}')
    return BoolDefine(mapping=tuple(sorted(mapping)))


def _stringenum_define(d: dict[str, Any], path: str) -> StringEnumDefine:
    mapping = _mapping(d, path)
    for key, _ in mapping:
        if not key:
            _fail(f"{path}.mapping", "a key is the empty string")
    return StringEnumDefine(mapping=mapping)


def _struct_define(d: dict[str, Any], path: str) -> StructDefine:
    where = f"{path}.specs"
    raw = _list(_required(d, "specs", path), where)
    seen: dict[str, int] = {}
    members: list[StructMember] = []
    for i, item in enumerate(raw):
        mpath = f"{where}[{i}]"
        m = _obj(item, mpath)
        mid = _ident(m, mpath)
        if mid in seen:
            _fail(f"{mpath}.id", f"duplicate id {show(mid)} (also {where}[{seen[mid]}])")
        seen[mid] = i
        dt = _obj(_required(m, "dataType", mpath), f"{mpath}.dataType")
        member = _parse_define(dt, f"{mpath}.dataType", in_struct=True)
        assert not isinstance(member, StructDefine)
        name, desc = _text(m, "name", mpath), _text(m, "desc", mpath)
        members.append(StructMember(id=mid, name=name, data_type=member, desc=desc))
    return StructDefine(specs=tuple(members))


def _array_define(d: dict[str, Any], path: str, *, in_struct: bool) -> ArrayDefine:
    where = f"{path}.arrayInfo"
    info = _obj(_required(d, "arrayInfo", path), where)
    kind = _required(info, "type", where)
    if kind not in _ELEMENT_TYPES:
        _fail(
            f"{where}.type",
            f"{show(kind)} is not allowed as an array element (int, float, string, struct)",
        )
    if kind == "struct" and in_struct:
        _fail(f"{where}.type", "struct inside a struct is not allowed")
    element = _parse_define(info, where, in_struct=in_struct)
    assert isinstance(element, IntDefine | FloatDefine | StringDefine | StructDefine)
    elem: ElementDefine = element
    return ArrayDefine(element=elem)


_SIMPLE: dict[str, Callable[[dict[str, Any], str], Define]] = {
    "bool": _bool_define,
    "int": lambda d, p: _numeric_define(d, p, integer=True),
    "float": lambda d, p: _numeric_define(d, p, integer=False),
    "enum": _enum_define,
    "stringenum": _stringenum_define,
    "string": _string_define,
    "timestamp": lambda d, p: TimestampDefine(),
}


def _parse_define(d: dict[str, Any], path: str, *, in_struct: bool = False) -> Define:
    """``in_struct``: we are inside a struct (member, or element of a member array), where
    Tencent forbids another struct."""
    kind = _required(d, "type", path)
    simple = _SIMPLE.get(kind) if isinstance(kind, str) else None
    if simple is not None:
        return simple(d, path)
    if kind == "struct":
        if in_struct:
            _fail(f"{path}.type", "struct inside a struct is not allowed")
        return _struct_define(d, path)
    if kind == "array":
        return _array_define(d, path, in_struct=in_struct)
    _fail(f"{path}.type", f"{show(kind)} is not a data type ({', '.join(DATA_TYPES)})")


def _define_of(item: dict[str, Any], path: str) -> Define:
    return _parse_define(_obj(_required(item, "define", path), f"{path}.define"), f"{path}.define")


def _section(doc: dict[str, Any], key: str) -> list[tuple[str, dict[str, Any]]]:
    """The items of a top-level list (absent → empty) checked for objects and unique ids."""
    raw = doc.get(key)
    if raw is None:
        return []
    items = _list(raw, key)
    return _unique_items(items, key)


def _unique_items(items: list[Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    seen: dict[str, int] = {}
    out: list[tuple[str, dict[str, Any]]] = []
    for i, item in enumerate(items):
        path = f"{where}[{i}]"
        obj = _obj(item, path)
        ident = _ident(obj, path)
        if ident in seen:
            _fail(f"{path}.id", f"duplicate id {show(ident)} (also {where}[{seen[ident]}])")
        seen[ident] = i
        out.append((path, obj))
    return out


def _params(d: dict[str, Any], key: str, path: str) -> tuple[Param, ...]:
    raw = d.get(key)
    if raw is None:
        return ()
    where = f"{path}.{key}"
    return tuple(
        Param(
            id=item["id"],
            name=_text(item, "name", ipath),
            desc=_text(item, "desc", ipath),
            define=_define_of(item, ipath),
        )
        for ipath, item in _unique_items(_list(raw, where), where)
    )


def _property(path: str, d: dict[str, Any]) -> Property:
    mode = _required(d, "mode", path)
    if mode not in ("r", "rw"):
        _fail(f"{path}.mode", f'{show(mode)} is not "r" or "rw"')
    return Property(
        id=d["id"],
        name=_text(d, "name", path),
        desc=_text(d, "desc", path),
        mode=mode,
        define=_define_of(d, path),
        required=_flag(d, "required", path),
    )


def _event(path: str, d: dict[str, Any]) -> Event:
    kind = _required(d, "type", path)
    if kind not in _EVENT_TYPES:
        _fail(f"{path}.type", f"{show(kind)} is not one of info, alert, fault")
    return Event(
        id=d["id"],
        name=_text(d, "name", path),
        desc=_text(d, "desc", path),
        type=kind,
        params=_params(d, "params", path),
        required=_flag(d, "required", path),
    )


def _action(path: str, d: dict[str, Any]) -> Action:
    return Action(
        id=d["id"],
        name=_text(d, "name", path),
        desc=_text(d, "desc", path),
        input=_params(d, "input", path),
        output=_params(d, "output", path),
        required=_flag(d, "required", path),
    )


class Document(NamedTuple):
    """The fields of a parsed document, in :class:`~ivcloud.protocol.thingmodel.ThingModel`
    constructor order."""

    version: str
    product_id: str
    category_id: str
    properties: tuple[Property, ...]
    events: tuple[Event, ...]
    actions: tuple[Action, ...]


def parse_document(doc: object) -> Document:
    """Check and convert a JSON-decoded thing-model document."""
    root = _obj(doc, "")
    profile = root.get("profile")
    profile = {} if profile is None else _obj(profile, "profile")
    return Document(
        version=_text(root, "version", "", default="1.0"),
        product_id=_text(profile, "ProductId", "profile"),
        category_id=_profile_id(profile, "CategoryId"),
        properties=tuple(_property(p, d) for p, d in _section(root, "properties")),
        events=tuple(_event(p, d) for p, d in _section(root, "events")),
        actions=tuple(_action(p, d) for p, d in _section(root, "actions")),
    )


def _profile_id(profile: dict[str, Any], key: str) -> str:
    value = profile.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # some hand-written models have "CategoryId": 113
    return _text(profile, key, "profile")
