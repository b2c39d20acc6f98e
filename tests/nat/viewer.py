"""A viewer process for the NAT tests, run inside the viewer's network namespace::

    python tests/nat/viewer.py --api http://10.77.0.1:8080 --token T --device P/cam01 \\
        --mode peer|race [--frames 5] [--timeout 10] [--deadline 40]

It is a separate process (not a thread of the test) because aiortc/aioice gather host
candidates from the interfaces of the namespace the process is in, and every socket it opens
must go through the viewer's NAT.

* ``peer``: the App API's P2P session by hand — ``IvcloudDescribeP2PParams`` (ICE servers),
  an :class:`~ivcloud.client.p2p.AppPeer` offer relayed by ``IvcloudP2PConnect``, wait for
  ICE + DTLS, then ``--frames`` pictures from the video track (aiortc decodes the camera's
  H.264 with PyAV); ``path`` is :meth:`AppPeer.selected_path` ("direct" | "turn").
* ``race``: what an app does — :class:`~ivcloud.client.xp2p.Xp2pClient` races P2P against
  the hub; PyAV (FFmpeg) opens the client's local proxy URL and decodes ``--frames``
  pictures; ``path`` is ``chosen_path`` ("direct" | "turn" | "hub").

Prints exactly one JSON line on stdout: ``{"ok": true, "mode", "path", "frames",
"width", "height", "connect_s", "first_frame_s", "total_s"}``, or ``{"ok": false, "error",
"total_s"}`` with the same message on stderr and exit status 1. ``--deadline`` bounds the
whole run (exit 1 with a "gave up" error): it never hangs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import av

from ivcloud.client.app_sdk import AppClient
from ivcloud.client.p2p import AppPeer
from ivcloud.client.xp2p import Xp2pClient

LIVE = "ipc.flv?action=live&channel=0&quality=standard"


class ViewerFailed(Exception):
    """A step failed; the message says which and why."""


def candidates(sdp: str) -> list[str]:
    """``typ address:port`` of each ICE candidate in an SDP (for the report)."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) >= 8:
                found.append(f"{parts[7]} {parts[4]}:{parts[5]}")
    return found


async def _peer(app: AppClient, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    device = {"DeviceId": args.device}
    params = await app.request_api("IvcloudDescribeP2PParams", device)
    peer = AppPeer(params["IceServers"], audio=False, request_timeout=args.timeout)
    session: str | None = None
    try:
        offer = await peer.offer()
        data = await app.request_api("IvcloudP2PConnect", {**device, "Offer": offer})
        session = str(data["SessionId"])
        ice = f"viewer {candidates(offer)}, camera {candidates(data['Answer'])}"
        await peer.answer(data["Answer"])
        try:
            await peer.wait_connected(args.timeout)
        except Exception as exc:
            raise ViewerFailed(
                f"P2P did not connect: {type(exc).__name__}: {exc}; candidates: {ice}"
            ) from None
        connect_s = time.monotonic() - t0
        track = peer.video_track
        if track is None:
            raise ViewerFailed("the session has no video track")
        sizes: list[tuple[int, int]] = []
        first: float | None = None
        for _ in range(args.frames):
            frame = await asyncio.wait_for(track.recv(), args.timeout)
            if not isinstance(frame, av.VideoFrame):
                raise ViewerFailed(f"the video track gave {type(frame).__name__}")
            first = first if first is not None else time.monotonic() - t0
            sizes.append((frame.width, frame.height))
        return {
            "path": peer.selected_path(),
            "candidates": ice,
            "frames": len(sizes),
            "width": sizes[-1][0],
            "height": sizes[-1][1],
            "connect_s": round(connect_s, 3),
            "first_frame_s": round(first or 0.0, 3),
        }
    finally:
        await peer.close()
        if session is not None:
            try:
                await app.request_api("IvcloudP2PClose", {**device, "SessionId": session})
            except Exception as exc:  # the device may have closed it already
                print(f"IvcloudP2PClose: {exc}", file=sys.stderr)


def _decode(url: str, frames: int, timeout: float) -> list[tuple[int, int]]:
    """What a player does: FFmpeg opens the proxy URL and decodes ``frames`` pictures."""
    sizes: list[tuple[int, int]] = []
    options = {"analyzeduration": "500000"}
    with av.open(url, format="flv", timeout=timeout, options=options) as container:
        for frame in container.decode(video=0):
            sizes.append((frame.width, frame.height))
            if len(sizes) >= frames:
                break
    return sizes


async def _race(app: AppClient, args: argparse.Namespace, t0: float) -> dict[str, Any]:
    data = await app.request_api("AppGetDeviceData", {"DeviceId": args.device})
    info = str(json.loads(data["Data"]).get("_sys_xp2p_info", {}).get("Value", ""))
    async with Xp2pClient(app, timeout=args.timeout) as client:
        await client.start_service(args.device, info)
        url = client.delegate_http_flv(args.device) + LIVE
        try:
            sizes = await asyncio.to_thread(_decode, url, args.frames, args.timeout)
        except Exception as exc:
            raise ViewerFailed(
                f"no live video by P2P or the hub: {type(exc).__name__}: {exc} "
                f"(p2p state {client.p2p_state(args.device).name}, "
                f"path {client.chosen_path(args.device)})"
            ) from None
        if not sizes:
            raise ViewerFailed("the live stream ended before a picture was decoded")
        first = time.monotonic() - t0
        return {
            "path": client.chosen_path(args.device),
            "frames": len(sizes),
            "width": sizes[-1][0],
            "height": sizes[-1][1],
            "connect_s": None,
            "first_frame_s": round(first, 3),
        }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    async with AppClient(args.api, access_token=args.token, timeout_s=args.timeout) as app:
        run = _peer if args.mode == "peer" else _race
        result = await run(app, args, t0)
    return {"ok": True, "mode": args.mode, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="ivcloud base URL")
    parser.add_argument("--token", required=True, help="the app user's AccessToken")
    parser.add_argument("--device", required=True, help="DeviceId (ProductId/DeviceName)")
    parser.add_argument("--mode", choices=("peer", "race"), default="peer")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0, help="per step, seconds")
    parser.add_argument("--deadline", type=float, default=40.0, help="whole run, seconds")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        doc = asyncio.run(asyncio.wait_for(_main(args), args.deadline))
    except TimeoutError:
        doc = {"ok": False, "error": f"gave up after the {args.deadline} s deadline"}
    except Exception as exc:
        text = str(exc) if isinstance(exc, ViewerFailed) else f"{type(exc).__name__}: {exc}"
        doc = {"ok": False, "error": text}
    doc["total_s"] = round(time.monotonic() - t0, 3)
    print(json.dumps(doc), flush=True)
    if not doc["ok"]:
        print(f"viewer failed: {doc['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
