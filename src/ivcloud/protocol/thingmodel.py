"""Thing models ("物模型"): the immutable compiled model and its validators (device-protocol.md §4).

A :class:`ThingModel` is built once per product, from a document checked by
:mod:`ivcloud.protocol.modeldoc`, and compiles a validator per property, event and action
(see :mod:`ivcloud.protocol.values`) at construction, because
:meth:`ThingModel.validate_report` runs for every device report.

Validation policy where §4.3 leaves it open: unknown ids are refused, values are type- and
range-checked, enum membership is checked, ``control`` of an ``r`` property is refused, and
each failure is a :class:`ValidationFailed` whose message names the path
(``battery_percentage: 101 is above max 100``); the gateway turns it into reply code 406.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal

from ivcloud.protocol.errors import ThingModelError, ValidationFailed
from ivcloud.protocol.modeldoc import (
    DATA_TYPES,
    Action,
    Event,
    Param,
    Property,
    parse_document,
)
from ivcloud.protocol.values import Define, InvalidValue, Validator, show

__all__ = [
    "DATA_TYPES",
    "STANDARD_MODELS",
    "Action",
    "Event",
    "Param",
    "Property",
    "StandardModel",
    "ThingModel",
    "default_value",
    "load_standard_model",
    "loads_thing_model",
    "parse_thing_model",
]

StandardModel = Literal["camera", "lock-image", "lock-video"]
STANDARD_MODELS: tuple[StandardModel, ...] = ("camera", "lock-image", "lock-video")


def default_value(item: Property | Param | Define) -> Any:
    """A value that passes validation: ``start`` for numbers, the first mapping key for
    enums, the shortest legal string, ``0`` for timestamps, member defaults for structs and
    ``[]`` for arrays. Simulators use it as their power-on state."""
    define = item.define if isinstance(item, Property | Param) else item
    return define.default()


def _read_only(value: Any) -> Any:
    raise InvalidValue("property is read-only (mode r)")


def _params_validator(params: tuple[Param, ...]) -> dict[str, Validator]:
    return {p.id: p.define.validator() for p in params}


def _check_object(
    validators: Mapping[str, Validator],
    params: object,
    *,
    label: str,
    prefix: str,
    unknown: str,
    allow_empty: bool,
) -> dict[str, Any]:
    """The shared loop of every ``validate_*``: one dict lookup and one closure call per key;
    paths are only formatted when something fails. ``label`` names the whole object in
    messages, ``prefix`` goes before each key (empty for reports, whose paths read best as
    the bare property id: ``battery_percentage: 101 is above max 100``)."""
    if not isinstance(params, dict):
        raise ValidationFailed(f"{label}: {show(params)} is not an object")
    if not params and not allow_empty:
        raise ValidationFailed(f"{label}: empty object")
    out: dict[str, Any] = {}
    for key, value in params.items():
        check = validators.get(key)
        if check is None:
            raise ValidationFailed(f"{prefix}{_key(key)}: {unknown}")
        try:
            out[key] = check(value)
        except InvalidValue as e:
            raise e.under(prefix + key) from None
    return out


def _key(key: object) -> str:
    return key if isinstance(key, str) and key.isidentifier() else show(key)


@dataclass(frozen=True, slots=True)
class ThingModel:
    """A parsed thing model. Immutable; compares by content; validators are built in
    ``__post_init__`` so a model is ready for the report hot path as soon as it exists."""

    version: str = "1.0"
    product_id: str = ""
    category_id: str = ""
    properties: tuple[Property, ...] = ()
    events: tuple[Event, ...] = ()
    actions: tuple[Action, ...] = ()
    _props: dict[str, Property] = field(init=False, repr=False, compare=False)
    _events: dict[str, Event] = field(init=False, repr=False, compare=False)
    _actions: dict[str, Action] = field(init=False, repr=False, compare=False)
    _report: dict[str, Validator] = field(init=False, repr=False, compare=False)
    _control: dict[str, Validator] = field(init=False, repr=False, compare=False)
    _event_checks: dict[str, dict[str, Validator]] = field(init=False, repr=False, compare=False)
    _input_checks: dict[str, dict[str, Validator]] = field(init=False, repr=False, compare=False)
    _output_checks: dict[str, dict[str, Validator]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        report = {p.id: p.define.validator() for p in self.properties}
        control = {p.id: report[p.id] if p.writable else _read_only for p in self.properties}
        set_ = object.__setattr__
        set_(self, "_props", {p.id: p for p in self.properties})
        set_(self, "_events", {e.id: e for e in self.events})
        set_(self, "_actions", {a.id: a for a in self.actions})
        set_(self, "_report", report)
        set_(self, "_control", control)
        set_(self, "_event_checks", {e.id: _params_validator(e.params) for e in self.events})
        set_(self, "_input_checks", {a.id: _params_validator(a.input) for a in self.actions})
        set_(self, "_output_checks", {a.id: _params_validator(a.output) for a in self.actions})

    # -- lookups

    def property(self, property_id: str) -> Property | None:
        return self._props.get(property_id)

    def event(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def action(self, action_id: str) -> Action | None:
        return self._actions.get(action_id)

    def defaults(self) -> dict[str, Any]:
        """Every property at its :func:`default_value`: a full report that validates."""
        return {p.id: p.define.default() for p in self.properties}

    def with_product_id(self, product_id: str) -> ThingModel:
        """The same model bound to a product (the standard templates ship with ``""``)."""
        return replace(self, product_id=product_id)

    # -- export

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "profile": {"ProductId": self.product_id, "CategoryId": self.category_id},
            "properties": [p.to_json() for p in self.properties],
            "events": [e.to_json() for e in self.events],
            "actions": [a.to_json() for a in self.actions],
        }

    # -- validation (hot path)

    def validate_report(self, params: object) -> dict[str, Any]:
        """Check a ``report``'s ``params`` (partial reports allowed, empty refused) and
        return them normalised (JSON true/false → 1/0)."""
        return _check_object(
            self._report,
            params,
            label="params",
            prefix="",
            unknown="unknown property",
            allow_empty=False,
        )

    def validate_control(self, params: object) -> dict[str, Any]:
        """As :meth:`validate_report`, and every property must be writable (``rw``):
        the cloud never sends ``control`` for a read-only property."""
        return _check_object(
            self._control,
            params,
            label="params",
            prefix="",
            unknown="unknown property",
            allow_empty=False,
        )

    def validate_event(self, event_id: str, type: str | None, params: object) -> dict[str, Any]:
        """Check an ``event_post``. ``type`` must equal the model's (``None`` skips the check,
        for callers whose message had no ``type``); unknown params fail, missing ones do not
        (the C SDK posts only the params the firmware filled in)."""
        event = self._events.get(event_id) if isinstance(event_id, str) else None
        if event is None:
            raise ValidationFailed(f"{_key(event_id)}: unknown event")
        if type is not None and type != event.type:
            raise ValidationFailed(
                f"{event_id}.type: {show(type)} does not match the model's {show(event.type)}"
            )
        return _check_object(
            self._event_checks[event_id],
            params,
            label=f"{event_id}.params",
            prefix=f"{event_id}.params.",
            unknown="unknown param",
            allow_empty=True,
        )

    def validate_action_input(self, action_id: str, params: object) -> dict[str, Any]:
        """Check the ``params`` the cloud sends with an ``action`` (missing inputs allowed:
        the spec does not say inputs are mandatory and the standard actions have none)."""
        return self._check_action(self._input_checks, action_id, params, "input")

    def validate_action_output(self, action_id: str, response: object) -> dict[str, Any]:
        """Check the ``response`` of an ``action_reply`` (missing outputs allowed: a failed
        action often answers ``{}``)."""
        return self._check_action(self._output_checks, action_id, response, "output")

    def _check_action(
        self,
        table: dict[str, dict[str, Validator]],
        action_id: str,
        params: object,
        side: str,
    ) -> dict[str, Any]:
        checks = table.get(action_id) if isinstance(action_id, str) else None
        if checks is None:
            raise ValidationFailed(f"{_key(action_id)}: unknown action")
        return _check_object(
            checks,
            params,
            label=f"{action_id}.{side}",
            prefix=f"{action_id}.{side}.",
            unknown=f"unknown {side}",
            allow_empty=True,
        )


def parse_thing_model(doc: object) -> ThingModel:
    """Import a JSON-decoded thing-model document; :class:`ThingModelError` names the path
    of the first problem (see :mod:`ivcloud.protocol.modeldoc` for what is tolerated)."""
    return ThingModel(*parse_document(doc))


def loads_thing_model(text: str | bytes) -> ThingModel:
    """Import a thing model from JSON text (what the console upload receives)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ThingModelError(f"not a JSON document: {e}") from None
    return parse_thing_model(doc)


def load_standard_model(name: StandardModel) -> ThingModel:
    """One of the standard category templates shipped in ``protocol/models/`` (cached: a
    model is immutable, and every camera product starts from the same one)."""
    if name not in STANDARD_MODELS:
        raise ValueError(f"unknown standard model {name!r} (one of {', '.join(STANDARD_MODELS)})")
    return _load_standard(name)


@functools.cache
def _load_standard(name: str) -> ThingModel:
    # A separate function so the public one keeps its Literal signature (functools.cache
    # erases parameter types for type checkers).
    text = resources.files("ivcloud.protocol").joinpath("models", f"{name}.json")
    return loads_thing_model(text.read_text(encoding="utf-8"))
