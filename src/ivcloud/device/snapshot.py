"""An event's picture: decode one H.264 keyframe and encode it as a JPEG, with PyAV only.

``iv_cs_event_capture_picture_cb`` asks the device for a JPEG when an event starts. A real
camera grabs one from its ISP; a device that only has its encoded stream (a simulator, or
an integrator without a still-capture path) can make one from the latest keyframe, which
decodes on its own. PyAV's bundled FFmpeg has the MJPEG encoder, so no Pillow is needed.

Blocking (a few milliseconds at 640x360): call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from fractions import Fraction

import av

__all__ = ["SnapshotError", "keyframe_to_jpeg"]


class SnapshotError(ValueError):
    """The access unit did not decode to a picture."""


def keyframe_to_jpeg(annexb_keyframe: bytes, *, quality: int = 5) -> bytes:
    """JPEG of the picture in ``annexb_keyframe`` (an IDR access unit with SPS/PPS).
    ``quality`` is MJPEG's qscale: 2 (best) … 31 (smallest)."""
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = list(decoder.decode(av.Packet(annexb_keyframe)))
        frames += decoder.decode(None)
    except av.FFmpegError as exc:
        raise SnapshotError(f"keyframe does not decode: {exc}") from None
    if not frames:
        raise SnapshotError("keyframe decoded to no picture")
    picture = frames[0]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = picture.width, picture.height
    encoder.pix_fmt = "yuvj420p"  # full-range 4:2:0, what JPEG decoders expect
    encoder.time_base = Fraction(1, 1)
    encoder.qmin = encoder.qmax = max(2, min(31, quality))
    frame = picture.reformat(format="yuvj420p")
    frame.pts = 0
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    jpeg = b"".join(bytes(p) for p in packets)
    if not jpeg.startswith(b"\xff\xd8"):
        raise SnapshotError("encoder produced no JPEG")
    return jpeg
