"""The seam between the MQTT gateway (transport) and the services behind it.

The gateway knows MQTT and the per-device ACL; it knows nothing about thing models or the
database.  Services know ``$thing`` semantics; they know nothing about sockets.  The composition
root (:mod:`ivcloud.app`) wires a :class:`DeviceHandler` implementation into the gateway and
hands the gateway to services as a :class:`DeviceLink`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ivcloud.services.ports import Downlink


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An authenticated device connection: ClientId is ``{ProductId}{DeviceName}``."""

    product_id: str
    device_name: str

    @property
    def client_id(self) -> str:
        return self.product_id + self.device_name


class ConnectRefused(Exception):
    """Raised by :meth:`DeviceHandler.authenticate`; ``code`` is the CONNACK return code.

    2 = identifier rejected, 4 = bad user name or password, 5 = not authorized.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class DeviceHandler(Protocol):
    """What the gateway calls; implemented by the device services."""

    async def authenticate(
        self, client_id: str, username: str | None, password: bytes | None
    ) -> DeviceIdentity:
        """Check CONNECT credentials; raise :class:`ConnectRefused` to refuse."""
        ...

    async def on_online(self, device: DeviceIdentity, peer: str) -> None:
        """The device's session is established (after CONNACK 0)."""
        ...

    async def on_offline(self, device: DeviceIdentity, reason: str) -> None:
        """The device's session ended (not called for a session replaced by a newer one
        with the same ClientId: that device stays online)."""
        ...

    async def on_message(self, device: DeviceIdentity, topic: str, payload: bytes) -> None:
        """A PUBLISH that passed the ACL.  Awaited before the next packet of this connection
        is read and before a QoS 1 PUBACK is sent, so a slow handler is TCP backpressure."""
        ...


#: What services call to reach connected devices: the services' own port, implemented here.
DeviceLink = Downlink
