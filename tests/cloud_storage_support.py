"""Helpers for the cloud-storage tests: real H.264/AAC clips muxed to fMP4 at chosen
wall-clock times, signed device uploads, and row/object counts for "nothing stored"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.device.av import AudioEncoder, AudioProfile, EncodedVideo, VideoEncoder, VideoProfile
from ivcloud.device.snapshot import keyframe_to_jpeg
from ivcloud.protocol.av import (
    Fmp4Muxer,
    annexb_to_avcc,
    build_avc_decoder_config,
    nal_type,
    split_annexb,
)
from ivcloud.protocol.device_http_auth import authorization_header
from ivcloud.store.schema_cloud import CsEvent, CsInit, CsSegment
from tests.helpers import Provisioned

SMALL = VideoProfile(320, 240, fps=10, gop_seconds=1.0, bitrate=150_000)


@dataclass(frozen=True)
class Segment:
    start_ms: int
    end_ms: int
    data: bytes


@dataclass(frozen=True)
class Clip:
    init: bytes
    segments: list[Segment]
    keyframe: EncodedVideo

    @property
    def init_sha(self) -> str:
        return hashlib.sha256(self.init).hexdigest()

    def jpeg(self) -> bytes:
        return keyframe_to_jpeg(self.keyframe.data)


def make_clip(start_ms: int, gops: int = 2, *, audio: bool = True, fps: int = 10) -> Clip:
    """``gops`` one-second GOP segments starting at ``start_ms`` (the capture times are
    burnt into the pictures), with AAC audio riding along."""
    profile = VideoProfile(320, 240, fps=fps, gop_seconds=1.0, bitrate=150_000)
    venc = VideoEncoder(profile)
    aenc = AudioEncoder(AudioProfile("aac")) if audio else None
    try:
        frames = [
            venc.encode(start_ms + i * 1000 // fps, i * 1000 // fps) for i in range(gops * fps + 1)
        ]
        nals = split_annexb(frames[0].data)
        avc = build_avc_decoder_config(
            [n for n in nals if nal_type(n) == 7], [n for n in nals if nal_type(n) == 8]
        )
        muxer = Fmp4Muxer(
            avc_config=avc, audio_config=aenc.config if aenc else None, fragment="gop"
        )
        segments: list[Segment] = []
        seg_start = start_ms
        audio_ms = float(start_ms)
        for frame in frames:
            while aenc is not None and audio_ms < frame.capture_ms:
                for packet in aenc.encode(audio_ms):
                    muxer.add_audio(packet.data, packet.capture_ms)
                audio_ms += 1024 * 1000 / 16000
            out = muxer.add_video(
                annexb_to_avcc(frame.data), frame.capture_ms, frame.capture_ms, frame.keyframe
            )
            if out:
                segments.append(Segment(seg_start, frame.capture_ms, out))
                seg_start = frame.capture_ms
        return Clip(muxer.init_segment(), segments[:gops], frames[0])
    finally:
        venc.close()
        if aenc is not None:
            aenc.close()


def signed_headers(
    dev: Provisioned, method: str, target: str, body: bytes, expires: int
) -> dict[str, str]:
    auth = authorization_header(
        dev.secret, dev.product_id, dev.device_name, method, target, body, expires
    )
    return {"Authorization": auth}


async def device_request(
    http: httpx.AsyncClient,
    dev: Provisioned,
    method: str,
    path: str,
    query: dict[str, object] | None = None,
    body: bytes = b"",
    *,
    expires: int,
) -> httpx.Response:
    """One signed upload (``path`` under /api/device/v1/cs)."""
    target = f"/api/device/v1/cs/{path}" + (f"?{urlencode(query)}" if query else "")
    return await http.request(
        method, target, content=body, headers=signed_headers(dev, method, target, body, expires)
    )


async def counts(sessions: async_sessionmaker[AsyncSession], objects_dir: Path) -> tuple[int, ...]:
    """(init rows, segment rows, event rows, events with a picture, object files)."""
    async with sessions() as s:
        inits = await s.scalar(select(func.count()).select_from(CsInit))
        segs = await s.scalar(select(func.count()).select_from(CsSegment))
        events = await s.scalar(select(func.count()).select_from(CsEvent))
        thumbs = await s.scalar(
            select(func.count()).select_from(CsEvent).where(CsEvent.thumbnail_key.is_not(None))
        )
    return (inits or 0, segs or 0, events or 0, thumbs or 0, object_files(objects_dir))


def object_files(root: Path) -> int:
    """Files in the object store (an interrupted write leaves no ``.upload-`` temp file)."""
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0
