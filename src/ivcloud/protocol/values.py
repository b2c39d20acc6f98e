"""Thing-model data types (the ``define`` objects) and their compiled value validators.

Each ``define`` becomes a frozen dataclass that knows three things: how to export itself in
Tencent's JSON form (numbers as strings), its default value, and how to build a validator.
A validator is a plain closure ``value -> normalised value`` built once per property when the
model is parsed, because validation sits on the device-report hot path: the closures capture
their bounds as locals and test exact types (``type(x) is int``) so a scalar check costs a few
hundred nanoseconds instead of a generic schema walk.

Validators raise :class:`InvalidValue`, a :class:`ValidationFailed` carrying a relative path,
so a struct or array can prefix ``.member`` / ``[i]`` on the way out without formatting any
text on the success path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from ivcloud.protocol.errors import ValidationFailed

__all__ = [
    "DEFAULT_BOOL_MAPPING",
    "STRING_MAX_LEN",
    "TIMESTAMP_MAX",
    "ArrayDefine",
    "BoolDefine",
    "Define",
    "ElementDefine",
    "EnumDefine",
    "FloatDefine",
    "IntDefine",
    "InvalidValue",
    "MemberDefine",
    "StringDefine",
    "StringEnumDefine",
    "StructDefine",
    "StructMember",
    "TimestampDefine",
    "Validator",
    "num_str",
    "show",
]

#: Longest ``string`` a model may declare. Tencent's console caps string properties at 2048
#: characters (the standard lock model's ``user_list.owner`` uses exactly that); refusing
#: larger bounds keeps one report from carrying megabytes per property.
STRING_MAX_LEN = 2048

#: Largest accepted ``timestamp`` value. The spec only says "unsigned integer"; devices send
#: seconds or milliseconds, so any non-negative value that fits a signed 64-bit database
#: column is accepted.
TIMESTAMP_MAX = 2**63 - 1

#: ``value -> normalised value``; raises :class:`InvalidValue`.
Validator: TypeAlias = Callable[[Any], Any]

#: Labels used when a ``bool`` define has no ``mapping`` (some hand-written models omit it).
DEFAULT_BOOL_MAPPING: tuple[tuple[str, str], ...] = (("0", "关"), ("1", "开"))


class InvalidValue(ValidationFailed):
    """A value rejected by a compiled validator, with the path below the property.

    ``path`` grows outward (``[2]`` then ``.faces``…) as the exception leaves nested
    validators, so the happy path never builds a string.
    """

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def under(self, segment: str) -> InvalidValue:
        self.path = segment + self.path
        return self

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


def show(value: object) -> str:
    """Render a rejected value for an error message: short, JSON-like, never raising
    (huge ints would hit CPython's int→str digit limit, huge strings would flood logs)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 128 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:40] + "…"
        quoted = json.dumps(text, ensure_ascii=False)
        return quoted.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def num_str(value: int | float) -> str:
    """Format a define number the way Tencent exports it (``"0"``, ``"0.5"``)."""
    return str(value) if isinstance(value, int) else repr(value)


def _mapping_json(mapping: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return dict(mapping)


@dataclass(frozen=True, slots=True)
class BoolDefine:
    """Wire value: integer 0/1 (the C SDK stores bools as int8); JSON true/false tolerated."""

    mapping: tuple[tuple[str, str], ...] = DEFAULT_BOOL_MAPPING
    type: ClassVar[str] = "bool"

    def to_json(self) -> dict[str, Any]:
        return {"type": "bool", "mapping": _mapping_json(self.mapping)}

    def default(self) -> int:
        return 0

    def validator(self) -> Validator:
        def check(x: Any) -> Any:
            if x is True:
                return 1
            if x is False:
                return 0
            if type(x) is int and (x == 0 or x == 1):
                return x
            raise InvalidValue(f"{show(x)} is not a bool (0 or 1)")

        return check


@dataclass(frozen=True, slots=True)
class IntDefine:
    """Wire value: a JSON integer; floats are refused even when integral (the C SDK
    parses int properties with an integer parser, so ``1.0`` is a device bug)."""

    min: int
    max: int
    start: int
    step: int = 1
    unit: str = ""
    type: ClassVar[str] = "int"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "int",
            "min": str(self.min),
            "max": str(self.max),
            "start": str(self.start),
            "step": str(self.step),
            "unit": self.unit,
        }

    def default(self) -> int:
        return self.start

    def validator(self) -> Validator:
        lo, hi = self.min, self.max

        def check(x: Any) -> Any:
            if type(x) is not int:
                raise InvalidValue(f"{show(x)} is not an integer")
            if x < lo:
                raise InvalidValue(f"{show(x)} is below min {lo}")
            if x > hi:
                raise InvalidValue(f"{show(x)} is above max {hi}")
            return x

        return check


@dataclass(frozen=True, slots=True)
class FloatDefine:
    """Wire value: any JSON number in range (integers included, bools and NaN refused)."""

    min: int | float
    max: int | float
    start: int | float
    step: int | float = 1
    unit: str = ""
    type: ClassVar[str] = "float"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "float",
            "min": num_str(self.min),
            "max": num_str(self.max),
            "start": num_str(self.start),
            "step": num_str(self.step),
            "unit": self.unit,
        }

    def default(self) -> int | float:
        return self.start

    def validator(self) -> Validator:
        lo, hi = self.min, self.max
        lo_s, hi_s = num_str(lo), num_str(hi)

        def check(x: Any) -> Any:
            t = type(x)
            if t is not float and t is not int:
                raise InvalidValue(f"{show(x)} is not a number")
            if not x >= lo:
                if math.isnan(x):
                    raise InvalidValue("NaN is not a number")
                raise InvalidValue(f"{show(x)} is below min {lo_s}")
            if x > hi:
                raise InvalidValue(f"{show(x)} is above max {hi_s}")
            return x

        return check


@dataclass(frozen=True, slots=True)
class EnumDefine:
    """Wire value: a JSON integer that is a key of ``mapping`` (gaps such as ``0,1,3`` are
    legal). Keys keep their exported spelling; membership is tested on their integer value."""

    mapping: tuple[tuple[str, str], ...]
    type: ClassVar[str] = "enum"

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(int(k) for k, _ in self.mapping)

    def to_json(self) -> dict[str, Any]:
        return {"type": "enum", "mapping": _mapping_json(self.mapping)}

    def default(self) -> int:
        return self.values[0]

    def validator(self) -> Validator:
        allowed = frozenset(self.values)
        listed = ", ".join(str(v) for v in self.values)

        def check(x: Any) -> Any:
            if type(x) is not int:
                raise InvalidValue(f"{show(x)} is not an integer")
            if x not in allowed:
                raise InvalidValue(f"{show(x)} is not one of {listed}")
            return x

        return check


@dataclass(frozen=True, slots=True)
class StringEnumDefine:
    """Wire value: a JSON string that is a key of ``mapping``."""

    mapping: tuple[tuple[str, str], ...]
    type: ClassVar[str] = "stringenum"

    def to_json(self) -> dict[str, Any]:
        return {"type": "stringenum", "mapping": _mapping_json(self.mapping)}

    def default(self) -> str:
        return self.mapping[0][0]

    def validator(self) -> Validator:
        allowed = frozenset(k for k, _ in self.mapping)
        listed = ", ".join(show(k) for k, _ in self.mapping)

        def check(x: Any) -> Any:
            if type(x) is not str:
                raise InvalidValue(f"{show(x)} is not a string")
            if x not in allowed:
                raise InvalidValue(f"{show(x)} is not one of {listed}")
            return x

        return check


@dataclass(frozen=True, slots=True)
class StringDefine:
    """Wire value: a JSON string; ``min``/``max`` bound its length in characters (code
    points), the unit JSON itself counts in, rather than UTF-8 bytes."""

    min: int = 0
    max: int = STRING_MAX_LEN
    type: ClassVar[str] = "string"

    def to_json(self) -> dict[str, Any]:
        return {"type": "string", "min": str(self.min), "max": str(self.max)}

    def default(self) -> str:
        return "0" * self.min

    def validator(self) -> Validator:
        lo, hi = self.min, self.max

        def check(x: Any) -> Any:
            if type(x) is not str:
                raise InvalidValue(f"{show(x)} is not a string")
            n = len(x)
            if n < lo:
                raise InvalidValue(f"string of length {n} is shorter than min {lo}")
            if n > hi:
                raise InvalidValue(f"string of length {n} is longer than max {hi}")
            return x

        return check


@dataclass(frozen=True, slots=True)
class TimestampDefine:
    """Wire value: a non-negative integer (seconds per the C SDK; milliseconds tolerated)."""

    type: ClassVar[str] = "timestamp"

    def to_json(self) -> dict[str, Any]:
        return {"type": "timestamp"}

    def default(self) -> int:
        return 0

    def validator(self) -> Validator:
        def check(x: Any) -> Any:
            if type(x) is not int or x < 0 or x > TIMESTAMP_MAX:
                raise InvalidValue(f"{show(x)} is not a timestamp (a non-negative integer)")
            return x

        return check


@dataclass(frozen=True, slots=True)
class StructMember:
    """One entry of a struct's ``specs``: never itself a struct (Tencent forbids nesting)."""

    id: str
    name: str
    data_type: MemberDefine
    desc: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.desc:
            out["desc"] = self.desc
        out["dataType"] = self.data_type.to_json()
        return out


@dataclass(frozen=True, slots=True)
class StructDefine:
    """Wire value: a JSON object whose keys are member ids; members may be omitted (devices
    report partial structs) and ``specs: []`` is legal (the picture lock's ``mjpg_info``)."""

    specs: tuple[StructMember, ...]
    type: ClassVar[str] = "struct"

    def to_json(self) -> dict[str, Any]:
        return {"type": "struct", "specs": [m.to_json() for m in self.specs]}

    def default(self) -> dict[str, Any]:
        return {m.id: m.data_type.default() for m in self.specs}

    def member(self, member_id: str) -> StructMember | None:
        for m in self.specs:
            if m.id == member_id:
                return m
        return None

    def validator(self) -> Validator:
        members = {m.id: m.data_type.validator() for m in self.specs}

        def check(x: Any) -> Any:
            if type(x) is not dict:
                raise InvalidValue(f"{show(x)} is not an object")
            out = {}
            for key, value in x.items():
                member = members.get(key)
                if member is None:
                    raise InvalidValue("unknown struct member", "." + _segment(key))
                try:
                    out[key] = member(value)
                except InvalidValue as e:
                    raise e.under("." + key) from None
            return out

        return check


@dataclass(frozen=True, slots=True)
class ArrayDefine:
    """Wire value: a JSON array whose every element matches ``element``."""

    element: ElementDefine
    type: ClassVar[str] = "array"

    def to_json(self) -> dict[str, Any]:
        return {"type": "array", "arrayInfo": self.element.to_json()}

    def default(self) -> list[Any]:
        return []

    def validator(self) -> Validator:
        each = self.element.validator()

        def check(x: Any) -> Any:
            if type(x) is not list:
                raise InvalidValue(f"{show(x)} is not an array")
            try:
                return [each(e) for e in x]
            except InvalidValue:
                pass
            # Slow path, failures only: find the index for the message.
            for i, e in enumerate(x):
                try:
                    each(e)
                except InvalidValue as err:
                    raise err.under(f"[{i}]") from None
            raise AssertionError("unreachable")  # pragma: no cover

        return check


def _segment(key: object) -> str:
    return key if isinstance(key, str) and key.isidentifier() else show(key)


#: Element types Tencent allows in ``arrayInfo``.
ElementDefine: TypeAlias = IntDefine | FloatDefine | StringDefine | StructDefine
#: Anything but a struct (struct members, array-of-struct members).
MemberDefine: TypeAlias = (
    BoolDefine
    | IntDefine
    | FloatDefine
    | EnumDefine
    | StringEnumDefine
    | StringDefine
    | TimestampDefine
    | ArrayDefine
)
#: Any ``define``.
Define: TypeAlias = MemberDefine | StructDefine
