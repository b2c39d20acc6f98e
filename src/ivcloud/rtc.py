"""The one place a WebRTC peer connection is configured, for both ends of a P2P session
(the device's ``DevicePeer`` and the app's ``AppPeer``).

aiortc is an optional dependency (the ``webrtc`` extra): it is imported only when a peer is
created, so the core install — and everything that imports ``ivcloud.device`` or
``ivcloud.client`` — works without it; creating a peer without it raises the caller's own
"unavailable" error naming the extra."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

IcePolicy = Literal["all", "relay"]
INSTALL_HINT = "WebRTC needs aiortc: pip install 'ivcloud[webrtc]'"


def aiortc_available() -> bool:
    try:
        importlib.import_module("aiortc")
    except ImportError:
        return False
    return True


def new_peer_connection(
    ice_servers: Sequence[Mapping[str, Any]], policy: IcePolicy
) -> RTCPeerConnection:
    """A peer connection using ``ice_servers`` (RTCIceServer dicts, as
    ``IceService.ice_servers`` and the App API return them) under ``policy`` ("relay" =
    TURN only).  The caller has checked :func:`aiortc_available`."""
    from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection

    if policy not in ("all", "relay"):
        raise ValueError("ice_transport_policy must be 'all' or 'relay'")
    config = RTCConfiguration(
        iceServers=[RTCIceServer(**dict(s)) for s in ice_servers],
        iceTransportPolicy=RTCIceTransportPolicy(policy),
    )
    return RTCPeerConnection(config)


async def add_remote_candidate(
    pc: RTCPeerConnection, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
) -> None:
    """Add a trickled remote candidate: a browser's ``candidate`` string, with or without the
    ``a=`` / ``candidate:`` prefix; ``None`` or blank = end of candidates.  A malformed one
    raises ``ValueError`` (callers turn it into their own negotiation error)."""
    from aiortc.sdp import candidate_from_sdp

    if candidate is None or not candidate.strip():
        await pc.addIceCandidate(None)
        return
    line = candidate.strip().removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(line)
    except (ValueError, IndexError, AssertionError) as exc:
        raise ValueError(f"not an ICE candidate: {candidate!r}") from exc
    parsed.sdpMid = sdp_mid
    parsed.sdpMLineIndex = sdp_mline_index
    await pc.addIceCandidate(parsed)
