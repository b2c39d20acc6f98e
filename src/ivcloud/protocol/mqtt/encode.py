"""Encoders: packet values to wire bytes.

Encoders trust their caller (the gateway, tests, simulators) more than decoders trust the
network, but still refuse with :class:`ValueError` anything that would put bytes on the wire a
peer must reject; a bug should fail here rather than as a mysterious disconnect on the device.
:func:`encode_publish` is the allocation-lean path the gateway uses for every delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ivcloud.protocol.mqtt.names import valid_topic_filter, valid_topic_name
from ivcloud.protocol.mqtt.packets import (
    MAX_PACKET_ID,
    MAX_REMAINING_LENGTH,
    Connack,
    Connect,
    Disconnect,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

PINGREQ_BYTES: Final = b"\xc0\x00"
PINGRESP_BYTES: Final = b"\xd0\x00"
DISCONNECT_BYTES: Final = b"\xe0\x00"
_SUBACK_CODES: Final = frozenset((0, 1, 2, 0x80))


def encode_remaining_length(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} exceeds the MQTT maximum")
    out = bytearray()
    while True:
        digit = n & 0x7F
        n >>= 7
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT string/binary field longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _packet_id(pid: int | None) -> bytes:
    if pid is None or not 1 <= pid <= MAX_PACKET_ID:
        raise ValueError(f"packet id must be 1..65535, got {pid!r}")
    return pid.to_bytes(2, "big")


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def encode_publish(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    packet_id: int = 0,
    *,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """Encode a PUBLISH; ``topic`` may be pre-encoded UTF-8 so fan-out can encode it once."""
    topic_b = topic.encode("utf-8") if isinstance(topic, str) else topic
    n_topic = len(topic_b)
    if qos == 0:
        if dup:
            raise ValueError("DUP must be 0 on a QoS 0 PUBLISH")
        remaining = 2 + n_topic + len(payload)
        pid = b""
    elif qos == 1:
        remaining = 4 + n_topic + len(payload)
        pid = _packet_id(packet_id)
    else:
        raise ValueError(f"QoS {qos} is not supported (0 or 1)")
    if not n_topic or n_topic > 0xFFFF:
        raise ValueError("PUBLISH topic must be 1..65535 bytes")
    first = 0x30 | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    header = (
        bytes((first, remaining))
        if remaining < 128
        else bytes((first,)) + encode_remaining_length(remaining)
    )
    return b"".join((header, n_topic.to_bytes(2, "big"), topic_b, pid, payload))


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + _packet_id(packet_id)


def encode_connack(return_code: int, session_present: bool = False) -> bytes:
    if not 0 <= return_code <= 5:
        raise ValueError(f"CONNACK return code must be 0..5, got {return_code}")
    if session_present and return_code:
        raise ValueError("session_present must be 0 when the connection is refused")
    return bytes((0x20, 2, 1 if session_present else 0, return_code))


def _connect(p: Connect) -> bytes:
    if not 0 <= p.keepalive <= 0xFFFF:
        raise ValueError("keepalive must be 0..65535")
    if p.will_qos not in (0, 1, 2):
        raise ValueError("will QoS must be 0..2")
    flags = 0x02 if p.clean_session else 0
    parts = [_string(p.protocol_name), bytes((p.protocol_level,)), b"", b""]
    parts.append(_string(p.client_id))
    if p.will_topic is not None:
        if not valid_topic_name(p.will_topic):
            raise ValueError("invalid will topic")
        flags |= 0x04 | (p.will_qos << 3) | (0x20 if p.will_retain else 0)
        parts.append(_string(p.will_topic))
        parts.append(_binary(p.will_message or b""))
    elif p.will_qos or p.will_retain or p.will_message is not None:
        raise ValueError("will QoS/retain/message given without a will topic")
    if p.username is not None:
        flags |= 0x80
        parts.append(_string(p.username))
    if p.password is not None:
        if p.username is None:
            raise ValueError("a password requires a username")
        flags |= 0x40
        parts.append(_binary(p.password))
    parts[2] = bytes((flags,))
    parts[3] = p.keepalive.to_bytes(2, "big")
    return _frame(0x10, b"".join(parts))


def _publish(p: Publish) -> bytes:
    if not valid_topic_name(p.topic):
        raise ValueError(f"invalid PUBLISH topic {p.topic!r}")
    if p.qos == 0 and p.packet_id is not None:
        raise ValueError("a QoS 0 PUBLISH has no packet id")
    return encode_publish(p.topic, p.payload, p.qos, p.packet_id or 0, retain=p.retain, dup=p.dup)


def _subscribe(p: Subscribe) -> bytes:
    if not p.topics:
        raise ValueError("SUBSCRIBE needs at least one filter")
    parts = [_packet_id(p.packet_id)]
    for topic_filter, qos in p.topics:
        if not valid_topic_filter(topic_filter) or qos not in (0, 1, 2):
            raise ValueError(f"invalid subscription {topic_filter!r} QoS {qos}")
        parts.append(_string(topic_filter))
        parts.append(bytes((qos,)))
    return _frame(0x82, b"".join(parts))


def _suback(p: Suback) -> bytes:
    if not p.return_codes or any(c not in _SUBACK_CODES for c in p.return_codes):
        raise ValueError(f"invalid SUBACK return codes {p.return_codes!r}")
    return _frame(0x90, _packet_id(p.packet_id) + bytes(p.return_codes))


def _unsubscribe(p: Unsubscribe) -> bytes:
    if not p.topics:
        raise ValueError("UNSUBSCRIBE needs at least one filter")
    parts = [_packet_id(p.packet_id)]
    for topic_filter in p.topics:
        if not valid_topic_filter(topic_filter):
            raise ValueError(f"invalid filter {topic_filter!r}")
        parts.append(_string(topic_filter))
    return _frame(0xA2, b"".join(parts))


_ENCODERS: Final[dict[type[Any], Callable[[Any], bytes]]] = {
    Connect: _connect,
    Connack: lambda p: encode_connack(p.return_code, p.session_present),
    Publish: _publish,
    Puback: lambda p: encode_puback(p.packet_id),
    Subscribe: _subscribe,
    Suback: _suback,
    Unsubscribe: _unsubscribe,
    Unsuback: lambda p: b"\xb0\x02" + _packet_id(p.packet_id),
    Pingreq: lambda _p: PINGREQ_BYTES,
    Pingresp: lambda _p: PINGRESP_BYTES,
    Disconnect: lambda _p: DISCONNECT_BYTES,
}


def encode(packet: Packet) -> bytes:
    """Encode any packet (the generic path; hot paths call the specific encoders)."""
    return _ENCODERS[type(packet)](packet)
