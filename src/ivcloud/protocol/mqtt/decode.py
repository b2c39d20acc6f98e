"""Decoders: wire bytes to packet values, strictly.

Everything a peer can get wrong raises :class:`MalformedPacket` (or a subclass); nothing else
escapes, so the gateway has exactly one exception to turn into "close this connection".
Decoders work on ``(data, start, end)`` spans of one buffer so the reader does not have to slice
out each packet body before the payload is sliced out of it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ivcloud.protocol.errors import MalformedPacket, QoSNotSupported, UnsupportedProtocolLevel
from ivcloud.protocol.mqtt.names import valid_topic_filter
from ivcloud.protocol.mqtt.packets import (
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    SUPPORTED_PROTOCOLS,
    Connack,
    Connect,
    Packet,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

Buffer = bytes | bytearray

# Required low nibble of the first byte per packet type; PUBLISH (3) carries real flags.
# Types 0 and 15 are reserved: no entry, so they fail the lookup.
_FIXED_FLAGS: Final[dict[int, int]] = {
    1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0,
}  # fmt: skip
_SUBACK_CODES: Final = frozenset((0, 1, 2, 0x80))


def check_first_byte(first: int) -> None:
    """Validate type and reserved flag bits as soon as the first byte is seen, so a bad
    header is refused before its (possibly large) body is buffered."""
    ptype = first >> 4
    if ptype == 3:
        qos = (first >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        if qos == 2:
            raise QoSNotSupported("QoS 2 PUBLISH is not supported")
        if qos == 0 and first & 0x08:
            raise MalformedPacket("DUP flag set on a QoS 0 PUBLISH")
        return
    expected = _FIXED_FLAGS.get(ptype)
    if expected is None:
        raise MalformedPacket(f"reserved packet type {ptype}")
    if first & 0x0F != expected:
        raise MalformedPacket(f"reserved flag bits wrong for packet type {ptype}")
    if 5 <= ptype <= 7:
        raise QoSNotSupported("QoS 2 flow packet (PUBREC/PUBREL/PUBCOMP)")


def _u16(data: Buffer, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise MalformedPacket(f"truncated {what}")
    return (data[pos] << 8) | data[pos + 1]


def _bin(data: Buffer, pos: int, end: int, what: str) -> tuple[bytes, int]:
    n = _u16(data, pos, end, what)
    start = pos + 2
    stop = start + n
    if stop > end:
        raise MalformedPacket(f"truncated {what}")
    return bytes(data[start:stop]), stop


def _str(data: Buffer, pos: int, end: int, what: str) -> tuple[str, int]:
    raw, pos = _bin(data, pos, end, what)
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not valid UTF-8") from None
    if "\x00" in s:
        raise MalformedPacket(f"{what} contains U+0000")
    return s, pos


def _pid(data: Buffer, pos: int, end: int) -> int:
    pid = _u16(data, pos, end, "packet id")
    if pid == 0:
        raise MalformedPacket("packet id 0")
    return pid


def _only_pid(data: Buffer, pos: int, end: int, name: str) -> int:
    if end - pos != 2:
        raise MalformedPacket(f"{name} remaining length must be 2")
    return _pid(data, pos, end)


def _connect(first: int, data: Buffer, pos: int, end: int) -> Connect:
    name, pos = _str(data, pos, end, "protocol name")
    level_ok = SUPPORTED_PROTOCOLS.get(name)
    if level_ok is None:
        raise MalformedPacket(f"unknown protocol name {name!r}")
    if pos >= end:
        raise MalformedPacket("truncated protocol level")
    level = data[pos]
    if level != level_ok:
        raise UnsupportedProtocolLevel(level, f"protocol {name!r} level {level} not supported")
    if pos + 4 > end:
        raise MalformedPacket("truncated CONNECT variable header")
    flags = data[pos + 1]
    keepalive = (data[pos + 2] << 8) | data[pos + 3]
    pos += 4
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    has_will = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    has_password = bool(flags & 0x40)
    has_username = bool(flags & 0x80)
    if will_qos == 3:
        raise MalformedPacket("will QoS 3")
    if not has_will and (will_qos or will_retain):
        raise MalformedPacket("will QoS/retain set without the will flag")
    if has_password and not has_username:
        raise MalformedPacket("password flag without username flag")
    client_id, pos = _str(data, pos, end, "client id")
    will_topic: str | None = None
    will_message: bytes | None = None
    if has_will:
        will_topic, pos = _str(data, pos, end, "will topic")
        if not will_topic or "+" in will_topic or "#" in will_topic:
            raise MalformedPacket("invalid will topic")
        will_message, pos = _bin(data, pos, end, "will message")
    # MQTT 3.1 clients may set the username/password flags and then omit the fields;
    # mosquitto tolerates it, so the 3.1 path does too (3.1.1 is strict).
    lenient = level == 3
    username: str | None = None
    password: bytes | None = None
    if has_username and not (lenient and pos == end):
        username, pos = _str(data, pos, end, "username")
    if has_password and username is not None and not (lenient and pos == end):
        password, pos = _bin(data, pos, end, "password")
    if pos != end:
        raise MalformedPacket("trailing bytes after CONNECT payload")
    return Connect(
        protocol_name=name,
        protocol_level=level,
        client_id=client_id,
        clean_session=bool(flags & 0x02),
        keepalive=keepalive,
        username=username,
        password=password,
        will_topic=will_topic,
        will_message=will_message,
        will_qos=will_qos,
        will_retain=will_retain,
    )


def _connack(first: int, data: Buffer, pos: int, end: int) -> Connack:
    if end - pos != 2:
        raise MalformedPacket("CONNACK remaining length must be 2")
    ack_flags = data[pos]
    code = data[pos + 1]
    if ack_flags & 0xFE:
        raise MalformedPacket("CONNACK reserved flags set")
    if code > 5:
        raise MalformedPacket(f"CONNACK return code {code}")
    if code and ack_flags:
        raise MalformedPacket("session present on a refused CONNACK")
    return Connack(return_code=code, session_present=bool(ack_flags))


def _publish(first: int, data: Buffer, pos: int, end: int) -> Publish:
    # First byte already validated by check_first_byte (QoS 0/1, DUP only with QoS 1).
    qos = (first >> 1) & 3
    topic, pos = _str(data, pos, end, "topic")
    if not topic:
        raise MalformedPacket("empty PUBLISH topic")
    if "+" in topic or "#" in topic:
        raise MalformedPacket("wildcard in PUBLISH topic")
    pid: int | None = None
    if qos:
        pid = _pid(data, pos, end)
        pos += 2
    return Publish(topic, bytes(data[pos:end]), qos, pid, bool(first & 1), bool(first & 8))


def _puback(first: int, data: Buffer, pos: int, end: int) -> Puback:
    return Puback(_only_pid(data, pos, end, "PUBACK"))


def _filter(data: Buffer, pos: int, end: int) -> tuple[str, int]:
    topic_filter, pos = _str(data, pos, end, "topic filter")
    if not valid_topic_filter(topic_filter):
        raise MalformedPacket(f"invalid topic filter {topic_filter!r}")
    return topic_filter, pos


def _subscribe(first: int, data: Buffer, pos: int, end: int) -> Subscribe:
    pid = _pid(data, pos, end)
    pos += 2
    topics: list[tuple[str, int]] = []
    while pos < end:
        topic_filter, pos = _filter(data, pos, end)
        if pos >= end:
            raise MalformedPacket("truncated requested QoS")
        qos = data[pos]
        pos += 1
        if qos > 2:
            raise MalformedPacket(f"requested QoS byte {qos:#x} invalid")
        topics.append((topic_filter, qos))
    if not topics:
        raise MalformedPacket("SUBSCRIBE without topic filters")
    return Subscribe(pid, tuple(topics))


def _suback(first: int, data: Buffer, pos: int, end: int) -> Suback:
    pid = _pid(data, pos, end)
    codes = tuple(data[pos + 2 : end])
    if not codes:
        raise MalformedPacket("SUBACK without return codes")
    if any(c not in _SUBACK_CODES for c in codes):
        raise MalformedPacket("invalid SUBACK return code")
    return Suback(pid, codes)


def _unsubscribe(first: int, data: Buffer, pos: int, end: int) -> Unsubscribe:
    pid = _pid(data, pos, end)
    pos += 2
    topics: list[str] = []
    while pos < end:
        topic_filter, pos = _filter(data, pos, end)
        topics.append(topic_filter)
    if not topics:
        raise MalformedPacket("UNSUBSCRIBE without topic filters")
    return Unsubscribe(pid, tuple(topics))


def _unsuback(first: int, data: Buffer, pos: int, end: int) -> Unsuback:
    return Unsuback(_only_pid(data, pos, end, "UNSUBACK"))


def _empty(packet: Packet) -> Callable[[int, Buffer, int, int], Packet]:
    def decode_empty(first: int, data: Buffer, pos: int, end: int) -> Packet:
        if pos != end:
            raise MalformedPacket(f"{type(packet).__name__} must have remaining length 0")
        return packet

    return decode_empty


#: Body decoders by packet type, for callers that already ran :func:`check_first_byte`.
DECODERS: Final[dict[int, Callable[[int, Buffer, int, int], Packet]]] = {
    1: _connect,
    2: _connack,
    3: _publish,
    4: _puback,
    8: _subscribe,
    9: _suback,
    10: _unsubscribe,
    11: _unsuback,
    12: _empty(PINGREQ),
    13: _empty(PINGRESP),
    14: _empty(DISCONNECT),
}


def decode_body(first: int, data: Buffer, start: int, end: int) -> Packet:
    """Decode the body ``data[start:end]`` of a packet whose first byte is ``first``."""
    check_first_byte(first)
    return DECODERS[first >> 4](first, data, start, end)


def decode_remaining_length(data: Buffer, pos: int) -> tuple[int, int] | None:
    """Return ``(remaining_length, body_start)`` for a header starting at ``data[pos]``,
    or ``None`` if more bytes are needed."""
    value = 0
    shift = 0
    i = pos + 1
    n = len(data)
    for _ in range(4):
        if i >= n:
            return None
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
    raise MalformedPacket("remaining length longer than 4 bytes")


def decode(data: Buffer) -> Packet:
    """Decode exactly one complete packet (tests, tools); streams use ``PacketReader``."""
    if not data:
        raise MalformedPacket("empty input")
    check_first_byte(data[0])
    header = decode_remaining_length(data, 0)
    if header is None:
        raise MalformedPacket("truncated fixed header")
    remaining, start = header
    if start + remaining != len(data):
        raise MalformedPacket("remaining length does not match the input size")
    return decode_body(data[0], data, start, start + remaining)
