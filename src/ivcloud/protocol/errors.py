"""Exception hierarchy of the protocol layer.

Every parser and validator in :mod:`ivcloud.protocol` raises a subclass of
:class:`ProtocolError`; edges (gateway, api) map them once to the wire's own error codes.
"""


class ProtocolError(ValueError):
    """Input that does not follow a wire format or a thing model."""


class MalformedPacket(ProtocolError):
    """An MQTT packet that cannot be decoded; the connection that sent it is closed."""


class ThingModelError(ProtocolError):
    """A thing-model document that is not valid (import is refused, nothing stored)."""


class ValidationFailed(ProtocolError):
    """A value that does not match the thing model (``$thing`` reply code 406)."""


class QRFormatError(ProtocolError):
    """A provisioning QR string that is not ``len str`` x3."""


class CredentialError(ProtocolError):
    """MQTT credentials that are malformed, wrong or expired."""


class BadSignature(CredentialError):
    """Credentials that do not prove knowledge of the device secret: a wrong secret, an
    unknown ``;hmac…`` suffix, or a username/password that is not in the key-mode format.

    One class for all of them on purpose: the gateway answers them all alike (CONNACK 4), so a
    guesser learns nothing about which part was wrong; the message is for the server log only.
    """


class CredentialExpired(CredentialError):
    """A correctly signed username whose ``expiry`` is in the past.

    Raised only after the signature checked out, so it never leaks anything to a guesser;
    a device seeing it should re-sign with a fresh expiry rather than give up.
    """


class PacketTooLarge(MalformedPacket):
    """An MQTT packet whose announced size exceeds the reader's limit; refused before it is
    buffered, so a client cannot make the gateway allocate memory by announcing a huge packet."""


class UnsupportedProtocolLevel(MalformedPacket):
    """A CONNECT for a known protocol name but a level the gateway does not speak.

    Distinct from other decoding errors because MQTT asks the server to answer it with
    CONNACK return code 1 before closing, instead of closing silently.
    """

    def __init__(self, level: int, message: str) -> None:
        super().__init__(message)
        self.level = level


class QoSNotSupported(MalformedPacket):
    """A QoS 2 PUBLISH (or a QoS 2 handshake packet): Tencent's hub supports QoS 0/1 only,
    and a compatible gateway treats QoS 2 as a protocol error that closes the connection."""


class MediaFormatError(ProtocolError):
    """Bytes that are not valid H.264 / AAC / FLV / MP4 framing (or values those containers
    cannot represent).

    One class for the whole media layer so the hub can drop a misbehaving publisher with a
    single ``except``, whichever container or codec layer noticed; parsers never let
    ``IndexError`` or ``struct.error`` escape, because a device-controlled stream must not be
    able to crash a remux task with an unexpected exception type.
    """
