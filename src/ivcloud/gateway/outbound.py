"""Cloud → device side of one connection: its subscriptions and its QoS 1 send window.

Kept apart from the session's protocol state machine because it is the hot path of
:meth:`~ivcloud.gateway.server.MqttGateway.publish`: an exact-topic dict lookup first, the
wildcard filters only if the device has any, then one write.  Sessions are clean (no
persistence), so unacknowledged messages are never resent; the window only stops a device
that does not PUBACK from being flooded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from ivcloud.protocol.mqtt.encode import encode_publish
from ivcloud.protocol.mqtt.names import topic_matches


class Outbound:
    __slots__ = (
        "_exact",
        "_inflight",
        "_next_pid",
        "_queue",
        "_wild",
        "_write",
        "max_queued",
        "window",
    )

    def __init__(self, write: Callable[[bytes], None], window: int, max_queued: int) -> None:
        self._write = write
        self.window = window
        self.max_queued = max_queued
        self._exact: dict[str, int] = {}  # topic -> granted QoS
        self._wild: dict[str, int] = {}  # wildcard filter -> granted QoS
        self._inflight: set[int] = set()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._next_pid = 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def subscribe(self, topic_filter: str, granted: int) -> None:
        if "+" in topic_filter or "#" in topic_filter:
            self._wild[topic_filter] = granted
        else:
            self._exact[topic_filter] = granted

    def unsubscribe(self, topic_filter: str) -> None:
        self._exact.pop(topic_filter, None)
        self._wild.pop(topic_filter, None)

    def granted(self, topic: str) -> int:
        """The QoS granted for ``topic`` (the highest over overlapping filters), or -1."""
        granted = self._exact.get(topic)
        if granted is not None:
            return granted
        best = -1
        for topic_filter, qos in self._wild.items():
            if qos > best and topic_matches(topic_filter, topic):
                best = qos
        return best

    def send(self, topic: str, payload: bytes, qos: int) -> bool:
        """Write (or, past the window, queue) a PUBLISH; ``False`` if the queue is full."""
        if qos == 0:
            self._write(encode_publish(topic, payload))
            return True
        if len(self._inflight) >= self.window:
            if len(self._queue) >= self.max_queued:
                return False
            self._queue.append((topic, payload))
            return True
        self._send_qos1(topic, payload)
        return True

    def acked(self, packet_id: int) -> None:
        """A PUBACK frees a window slot; unknown ids are ignored (harmless duplicates)."""
        self._inflight.discard(packet_id)
        queue = self._queue
        while queue and len(self._inflight) < self.window:
            topic, payload = queue.popleft()
            self._send_qos1(topic, payload)

    def clear(self) -> None:
        self._queue.clear()

    def _send_qos1(self, topic: str, payload: bytes) -> None:
        pid = self._next_pid
        inflight = self._inflight
        while True:
            pid = pid % 0xFFFF + 1
            if pid not in inflight:
                break
        self._next_pid = pid
        inflight.add(pid)
        self._write(encode_publish(topic, payload, 1, pid))
