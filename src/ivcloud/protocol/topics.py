"""Per-device topic ACL (device-protocol spec §2) as pure functions.

A device may publish only to its own up-topics and subscribe only to its own down-topics.
The check works on whole topic *levels*, never on string prefixes, so ``{P}{D}x`` or
``{P}/{D}x/...`` cannot pass for ``{P}/{D}/...``.  Wildcard filters are allowed only where the
wildcard sits after the device's own ``{P}/{D}`` levels (custom topics, the RRPC request id),
because anywhere else a ``+`` or ``#`` could reach another device's traffic.

Gateway sub-devices (which use their own ``$thing`` topics over the gateway's connection once
bound) are out of scope here: that needs state, and these functions have none.
"""

from __future__ import annotations

from typing import Final

from ivcloud.protocol.mqtt.names import topic_matches, valid_topic_filter, valid_topic_name

__all__ = ["may_publish", "may_subscribe", "topic_matches"]

# Topic = prefix + "/{P}/{D}".
_UP_PREFIXES: Final[frozenset[str]] = frozenset(
    {
        "$thing/up/property",
        "$thing/up/event",
        "$thing/up/action",
        "$thing/up/service",
        "$thing/up/raw",
        "$ota/report",
        "$sys/operation",
        "$log/operation",
        "$gateway/operation",
        "$shadow/operation",
        "$template/operation",
        "$resource/up/service",
        "$video/up",  # ivcloud extension: video signalling (protocol/video_signal.py)
    }
)
_DOWN_PREFIXES: Final[frozenset[str]] = frozenset(
    {
        "$thing/down/property",
        "$thing/down/event",
        "$thing/down/action",
        "$thing/down/service",
        "$thing/down/raw",
        "$ota/update",
        "$sys/operation/result",
        "$log/operation/result",
        "$gateway/operation/result",
        "$shadow/operation/result",
        "$template/operation/result",
        "$broadcast/rxd",
        "$resource/down/service",
        "$video/down",  # ivcloud extension: video signalling (protocol/video_signal.py)
    }
)
_RRPC_UP: Final = "$rrpc/txd"
_RRPC_DOWN: Final = "$rrpc/rxd"
_FORBIDDEN_IN_IDS: Final = ("/", "+", "#", "\x00")


def _valid_identity(product_id: str, device_name: str) -> bool:
    # A '/' or wildcard inside an id would shift or widen the level structure the checks
    # below rely on; real ProductIds/DeviceNames never contain them, so refuse outright.
    if not product_id or not device_name:
        return False
    return not any(c in product_id or c in device_name for c in _FORBIDDEN_IN_IDS)


def _own_topic(
    product_id: str, device_name: str, topic: str, prefixes: frozenset[str], rrpc: str
) -> bool:
    """Whether a wildcard-free ``topic`` is one of the device's topics in one direction."""
    levels = topic.split("/")
    if topic.startswith("$"):
        if len(levels) < 4:
            return False
        if topic.startswith(rrpc + "/"):
            # $rrpc/{txd,rxd}/{P}/{D}/{processId}: exactly one non-empty id level.
            return (
                len(levels) == 5
                and levels[2] == product_id
                and levels[3] == device_name
                and levels[4] != ""
            )
        return (
            levels[-2] == product_id
            and levels[-1] == device_name
            and "/".join(levels[:-2]) in prefixes
        )
    # Custom topic {P}/{D}/<something>: the device owns everything under its own two levels.
    return (
        len(levels) >= 3
        and levels[0] == product_id
        and levels[1] == device_name
        and len(topic) > len(product_id) + len(device_name) + 2
    )


def may_publish(product_id: str, device_name: str, topic: str) -> bool:
    """Whether the device ``{product_id}/{device_name}`` may PUBLISH to ``topic``."""
    if not _valid_identity(product_id, device_name) or not valid_topic_name(topic):
        return False
    return _own_topic(product_id, device_name, topic, _UP_PREFIXES, _RRPC_UP)


def may_subscribe(product_id: str, device_name: str, topic_filter: str) -> bool:
    """Whether the device may SUBSCRIBE to ``topic_filter``.

    Wildcards are accepted only in positions that stay inside the device's own namespace:
    ``{P}/{D}/...`` custom filters (e.g. ``{P}/{D}/#``, ``{P}/{D}/+/x``) and
    ``$rrpc/rxd/{P}/{D}/+``.  ``{P}/{D}/#`` also matches ``{P}/{D}`` itself, which no other
    device can own, so it is safe.
    """
    if not _valid_identity(product_id, device_name) or not valid_topic_filter(topic_filter):
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return _own_topic(product_id, device_name, topic_filter, _DOWN_PREFIXES, _RRPC_DOWN)
    levels = topic_filter.split("/")
    if topic_filter.startswith("$"):
        return levels == ["$rrpc", "rxd", product_id, device_name, "+"]
    # The first two levels are literal and the device's own (valid_topic_filter guarantees
    # a wildcard is a whole level, so a literal level cannot hide one).
    return len(levels) >= 3 and levels[0] == product_id and levels[1] == device_name
