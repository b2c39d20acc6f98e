"""Device side: an asyncio device SDK mirroring the IoT Video device API (``iv_sys_*``,
``iv_dm_*``, ``iv_ad_*``, ``iv_ota_*``) over the Tencent-compatible MQTT protocol, and
simulators for a camera, a picture-stream lock and a video-stream lock.

See ``docs/device-sdk.md`` for the mapping to the C API."""

from ivcloud.device.ota import FirmwareUpdate, OtaAgent
from ivcloud.device.sdk import IvDevice, NotInitialised
from ivcloud.device.simulators import (
    SIMULATORS,
    CameraSimulator,
    LockImageSimulator,
    LockVideoSimulator,
    Simulator,
    SimulatorKind,
    run_simulator,
)
from ivcloud.device.types import (
    ERR_FAIL,
    ERR_TIMEOUT,
    OFFLINE_GIVE_UP,
    OFFLINE_RECONNECTING,
    OK,
    BrokerAddress,
    DeviceInfo,
)

__all__ = [
    "ERR_FAIL",
    "ERR_TIMEOUT",
    "OFFLINE_GIVE_UP",
    "OFFLINE_RECONNECTING",
    "OK",
    "SIMULATORS",
    "BrokerAddress",
    "CameraSimulator",
    "DeviceInfo",
    "FirmwareUpdate",
    "IvDevice",
    "LockImageSimulator",
    "LockVideoSimulator",
    "NotInitialised",
    "OtaAgent",
    "Simulator",
    "SimulatorKind",
    "run_simulator",
]
