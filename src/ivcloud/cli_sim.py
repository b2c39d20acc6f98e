"""``ivcloud sim``: one simulated camera, picture-stream lock or video-stream lock, with the
video options the issue asks for (resolution, fps, a GOP of 1-2 s) and an optional SD card.

Everything is checked before the device starts: a value the quality profiles refuse, or a
video option given to the picture lock (it has no camera), is a clear error with exit code
2 rather than a traceback later. ``cli.py`` registers the command."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ivcloud.cli_common import err

__all__ = ["sim", "video_overrides"]

_VIDEO_OPTIONS = (
    ("--width", "width"),
    ("--height", "height"),
    ("--fps", "fps"),
    ("--gop", "gop_seconds"),
)


def _sim_fail(message: str) -> NoReturn:
    err.print(f"[red]error[/red] {message}")
    raise typer.Exit(2) from None


def video_overrides(values: dict[str, float | None]) -> dict[str, Any]:
    """The ``video_overrides`` for the options given, checked one option at a time against
    every quality profile, so the error names the option at fault (exit code 2)."""
    from ivcloud.device.simulators import check_video_overrides

    overrides: dict[str, Any] = {}
    for option, field in _VIDEO_OPTIONS:
        value = values[field]
        if value is None:
            continue
        overrides[field] = value
        try:
            check_video_overrides(overrides)
        except ValueError as exc:
            _sim_fail(f"{option} {value}: {exc}")
    return overrides


def sim(
    kind: Annotated[str, typer.Argument(help="camera | lock-image | lock-video")],
    product: Annotated[str, typer.Option(help="ProductId.")],
    device: Annotated[str, typer.Option(help="DeviceName.")],
    secret: Annotated[str, typer.Option(help="DeviceSecret (base64).")],
    host: Annotated[str, typer.Option(help="MQTT host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT port.")] = 1883,
    qr: Annotated[str | None, typer.Option(help="Provisioning QR string.")] = None,
    width: Annotated[
        int | None, typer.Option(help="Video width, even, 160-4096 (all qualities).")
    ] = None,
    height: Annotated[
        int | None, typer.Option(help="Video height, even, 120-2304 (all qualities).")
    ] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second, 1-60 (default 15).")] = None,
    gop: Annotated[
        float | None, typer.Option(help="Seconds between keyframes, 1-2 (default 1).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where the SD card lives (DATA_DIR/sdcard/ch0). Default: none, no SD card.",
        ),
    ] = None,
    record: Annotated[
        bool | None,
        typer.Option(
            "--record/--no-record",
            help="Record continuously onto the SD card (default off; without --data-dir into "
            "a temporary card removed at exit). ~14 % of a core at 640x360@15.",
        ),
    ] = None,
    retention_hours: Annotated[
        float | None, typer.Option(help="Hours of recordings the SD card keeps (default 2).")
    ] = None,
) -> None:
    """Run one simulated device until interrupted (SIGINT/SIGTERM stop it cleanly).

    The video options (camera, lock-video) set the live stream: the default is 640x360 at
    15 fps ("standard"; "high" and "super" are larger), any of --width/--height/--fps/--gop
    applies to every quality."""
    from ivcloud.device.simulators import SIMULATORS, VIDEO_KINDS
    from ivcloud.runner import run_sim

    if kind not in SIMULATORS:
        _sim_fail("kind must be camera, lock-image or lock-video")
    video_given = {
        "--width": width,
        "--height": height,
        "--fps": fps,
        "--gop": gop,
        "--data-dir": data_dir,
        "--record" if record else "--no-record": record,
        "--retention-hours": retention_hours,
    }
    if kind not in VIDEO_KINDS:
        given = [name for name, value in video_given.items() if value is not None]
        if given:
            _sim_fail(
                f"a {kind} has no camera: {', '.join(given)} only apply to camera and lock-video"
            )
    overrides = video_overrides({"width": width, "height": height, "fps": fps, "gop_seconds": gop})
    if retention_hours is not None:
        if not (math.isfinite(retention_hours) and retention_hours > 0):
            _sim_fail(f"--retention-hours {retention_hours}: must be a positive number of hours")
        if data_dir is None and not record:
            _sim_fail("--retention-hours needs an SD card: give --data-dir or --record")
    # Every video option is unset for a kind without a camera (refused above), which is
    # what run_simulator asks of it.
    asyncio.run(
        run_sim(
            kind,
            host=host,
            port=port,
            product_id=product,
            device_name=device,
            secret=secret,
            qr=qr,
            video_overrides=overrides,
            data_dir=data_dir,
            record=bool(record),
            retention_hours=retention_hours,
        )
    )
