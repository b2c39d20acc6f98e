"""ivcloud's ``_sys_xp2p_info`` value (spec device-protocol.md §7.8; an ivcloud format).

Tencent's devices report an opaque ``XP2P…`` string (a peer name in Tencent's closed P2P
network plus the SDK version, e.g. ``XP2Pk3fS3onCsgGaQJCinTCtfw==%2.4.46``); apps read it
from the cloud and hand it to their XP2P client. Its structure is not public, and ivcloud's
P2P runs over WebRTC with signalling through the cloud, so ivcloud defines its own value —
still ≤ 64 characters (the thing model's limit) and starting with ``XP2P`` as apps expect::

    XP2P1:<peer-id>:<flags>          e.g.  XP2P1:q0V3b2Qp1kqjv8d2c0xq3A:clptuw

* ``XP2P1`` — format version 1.
* ``peer-id`` — 8..43 characters of base64url (``[A-Za-z0-9_-]``); the device's P2P agent
  draws 16 random bytes when it starts, so a new value means the agent restarted and an app
  holding an older value knows it is outdated.
* ``flags`` — what the device serves, as sorted, distinct letters (possibly none):
  ``c`` cloud-relayed commands (``xp2p_command``), ``l`` live video, ``p`` SD-card playback
  and download, ``t`` talk (``voice``), ``u`` ``user_define`` commands, ``w`` WebRTC
  sessions (``webrtc_offer``). Unknown letters are refused, so a typo cannot pass.
* Later versions may append ``:``-separated fields; version 1 parsers ignore them.

The cloud stores and relays whatever a device reports (a Tencent device's value included);
only ivcloud's own code parses it. Sans-IO: the agent passes the random bytes in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from ivcloud.protocol.errors import ProtocolError

__all__ = [
    "FLAGS",
    "MAX_INFO_CHARS",
    "PREFIX",
    "Xp2pInfo",
    "Xp2pInfoError",
    "format_xp2p_info",
    "new_peer_id",
    "parse_xp2p_info",
]

PREFIX: Final = "XP2P1"
MAX_INFO_CHARS: Final = 64  # the published thing models' limit for _sys_xp2p_info
#: Capability letters, in their canonical (sorted) order.
FLAGS: Final[dict[str, str]] = {
    "c": "cloud-relayed commands (xp2p_command)",
    "l": "live video",
    "p": "SD-card playback and download",
    "t": "talk audio (voice)",
    "u": "user_define commands",
    "w": "WebRTC sessions (webrtc_offer / webrtc_close)",
}
_PEER = re.compile(r"[A-Za-z0-9_-]{8,43}")


class Xp2pInfoError(ProtocolError):
    """Not an ivcloud ``_sys_xp2p_info`` value (e.g. a Tencent device's, or a typo)."""


@dataclass(frozen=True, slots=True)
class Xp2pInfo:
    peer_id: str
    flags: frozenset[str]

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def __str__(self) -> str:
        return format_xp2p_info(self.peer_id, self.flags)


def new_peer_id(entropy: bytes) -> str:
    """A peer id from random bytes (16 give 22 characters)."""
    if not 6 <= len(entropy) <= 32:
        raise ValueError("peer ids take 6..32 random bytes")
    return base64.urlsafe_b64encode(entropy).rstrip(b"=").decode("ascii")


def format_xp2p_info(peer_id: str, flags: Iterable[str]) -> str:
    """The value to report; ``ValueError`` for a bad peer id or unknown flag."""
    letters = set(flags)
    unknown = letters - FLAGS.keys()
    if unknown:
        raise ValueError(f"unknown xp2p info flags: {''.join(sorted(unknown))}")
    if _PEER.fullmatch(peer_id) is None:
        raise ValueError("a peer id is 8..43 base64url characters")
    return f"{PREFIX}:{peer_id}:{''.join(sorted(letters))}"


def parse_xp2p_info(text: str) -> Xp2pInfo:
    """Read an ivcloud value; :class:`Xp2pInfoError` (only) for anything else."""
    if not isinstance(text, str) or len(text) > MAX_INFO_CHARS:
        raise Xp2pInfoError(f"an xp2p info is a string of at most {MAX_INFO_CHARS} characters")
    fields = text.split(":")
    if len(fields) < 3 or fields[0] != PREFIX:
        raise Xp2pInfoError(f"not an ivcloud xp2p info (expected {PREFIX}:<peer-id>:<flags>)")
    peer, letters = fields[1], fields[2]
    if _PEER.fullmatch(peer) is None:
        raise Xp2pInfoError("the peer id must be 8..43 base64url characters")
    if any(c not in FLAGS for c in letters):
        raise Xp2pInfoError("unknown capability flag")
    if list(letters) != sorted(set(letters)):
        raise Xp2pInfoError("capability flags must be sorted and distinct")
    return Xp2pInfo(peer, frozenset(letters))
