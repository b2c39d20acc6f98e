"""MQTT 3.1 / 3.1.1 control packets as plain immutable values.

Only what Tencent's hub supports is representable on the decoding side: QoS 0 and 1
(a QoS 2 PUBLISH is refused by the decoder), no MQTT 5 properties.  Values are frozen slotted
dataclasses so the gateway can pass them around without defensive copies and so that a decoded
packet compares equal to the one that was encoded (the property tests rely on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final


class PacketType(IntEnum):
    """The 4-bit type in the first byte of every packet."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


PROTOCOL_MQTT31: Final = ("MQIsdp", 3)
PROTOCOL_MQTT311: Final = ("MQTT", 4)
#: Known protocol names mapped to the level the gateway accepts for each.
SUPPORTED_PROTOCOLS: Final[dict[str, int]] = {"MQIsdp": 3, "MQTT": 4}

# CONNACK return codes (MQTT 3.1.1 §3.2.2.3; identical in 3.1).
CONNACK_ACCEPTED: Final = 0
CONNACK_BAD_PROTOCOL: Final = 1
CONNACK_IDENTIFIER_REJECTED: Final = 2
CONNACK_SERVER_UNAVAILABLE: Final = 3
CONNACK_BAD_CREDENTIALS: Final = 4
CONNACK_NOT_AUTHORIZED: Final = 5

#: SUBACK return code for a refused subscription.
SUBACK_FAILURE: Final = 0x80

MAX_REMAINING_LENGTH: Final = 268_435_455
MAX_PACKET_ID: Final = 0xFFFF


@dataclass(frozen=True, slots=True)
class Connect:
    protocol_name: str = "MQTT"
    protocol_level: int = 4
    client_id: str = ""
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    # Kept out of repr so a logged or failing-test packet never shows a device credential.
    password: bytes | None = field(default=None, repr=False)
    will_topic: str | None = None
    will_message: bytes | None = field(default=None, repr=False)
    will_qos: int = 0
    will_retain: bool = False


@dataclass(frozen=True, slots=True)
class Connack:
    return_code: int = CONNACK_ACCEPTED
    session_present: bool = False


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes = field(default=b"", repr=False)
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    #: ``(topic_filter, requested_qos)`` pairs; requested QoS 2 is legal here, the gateway
    #: grants at most 1.
    topics: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unsuback:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    pass


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)

# Shared instances: these packets carry no data, so decoding never needs to allocate them.
PINGREQ: Final = Pingreq()
PINGRESP: Final = Pingresp()
DISCONNECT: Final = Disconnect()
