"""The cloud calls behind the XP2P client, through :class:`~ivcloud.client.app_sdk.AppClient`'s
tokenapi (ivcloud extensions, docs/app-api.md):

==============================  ===============================================================
``IvcloudDescribeP2PParams``    ICE servers for this user, the device's ``Xp2pInfo``, online
``IvcloudP2PConnect``           the WebRTC offer → session id and the device's answer
``IvcloudP2PClose``             end that session on the device
``IvcloudXp2pCommand``          a command relayed by the cloud (no tunnel needed)
``IvcloudDescribeStreamUrls``   signed hub URLs (live only; the 1-to-N path)
==============================  ===============================================================

Every failure becomes an :class:`~ivcloud.client.xp2p_errors.Xp2pError` here, once, with the
seed's log line where it has one: a refused or failed XP2P-info request is −1001 (the App
API's code, e.g. ``InvalidParameterValue.NoPermission`` for another user's device, is kept
in ``api_code``), anything else the cloud refuses is −1006, no answer in time −1005.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ivcloud.client.app_sdk import AppClient
from ivcloud.client.xp2p_errors import (
    Xp2pCloudError,
    Xp2pError,
    Xp2pInfoError,
    Xp2pTimeout,
    logged,
    seed_line,
)
from ivcloud.protocol import xp2p_errors as codes
from ivcloud.protocol.appapi import AppApiError

__all__ = ["HUB_URL_MARGIN_S", "P2PParams", "Xp2pCloud"]

#: A cached hub URL is re-minted when less than this remains before it expires (the expiry
#: only limits opening a URL, so this is about the next open, not running streams).
HUB_URL_MARGIN_S = 60
_TIMEOUT_CODES = ("FailedOperation.DeviceTimeout",)


@dataclass(frozen=True, slots=True)
class P2PParams:
    """``IvcloudDescribeP2PParams``: RTCIceServer dicts, the device's current
    ``_sys_xp2p_info`` and whether it is online."""

    ice_servers: tuple[Mapping[str, Any], ...]
    xp2p_info: str
    online: bool


class Xp2pCloud:
    """One user's XP2P-related App API calls (``app`` is theirs; not closed here)."""

    def __init__(self, app: AppClient) -> None:
        self.app = app
        self._hub_urls: dict[tuple[str, int, str], tuple[str, int]] = {}

    async def _call(
        self, device_id: str, action: str, params: dict[str, Any], *, log_failure: bool = True
    ) -> dict[str, Any]:
        """``request_api`` with transport and API errors turned into Xp2pErrors."""
        try:
            return await self.app.request_api(action, {"DeviceId": device_id, **params})
        except (AppApiError, httpx.HTTPError, ValueError) as exc:  # ValueError: not JSON
            error = _translate(action, exc)
        if log_failure:
            logged(error, device_id=device_id)
        raise error

    async def p2p_params(self, device_id: str) -> P2PParams:
        """The XP2P info request of ``startService``: −1001 with the seed's lines when the
        cloud refuses it, answers nothing, or answers without the device's info."""
        try:
            data = await self._call(device_id, "IvcloudDescribeP2PParams", {}, log_failure=False)
        except Xp2pError as exc:
            api_code = getattr(exc, "api_code", None)
            reason = api_code or exc.name
            raise logged(
                Xp2pInfoError(
                    codes.XP2P_ERR_GET_XP2PINFO,
                    f"request xp2p_info failed, errmsg:{reason}",
                    api_code=api_code,
                ),
                device_id=device_id,
            ) from None
        if not {k: v for k, v in data.items() if k != "RequestId"}:
            raise logged(
                Xp2pInfoError(codes.XP2P_ERR_GET_XP2PINFO, seed_line(codes.XP2P_ERR_GET_XP2PINFO)),
                device_id=device_id,
            )
        info, servers = data.get("Xp2pInfo"), data.get("IceServers", [])
        if not isinstance(info, str) or not info or not isinstance(servers, list):
            raise logged(
                Xp2pInfoError(
                    codes.XP2P_ERR_GET_XP2PINFO, seed_line(codes.XP2P_ERR_GET_XP2PINFO, 1)
                ),
                device_id=device_id,
            )
        ice = tuple(s for s in servers if isinstance(s, dict) and "urls" in s)
        return P2PParams(ice, info, bool(data.get("Online", False)))

    async def connect(self, device_id: str, offer: str) -> tuple[str, str]:
        """Send the offer to the device through the cloud; (session id, answer SDP)."""
        data = await self._call(device_id, "IvcloudP2PConnect", {"Offer": offer})
        session, answer = data.get("SessionId"), data.get("Answer")
        if not isinstance(session, str) or not isinstance(answer, str) or not answer:
            raise logged(
                Xp2pCloudError(codes.XP2P_ERR_JSON_PARSE, "IvcloudP2PConnect: no SessionId/Answer"),
                device_id=device_id,
            )
        return session, answer

    async def close(self, device_id: str, session_id: str) -> None:
        """Tell the device the session is over (its peer also notices the tunnel closing;
        this makes it prompt and frees its viewer slot). Failures are logged, not raised."""
        with contextlib.suppress(Xp2pError):  # logged; the device's peer ends by itself too
            await self._call(device_id, "IvcloudP2PClose", {"SessionId": session_id})

    async def command(self, device_id: str, text: str) -> str:
        """A command relayed by the cloud over the device's MQTT link; its reply text."""
        data = await self._call(device_id, "IvcloudXp2pCommand", {"Command": text})
        reply = data.get("Reply")
        if not isinstance(reply, str):
            raise logged(
                Xp2pCloudError(codes.XP2P_ERR_CLOUD_EMPTY, "IvcloudXp2pCommand: no Reply"),
                device_id=device_id,
            )
        return reply

    async def hub_url(self, device_id: str, channel: int, quality: str) -> str:
        """The signed HTTP-FLV hub URL for this user (cached until close to expiry)."""
        key = (device_id, channel, quality)
        cached = self._hub_urls.get(key)
        if cached is not None and cached[1] - time.time() > HUB_URL_MARGIN_S:
            return cached[0]
        data = await self._call(
            device_id, "IvcloudDescribeStreamUrls", {"Channel": channel, "Quality": quality}
        )
        url, expire = data.get("FlvUrl"), data.get("ExpireTime")
        if not isinstance(url, str) or not isinstance(expire, int):
            raise logged(
                Xp2pCloudError(codes.XP2P_ERR_JSON_PARSE, "IvcloudDescribeStreamUrls: no FlvUrl"),
                device_id=device_id,
            )
        self._hub_urls[key] = (url, expire)
        return url

    def forget(self, device_id: str) -> None:
        """Drop cached hub URLs of a device (its service stopped)."""
        for key in [k for k in self._hub_urls if k[0] == device_id]:
            del self._hub_urls[key]


def _translate(action: str, exc: Exception) -> Xp2pError:
    if isinstance(exc, AppApiError):
        if exc.code in _TIMEOUT_CODES:
            return Xp2pTimeout(codes.XP2P_ERR_TIMEOUT, f"{action}: {exc.code}: {exc.message}")
        return Xp2pCloudError(
            codes.XP2P_ERR_REQUEST_FAIL,
            f"{action} failed, errmsg:{exc.code}: {exc.message}",
            api_code=exc.code,
        )
    if isinstance(exc, httpx.TimeoutException):
        return Xp2pTimeout(codes.XP2P_ERR_TIMEOUT, f"{action}: no answer from the cloud")
    return Xp2pCloudError(
        codes.XP2P_ERR_REQUEST_FAIL, f"{action} failed, errmsg:{type(exc).__name__}"
    )
