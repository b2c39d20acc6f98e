"""The XP2P client's errors: Tencent's XP2P app-SDK codes −1000…−1020, each failure logged
with the seed manual's log line for it.

Apps ported from the official SDK branch on the number (``exc.code``) and support staff
grep logs for the seed's lines, so every failure is an exception whose ``message`` is that
line (``p2p service is running with id:cam01, please stop it first``), passed through
:func:`logged` on its way out, which logs it as a structured warning carrying
``xp2p_code`` and ``xp2p_name``. Codes, names and
line templates come from :mod:`ivcloud.protocol.xp2p_errors`; nothing is re-typed here.

Subclasses group the codes by what a caller does about them (fix the call, retry, fall back
to another path); the proxy turns any of them into an HTTP status (``http_status``) with
the code in the ``X-XP2P-Error`` header. Messages never carry tokens or signed URLs.

Situations without a line in the seed (a timeout, a refused request) log a plain message
in the same way, so every failure leaves one warning with its code.
"""

from __future__ import annotations

from typing import Any, TypeVar

import structlog

from ivcloud.protocol import xp2p_errors as codes

__all__ = [
    "Xp2pCloudError",
    "Xp2pError",
    "Xp2pInfoError",
    "Xp2pP2PUnavailable",
    "Xp2pParamError",
    "Xp2pProxyError",
    "Xp2pRequestFailed",
    "Xp2pServiceStateError",
    "Xp2pTimeout",
    "Xp2pVoiceError",
    "logged",
    "seed_line",
]

log = structlog.get_logger("ivcloud.client.xp2p")

E = TypeVar("E", bound="Xp2pError")


class Xp2pError(Exception):
    """Base: ``code`` is the XP2P code (−1000…−1020), ``name`` its seed name
    (``XP2P_ERR_P2P_ININED``), ``message`` the logged text. ``http_status`` is what the
    local proxy answers a player with when this error ends its request."""

    http_status = 502

    def __init__(self, code: int, message: str, *, http_status: int | None = None) -> None:
        row = codes.lookup(code)
        if row is None or code == codes.XP2P_ERR_NONE:
            raise ValueError(f"{code} is not an XP2P error code")
        super().__init__(f"{row.name} ({code}): {message}")
        self.code = code
        self.name = row.name
        self.message = message
        if http_status is not None:
            self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        """The body the proxy sends (and the CLI prints)."""
        return {"code": self.code, "name": self.name, "message": self.message}


class Xp2pParamError(Xp2pError):
    """−1000: an argument is empty or not acceptable (fix the call)."""

    http_status = 400


class Xp2pServiceStateError(Xp2pError):
    """−1011 already running for this id, −1012 not running (start it first), −1019 no
    service to stop."""

    http_status = 404


class Xp2pInfoError(Xp2pError):
    """The device's XP2P info could not be had or does not fit: −1001 the cloud request
    failed (also the App API refusing it, e.g. ``NoPermission``: ``api_code``), −1014 wrong
    format, −1002 not the device's current info (outdated)."""

    http_status = 403

    def __init__(self, code: int, message: str, *, api_code: str | None = None) -> None:
        super().__init__(code, message)
        self.api_code = api_code


class Xp2pCloudError(Xp2pError):
    """A cloud call other than the XP2P info failed: ``api_code`` is the App API's error
    code when it answered with one (−1006), −1017 an empty answer, −1018 unparsable."""

    def __init__(self, code: int, message: str, *, api_code: str | None = None) -> None:
        super().__init__(code, message)
        self.api_code = api_code


class Xp2pTimeout(Xp2pError):
    """−1005: the device, the cloud or the hub did not answer in time."""

    http_status = 504


class Xp2pRequestFailed(Xp2pError):
    """−1006: the device refused or failed a request (``status``: its XP2P status — 404 bad
    request, 405 too many viewers, 406 unsupported, 1 refused) or the hub refused a stream
    (``status``: its HTTP status)."""

    def __init__(self, message: str, *, status: int, http_status: int = 502) -> None:
        super().__init__(codes.XP2P_ERR_REQUEST_FAIL, message, http_status=http_status)
        self.status = status


class Xp2pP2PUnavailable(Xp2pError):
    """−1010: the request needs the P2P tunnel (playback, download, talk) and it is not up;
    ``state`` says why (0 detecting, 2 failed or closed, 3 not enabled for this service)."""

    http_status = 503

    def __init__(self, message: str, *, state: int) -> None:
        super().__init__(codes.XP2P_ERR_DETECT_NOTREADY, message)
        self.state = state


class Xp2pVoiceError(Xp2pError):
    """Talk: −1003 no such voice stream / already stopped, −1008 the tunnel failed while
    starting it, −1009 the device refused it (``status``)."""

    def __init__(self, code: int, message: str, *, status: int | None = None) -> None:
        super().__init__(code, message)
        self.status = status


class Xp2pProxyError(Xp2pError):
    """−1002: the local proxy could not listen."""


def logged(exc: E, *, device_id: str = "") -> E:
    """Log ``exc.message`` (the seed's line, e.g. ``p2p service is running with id:cam01,
    please stop it first``) at warning level with the code, its name and the device id,
    and return ``exc`` for the caller to raise."""
    log.warning(exc.message, xp2p_code=exc.code, xp2p_name=exc.name, device_id=device_id)
    return exc


def seed_line(code: int, index: int = 0, **fields: str) -> str:
    """The seed's log line ``index`` of ``code`` with its fields filled."""
    return codes.log_line(code, index, **fields)
