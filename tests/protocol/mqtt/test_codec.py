"""MQTT codec: wire compatibility, every refusal path, and property tests for the reader."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivcloud.protocol.errors import (
    MalformedPacket,
    PacketTooLarge,
    QoSNotSupported,
    UnsupportedProtocolLevel,
)
from ivcloud.protocol.mqtt import (
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketReader,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    decode,
    encode,
    encode_publish,
    topic_matches,
    valid_topic_filter,
)
from ivcloud.protocol.mqtt.encode import encode_remaining_length


def s(text: str) -> bytes:
    """An MQTT UTF-8 string field."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def connect_body(
    name: str = "MQTT", level: int = 4, flags: int = 0x02, keepalive: int = 60
) -> bytes:
    return s(name) + bytes((level, flags)) + keepalive.to_bytes(2, "big")


SAMPLES: list[Packet] = [
    Connect(client_id="ABCDEFGHIJlock01", username="ABCDEFGHIJlock01;21010406;a1b2c;99999"),
    Connect(
        protocol_name="MQIsdp",
        protocol_level=3,
        client_id="c",
        clean_session=False,
        keepalive=0,
        username="u",
        password=b"\x00\xffsecret",
        will_topic="w/t",
        will_message=b"bye",
        will_qos=2,
        will_retain=True,
    ),
    Connect(client_id=""),
    Connack(0, session_present=True),
    Connack(5),
    Publish("$thing/up/property/P/D", b'{"method":"report"}'),
    Publish("a/b", b"x" * 300, qos=1, packet_id=65535, retain=True, dup=True),
    Publish("ü/日本", b""),
    Puback(1),
    Subscribe(7, (("$thing/down/property/P/D", 0), ("P/D/#", 1), ("+/x/+", 2))),
    Suback(7, (0, 1, 2, 0x80)),
    Unsubscribe(9, ("a/b", "P/D/#")),
    Unsuback(9),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]


@pytest.mark.parametrize("packet", SAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip(packet: Packet) -> None:
    assert decode(encode(packet)) == packet
    assert PacketReader().feed(encode(packet)) == [packet]


def test_exact_wire_bytes() -> None:
    assert encode(Pingreq()) == b"\xc0\x00"
    assert encode(Pingresp()) == b"\xd0\x00"
    assert encode(Disconnect()) == b"\xe0\x00"
    assert encode(Connack(4)) == b"\x20\x02\x00\x04"
    assert encode(Puback(258)) == b"\x40\x02\x01\x02"
    assert encode(Publish("a", b"hi", qos=1, packet_id=1)) == b"\x32\x07\x00\x01a\x00\x01hi"
    assert encode(Suback(1, (1, 0x80))) == b"\x90\x04\x00\x01\x01\x80"
    # MQTT 3.1 CONNECT as the Tencent Python SDK (paho, MQTTv31) sends it.
    wire = frame(0x10, connect_body("MQIsdp", 3, 0xC2) + s("cid") + s("u") + s("p"))
    assert decode(wire) == Connect("MQIsdp", 3, "cid", True, 60, "u", b"p")


def test_remaining_length_boundaries() -> None:
    for n, wire in ((127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                    (16384, b"\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f")):  # fmt: skip
        assert encode_remaining_length(n) == wire
    with pytest.raises(ValueError):
        encode_remaining_length(268_435_456)


def test_password_not_in_repr() -> None:
    assert "hunter2" not in repr(Connect(client_id="c", username="u", password=b"hunter2"))


# -- rejection paths ---------------------------------------------------------------------

PUB_TOPIC = s("a/b")

REJECTIONS: list[tuple[str, bytes, type[Exception]]] = [
    ("reserved type 0", b"\x00\x00", MalformedPacket),
    ("reserved type 15", b"\xf0\x00", MalformedPacket),
    ("CONNECT flags", frame(0x11, connect_body() + s("c")), MalformedPacket),
    ("SUBSCRIBE flags 0", frame(0x80, b"\x00\x01" + s("a") + b"\x00"), MalformedPacket),
    ("UNSUBSCRIBE flags 0", frame(0xA0, b"\x00\x01" + s("a")), MalformedPacket),
    ("PINGREQ flags", b"\xc1\x00", MalformedPacket),
    ("PUBLISH QoS 3", frame(0x36, PUB_TOPIC + b"\x00\x01"), MalformedPacket),
    ("PUBLISH QoS 2", frame(0x34, PUB_TOPIC + b"\x00\x01"), QoSNotSupported),
    ("PUBREC", b"\x50\x02\x00\x01", QoSNotSupported),
    ("PUBREL", b"\x62\x02\x00\x01", QoSNotSupported),
    ("PUBCOMP", b"\x70\x02\x00\x01", QoSNotSupported),
    ("DUP on QoS 0", frame(0x38, PUB_TOPIC), MalformedPacket),
    ("remaining length 5 bytes", b"\x30\xff\xff\xff\xff\x01", MalformedPacket),
    ("truncated topic", frame(0x30, b"\x00\x09a/b"), MalformedPacket),
    ("truncated topic length", frame(0x30, b"\x00"), MalformedPacket),
    ("topic not UTF-8", frame(0x30, b"\x00\x02\xc3\x28"), MalformedPacket),
    ("topic surrogate", frame(0x30, b"\x00\x03\xed\xa0\x80"), MalformedPacket),
    ("topic NUL", frame(0x30, s("a\x00b")), MalformedPacket),
    ("publish wildcard +", frame(0x30, s("a/+")), MalformedPacket),
    ("publish wildcard #", frame(0x30, s("a/#")), MalformedPacket),
    ("empty topic", frame(0x30, s("") + b"payload"), MalformedPacket),
    ("QoS 1 packet id 0", frame(0x32, PUB_TOPIC + b"\x00\x00"), MalformedPacket),
    ("QoS 1 packet id missing", frame(0x32, PUB_TOPIC + b"\x00"), MalformedPacket),
    ("unknown protocol", frame(0x10, connect_body("MQTX", 4) + s("c")), MalformedPacket),
    ("MQTT level 5", frame(0x10, connect_body("MQTT", 5) + s("c")), UnsupportedProtocolLevel),
    ("MQTT level 3", frame(0x10, connect_body("MQTT", 3) + s("c")), UnsupportedProtocolLevel),
    ("MQIsdp level 4", frame(0x10, connect_body("MQIsdp", 4) + s("c")), UnsupportedProtocolLevel),
    ("CONNECT reserved bit", frame(0x10, connect_body(flags=0x03) + s("c")), MalformedPacket),
    ("will QoS w/o will", frame(0x10, connect_body(flags=0x0A) + s("c")), MalformedPacket),
    ("will retain w/o will", frame(0x10, connect_body(flags=0x22) + s("c")), MalformedPacket),
    (
        "will QoS 3",
        frame(0x10, connect_body(flags=0x1E) + s("c") + s("w") + s("m")),
        MalformedPacket,
    ),
    (
        "will topic wildcard",
        frame(0x10, connect_body(flags=0x06) + s("c") + s("w/#") + s("m")),
        MalformedPacket,
    ),
    (
        "password w/o username",
        frame(0x10, connect_body(flags=0x42) + s("c") + s("p")),
        MalformedPacket,
    ),
    (
        "3.1.1 missing password",
        frame(0x10, connect_body(flags=0xC2) + s("c") + s("u")),
        MalformedPacket,
    ),
    ("client id not UTF-8", frame(0x10, connect_body() + b"\x00\x01\xff"), MalformedPacket),
    ("truncated client id", frame(0x10, connect_body() + b"\x00\x05abc"), MalformedPacket),
    ("truncated CONNECT header", frame(0x10, s("MQTT") + b"\x04\x02"), MalformedPacket),
    ("CONNECT trailing bytes", frame(0x10, connect_body() + s("c") + b"x"), MalformedPacket),
    ("CONNACK length", b"\x20\x03\x00\x00\x00", MalformedPacket),
    ("CONNACK flags", b"\x20\x02\x02\x00", MalformedPacket),
    ("CONNACK code 6", b"\x20\x02\x00\x06", MalformedPacket),
    ("PUBACK length", b"\x40\x03\x00\x01\x00", MalformedPacket),
    ("PUBACK id 0", b"\x40\x02\x00\x00", MalformedPacket),
    ("SUBSCRIBE empty", frame(0x82, b"\x00\x01"), MalformedPacket),
    ("SUBSCRIBE id 0", frame(0x82, b"\x00\x00" + s("a") + b"\x00"), MalformedPacket),
    ("SUBSCRIBE QoS 3", frame(0x82, b"\x00\x01" + s("a") + b"\x03"), MalformedPacket),
    ("SUBSCRIBE QoS reserved bits", frame(0x82, b"\x00\x01" + s("a") + b"\x04"), MalformedPacket),
    ("SUBSCRIBE QoS missing", frame(0x82, b"\x00\x01" + s("a")), MalformedPacket),
    ("SUBSCRIBE # not last", frame(0x82, b"\x00\x01" + s("a/#/b") + b"\x00"), MalformedPacket),
    ("SUBSCRIBE partial +", frame(0x82, b"\x00\x01" + s("a/b+") + b"\x00"), MalformedPacket),
    ("SUBSCRIBE empty filter", frame(0x82, b"\x00\x01" + s("") + b"\x00"), MalformedPacket),
    ("UNSUBSCRIBE empty", frame(0xA2, b"\x00\x01"), MalformedPacket),
    ("UNSUBSCRIBE bad filter", frame(0xA2, b"\x00\x01" + s("#/a")), MalformedPacket),
    ("SUBACK bad code", frame(0x90, b"\x00\x01\x03"), MalformedPacket),
    ("SUBACK no codes", frame(0x90, b"\x00\x01"), MalformedPacket),
    ("UNSUBACK length", b"\xb0\x01\x00", MalformedPacket),
    ("PINGREQ body", b"\xc0\x01\x00", MalformedPacket),
    ("DISCONNECT body", b"\xe0\x01\x00", MalformedPacket),
]


@pytest.mark.parametrize(
    ("wire", "exc"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections(wire: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        PacketReader().feed(wire)
    assert type(info.value) is exc
    with pytest.raises(exc):
        decode(wire)


def test_unsupported_level_carries_level() -> None:
    with pytest.raises(UnsupportedProtocolLevel) as info:
        decode(frame(0x10, connect_body("MQTT", 5) + s("c")))
    assert info.value.level == 5


def test_mqtt31_tolerates_omitted_credentials() -> None:
    # 3.1 clients may set the username/password flags and omit the fields (as mosquitto allows).
    both_missing = frame(0x10, connect_body("MQIsdp", 3, 0xC2) + s("c"))
    assert decode(both_missing) == Connect("MQIsdp", 3, "c")
    pw_missing = frame(0x10, connect_body("MQIsdp", 3, 0xC2) + s("c") + s("u"))
    assert decode(pw_missing) == Connect("MQIsdp", 3, "c", username="u")


def test_decode_requires_exact_length() -> None:
    wire = encode(Puback(1))
    for bad in (b"", wire[:1], wire[:-1], wire + b"\x00"):
        with pytest.raises(MalformedPacket):
            decode(bad)


def test_encoder_refuses_unencodable() -> None:
    bad: list[Packet] = [
        Publish("a", qos=2, packet_id=1),
        Publish("a", qos=1),
        Publish("a", qos=0, packet_id=3),
        Publish("a/+"),
        Publish(""),
        Publish("a", dup=True),
        Puback(0),
        Subscribe(1, ()),
        Subscribe(1, (("a", 3),)),
        Subscribe(1, (("a/#/b", 0),)),
        Suback(1, (5,)),
        Unsubscribe(1, ()),
        Connack(9),
        Connack(1, session_present=True),
        Connect(password=b"p"),
        Connect(will_qos=1),
        Connect(keepalive=70000),
        Connect(client_id="x" * 70000),
    ]
    for packet in bad:
        with pytest.raises(ValueError):
            encode(packet)


def test_qos1_with_packet_id_encodes_fast_path_identically() -> None:
    assert encode_publish("t", b"p", 1, 5) == encode(Publish("t", b"p", 1, 5))
    assert encode_publish(b"t", b"p") == encode(Publish("t", b"p"))


# -- the reader --------------------------------------------------------------------------


def test_reader_splits_and_joins() -> None:
    stream = b"".join(encode(p) for p in SAMPLES)
    reader = PacketReader()
    got: list[Packet] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got == SAMPLES
    assert reader.buffered == 0
    assert PacketReader().feed(stream) == SAMPLES


def test_reader_size_limit_is_exact() -> None:
    limit = 100
    fits = encode_publish("t", b"x" * (limit - 5))  # 1 + 1 + 2 + 1 + payload
    assert len(fits) == limit
    assert len(PacketReader(limit).feed(fits)) == 1
    too_big = encode_publish("t", b"x" * (limit - 4))
    with pytest.raises(PacketTooLarge):
        PacketReader(limit).feed(too_big)


def test_reader_refuses_huge_announcement_before_body() -> None:
    reader = PacketReader(1024)
    with pytest.raises(PacketTooLarge):
        reader.feed(b"\x30\xff\xff\xff\x7f")  # announces 256 MiB, sends nothing else
    assert reader.buffered == 0


def test_reader_stays_failed() -> None:
    reader = PacketReader()
    with pytest.raises(MalformedPacket):
        reader.feed(b"\x00\x00")
    with pytest.raises(MalformedPacket):
        reader.feed(encode(Pingreq()))


def test_reader_bad_header_refused_without_body() -> None:
    with pytest.raises(QoSNotSupported):
        PacketReader().feed(b"\x34")  # first byte alone is enough to know


def test_reader_constructor_validates() -> None:
    with pytest.raises(ValueError):
        PacketReader(1)


def test_filter_syntax_and_matching() -> None:
    assert valid_topic_filter("#") and valid_topic_filter("+/+") and valid_topic_filter("a//b")
    assert (
        not valid_topic_filter("a#") and not valid_topic_filter("#/") and not valid_topic_filter("")
    )
    assert topic_matches("a/#", "a") and topic_matches("a/#", "a/b/c")
    assert topic_matches("a/+/c", "a/b/c") and not topic_matches("a/+/c", "a/b/c/d")
    assert topic_matches("a/+", "a/") and not topic_matches("a/+", "a")
    assert not topic_matches("#", "$thing/up/property/P/D")
    assert not topic_matches("+/up/#", "$thing/up")
    assert topic_matches("$thing/#", "$thing/up/property/P/D")


# -- property tests ----------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
    max_size=20,
)
_topic = _text.filter(bool)
_level = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#/"),
    max_size=6,
)
_filter = st.builds(
    lambda levels, hash_tail: "/".join([*levels, "#"] if hash_tail else levels),
    st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=5),
    st.booleans(),
).filter(bool)
_pid = st.integers(1, 0xFFFF)


@st.composite
def _connect(draw: st.DrawFn) -> Connect:
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    will = draw(st.booleans())
    username = draw(st.none() | _text)
    return Connect(
        protocol_name=name,
        protocol_level=level,
        client_id=draw(_text),
        clean_session=draw(st.booleans()),
        keepalive=draw(st.integers(0, 0xFFFF)),
        username=username,
        password=None if username is None else draw(st.none() | st.binary(max_size=40)),
        will_topic=draw(_topic) if will else None,
        will_message=draw(st.binary(max_size=20)) if will else None,
        will_qos=draw(st.integers(0, 2)) if will else 0,
        will_retain=draw(st.booleans()) if will else False,
    )


@st.composite
def _publish(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 1))
    return Publish(
        topic=draw(_topic),
        payload=draw(st.binary(max_size=300)),
        qos=qos,
        packet_id=draw(_pid) if qos else None,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
    )


packets = st.one_of(
    _connect(),
    st.builds(Connack, st.integers(0, 5), st.just(False)),
    st.builds(Connack, st.just(0), st.just(True)),
    _publish(),
    st.builds(Puback, _pid),
    st.builds(
        Subscribe,
        _pid,
        st.lists(st.tuples(_filter, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(Suback, _pid, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1).map(tuple)),
    st.builds(Unsubscribe, _pid, st.lists(_filter, min_size=1, max_size=4).map(tuple)),
    st.builds(Unsuback, _pid),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


@given(packets)
def test_property_round_trip(packet: Packet) -> None:
    assert decode(encode(packet)) == packet


@given(st.lists(packets, max_size=8), st.lists(st.integers(1, 64), max_size=50))
def test_property_any_chunking_gives_same_packets(ps: list[Packet], cuts: list[int]) -> None:
    stream = b"".join(encode(p) for p in ps)
    reader = PacketReader()
    got: list[Packet] = []
    pos = 0
    for cut in cuts:
        got += reader.feed(stream[pos : pos + cut])
        pos += cut
    got += reader.feed(stream[pos:])
    assert got == ps


def _feed_all(reader: PacketReader, chunks: list[bytes]) -> None:
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except MalformedPacket:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(2, 512))
def test_property_random_bytes_only_raise_malformed(chunks: list[bytes], limit: int) -> None:
    _feed_all(PacketReader(limit), chunks)


@given(packets, st.integers(0, 10_000), st.integers(0, 255), st.integers(1, 16))
def test_property_mutated_packets_only_raise_malformed(
    packet: Packet, where: int, value: int, chunk: int
) -> None:
    wire = bytearray(encode(packet))
    wire[where % len(wire)] = value
    data = bytes(wire)
    _feed_all(PacketReader(), [data[i : i + chunk] for i in range(0, len(data), chunk)])
