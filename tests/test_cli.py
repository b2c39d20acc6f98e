"""The CLI's stable commands against a real server (the CLI runs in a worker thread so the
server keeps serving on the test's event loop)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from ivcloud.app import Ivcloud
from ivcloud.cli import app
from ivcloud.cli_sim import video_overrides
from ivcloud.device.av import VideoProfile
from ivcloud.device.simulators import check_video_overrides
from tests.models import SENSOR_MODEL
from tests.rawdevice import RawDevice

runner = CliRunner()


async def cli(server: Ivcloud, *args: str) -> Result:
    return await asyncio.to_thread(
        runner.invoke, app, [*args, "--data-dir", str(server.settings.data_dir)]
    )


async def cli_json(server: Ivcloud, *args: str) -> dict[str, object]:
    result = await cli(server, *args, "--json")
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


async def test_product_model_device_control_action(server: Ivcloud, tmp_path: Path) -> None:
    product = await cli_json(
        server, "product", "create", "--name", "Door", "--category", "lock", "--net", "ble"
    )
    pid = str(product["ProductId"])
    assert len(pid) == 10
    result = await cli(server, "thingmodel", "import", pid, "--standard", "lock-video")
    assert result.exit_code == 0, result.output
    assert "19 properties" in result.stdout
    device = await cli_json(server, "device", "create", pid, "door1")
    assert device["ProductId"] == pid
    assert device["DeviceName"] == "door1"
    secret = str(device["DeviceSecret"])
    info = await cli_json(server, "device", "get", f"{pid}/door1")
    assert info["Online"] == 0
    queued = await cli_json(server, "device", "control", f"{pid}/door1", '{"volume": 2}')
    assert queued["Delivered"] is False

    assert server.endpoints is not None
    ep = server.endpoints
    async with RawDevice(ep.mqtt_host, ep.mqtt_port, pid, "door1", secret) as dev:
        call = asyncio.create_task(
            cli_json(server, "device", "action", f"{pid}/door1", "unlock_remote", "{}")
        )
        action = await dev.down("action")
        assert action["actionId"] == "unlock_remote"
        await dev.up(
            "action",
            {
                "method": "action_reply",
                "clientToken": action["clientToken"],
                "code": 0,
                "status": "ok",
                "response": {"result": 1},
            },
        )
        answered = await call
        assert answered["Response"] == {"result": 1}
        await dev.request(
            "property",
            {"method": "report", "clientToken": "r", "params": {"battery_percentage": 77}},
        )
        info = await cli_json(server, "device", "get", f"{pid}/door1")
        assert info["Online"] == 1
        assert info["Properties"]["battery_percentage"]["Value"] == 77  # type: ignore[index]


async def test_thingmodel_import_from_file_and_export(server: Ivcloud, tmp_path: Path) -> None:
    pid = str(
        (await cli_json(server, "product", "create", "--name", "S", "--category", "watch"))[
            "ProductId"
        ]
    )
    path = tmp_path / "model.json"
    path.write_text(json.dumps(SENSOR_MODEL))
    result = await cli(server, "thingmodel", "import", pid, str(path))
    assert result.exit_code == 0, result.output
    exported = await cli(server, "thingmodel", "export", pid)
    doc = json.loads(exported.stdout)
    assert [p["id"] for p in doc["properties"]] == ["power", "temperature", "brightness", "label"]
    assert doc["profile"]["ProductId"] == pid


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("device", "get", "no-slash"), 2, "PRODUCT_ID/DEVICE_NAME"),
        (("device", "get", "AAAAAAAAAA/none"), 1, "ResourceNotFound"),
        (("device", "control", "AAAAAAAAAA/none", "{bad json"), 2, "not valid JSON"),
        (("product", "create", "--name", "x", "--category", "toaster"), 1, "InvalidParameterValue"),
    ],
)
async def test_errors_are_clear(
    server: Ivcloud, args: tuple[str, ...], code: int, message: str
) -> None:
    result = await cli(server, *args)
    assert result.exit_code == code
    assert message in result.output


async def test_invalid_model_file_is_refused(server: Ivcloud, tmp_path: Path) -> None:
    pid = str(
        (await cli_json(server, "product", "create", "--name", "S", "--category", "watch"))[
            "ProductId"
        ]
    )
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "properties": [
                    {"id": "x", "mode": "rw", "define": {"type": "int", "min": "5", "max": "1"}}
                ]
            }
        )
    )
    result = await cli(server, "thingmodel", "import", pid, str(path))
    assert result.exit_code == 1
    assert "invalid thing model" in result.output


async def test_wrong_admin_token_is_refused(
    server: Ivcloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVCLOUD_ADMIN_TOKEN", "wrong")
    result = await cli(server, "product", "list")
    assert result.exit_code == 1
    assert "AuthFailure" in result.output


# -- ivcloud sim: options checked before anything starts -------------------------------------

SIM = ("sim", "--product", "P", "--device", "D", "--secret", "c2VjcmV0")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("camera", "--width", "321"), "--width 321: width and height must be even"),
        (("lock-video", "--width", "320", "--height", "239"), "--height 239: width and height"),
        (("camera", "--width", "100"), "--width 100: resolution 100x360 outside"),
        (("camera", "--height", "4000"), "--height 4000: resolution"),
        (("camera", "--fps", "0"), "--fps 0: fps 0 outside 1..60"),
        (("lock-video", "--fps", "61"), "--fps 61: fps 61 outside 1..60"),
        (("camera", "--gop", "0.5"), "--gop 0.5: gop_seconds 0.5 outside 1..2"),
        (("camera", "--gop", "2.5"), "--gop 2.5: gop_seconds 2.5 outside 1..2"),
        (("camera", "--data-dir", "x", "--retention-hours", "0"), "must be a positive number"),
        (("camera", "--record", "--retention-hours", "inf"), "must be a positive number"),
        (("camera", "--retention-hours", "5"), "needs an SD card: give --data-dir or --record"),
        (
            ("lock-image", "--width", "320", "--record"),
            "lock-image has no camera: --width, --record",
        ),
        (("lock-image", "--no-record"), "lock-image has no camera: --no-record"),
        (("lock-image", "--data-dir", "x"), "lock-image has no camera: --data-dir"),
        (("toaster",), "kind must be camera, lock-image or lock-video"),
    ],
)
def test_sim_refuses_options_the_device_cannot_take(
    args: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a wrongly accepted --data-dir x would land here
    result = runner.invoke(app, [*SIM, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []  # refused before any SD card was made


@given(
    width=st.none() | st.integers(-2, 5000),
    height=st.none() | st.integers(-2, 3000),
    fps=st.none() | st.integers(-1, 100),
    gop=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)
def test_sim_video_options_agree_with_the_quality_profiles(
    width: int | None, height: int | None, fps: int | None, gop: float | None
) -> None:
    """Accepted options are exactly the overrides every quality profile takes; anything else
    is exit code 2 (never a traceback from the encoder later)."""
    given_values = {"width": width, "height": height, "fps": fps, "gop_seconds": gop}
    given_fields = {k: v for k, v in given_values.items() if v is not None}
    try:
        overrides = video_overrides(given_values)
    except typer.Exit as exc:
        assert exc.exit_code == 2
        with pytest.raises(ValueError):
            check_video_overrides(given_fields)
    else:
        assert overrides == given_fields
        for quality in ("standard", "high", "super"):
            profile = VideoProfile.named(quality, **overrides)
            assert all(getattr(profile, k) == v for k, v in overrides.items())
