"""Sans-IO MQTT 3.1 / 3.1.1 codec restricted to what Tencent's hub supports (QoS 0/1).

No sockets and no clock here: the gateway owns I/O and time, this package owns bytes.
"""

from ivcloud.protocol.mqtt.decode import decode
from ivcloud.protocol.mqtt.encode import (
    encode,
    encode_connack,
    encode_puback,
    encode_publish,
)
from ivcloud.protocol.mqtt.names import topic_matches, valid_topic_filter, valid_topic_name
from ivcloud.protocol.mqtt.packets import (
    CONNACK_ACCEPTED,
    CONNACK_BAD_CREDENTIALS,
    CONNACK_BAD_PROTOCOL,
    CONNACK_IDENTIFIER_REJECTED,
    CONNACK_NOT_AUTHORIZED,
    CONNACK_SERVER_UNAVAILABLE,
    SUBACK_FAILURE,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from ivcloud.protocol.mqtt.reader import PacketReader

__all__ = [
    "CONNACK_ACCEPTED",
    "CONNACK_BAD_CREDENTIALS",
    "CONNACK_BAD_PROTOCOL",
    "CONNACK_IDENTIFIER_REJECTED",
    "CONNACK_NOT_AUTHORIZED",
    "CONNACK_SERVER_UNAVAILABLE",
    "SUBACK_FAILURE",
    "Connack",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketReader",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Publish",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "decode",
    "encode",
    "encode_connack",
    "encode_puback",
    "encode_publish",
    "topic_matches",
    "valid_topic_filter",
    "valid_topic_name",
]
