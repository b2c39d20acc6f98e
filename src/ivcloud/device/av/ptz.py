"""The simulated camera's answers to ``user_define`` commands: a pan/tilt head and the
LianLian mini-program's JSON topics (spec §7.7; QDOC 腾讯连连小程序交互信令说明).

``user_define`` is free-form on the wire — the device decides what a command means and what
it answers — so this is the simulator's behaviour, written as an ``on_user_command``
callback a real camera would replace with its own:

* plain commands ``ptz_left|right|up|down`` move the head one step and answer (ivcloud's
  choice; Tencent leaves it to the device)
  ``{"result":"0","apex":"no","current_x":45,"current_y":20,"min_x":0,…}``;
  any other plain command answers ``{"result":"-1","msg":"unknown command"}``.
* LianLian JSON ``{"topic":…,"message_id":…,"data":{…}}`` is answered
  ``{"confirmation_topic":<topic>,"result":"0",…,"message_id":…}`` with the topic's fields:
  ``ptz`` (``ptz_up_press`` … one step; ``ptz_release_pre`` stops) → ``apex``,
  ``current_x/y``, ``min/max_x/y``; ``get_status`` → ``status``, ``user_num``,
  ``signal_strength``; ``version`` → ``info``; ``intercom`` → ``status`` using/unused;
  ``set_status`` / ``Mirror_flip`` update the state; ``upgrade``, ``sd_format``,
  ``bind_status`` are acknowledged. Unknown topics → ``"result":"-1"``.

Axes: x grows to the right (pan), y grows upwards (tilt); ``apex`` is ``"yes"`` when the
last move hit a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivcloud.protocol.jsontext import dumps_safe
from ivcloud.protocol.xp2p import BadRequest, LianLianCommand, parse_lianlian
from ivcloud.protocol.xp2p_replies import lianlian_reply

__all__ = ["DeviceStatus", "PtzHead", "SimulatedCommands"]

_MOVES = {
    "ptz_left": (-1, 0),
    "ptz_right": (1, 0),
    "ptz_up": (0, 1),
    "ptz_down": (0, -1),
    "ptz_left_press": (-1, 0),
    "ptz_right_press": (1, 0),
    "ptz_up_press": (0, 1),
    "ptz_down_press": (0, -1),
}


@dataclass
class PtzHead:
    """A pan/tilt position within limits; each move is ``step`` units."""

    x: int = 50
    y: int = 20
    min_x: int = 0
    max_x: int = 100
    min_y: int = 0
    max_y: int = 40
    step: int = 5
    apex: bool = False

    def move(self, dx: int, dy: int) -> None:
        nx = min(max(self.x + dx * self.step, self.min_x), self.max_x)
        ny = min(max(self.y + dy * self.step, self.min_y), self.max_y)
        wanted_x, wanted_y = self.x + dx * self.step, self.y + dy * self.step
        self.apex = (nx, ny) != (wanted_x, wanted_y)
        self.x, self.y = nx, ny

    def fields(self) -> dict[str, Any]:
        return {
            "apex": "yes" if self.apex else "no",
            "current_x": self.x,
            "current_y": self.y,
            "max_x": self.max_x,
            "max_y": self.max_y,
            "min_x": self.min_x,
            "min_y": self.min_y,
        }


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What ``get_status`` / ``intercom`` report: apps connected, whether anyone talks."""

    user_num: int = 0
    talking: bool = False


class SimulatedCommands:
    """``on_user_command(visitor, channel, cmd) -> reply`` of the simulated camera.
    ``status`` supplies live numbers (the XP2P device's :meth:`status`)."""

    def __init__(
        self,
        *,
        head: PtzHead | None = None,
        version: str = "1.0.0",
        status: Callable[[], DeviceStatus] | None = None,
    ) -> None:
        self.head = head or PtzHead()
        self.version = version
        self.status = status
        self.working = True
        self.mirror = "normal"
        self.log: list[tuple[str, int, str]] = []  # (visitor, channel, cmd) as received

    def __call__(self, visitor: str, channel: int, cmd: str) -> str:
        self.log.append((visitor, channel, cmd))
        if cmd.startswith("{"):
            try:
                return self._lianlian(parse_lianlian(cmd))
            except BadRequest as exc:
                return dumps_safe({"result": "-1", "msg": str(exc)}).decode()
        move = _MOVES.get(cmd)
        if move is None:
            return dumps_safe({"result": "-1", "msg": "unknown command"}).decode()
        self.head.move(*move)
        return dumps_safe({"result": "0", **self.head.fields()}).decode()

    def _lianlian(self, c: LianLianCommand) -> str:
        status = self.status() if self.status is not None else DeviceStatus()
        data = c.data
        if c.topic == "ptz":
            cmd = data.get("cmd")
            if cmd == "ptz_release_pre":
                self.head.apex = False
            elif isinstance(cmd, str) and cmd.endswith("_press") and cmd in _MOVES:
                self.head.move(*_MOVES[cmd])
            else:
                return lianlian_reply(c, "-1")
            return lianlian_reply(c, **self.head.fields())
        if c.topic == "get_status":
            return lianlian_reply(
                c,
                status="working" if self.working else "standby",
                user_num=status.user_num,
                signal_strength=80,
            )
        if c.topic == "version":
            return lianlian_reply(c, info=self.version)
        if c.topic == "intercom":
            return lianlian_reply(c, status="using" if status.talking else "unused")
        if c.topic == "set_status" and data.get("status") in ("working", "standby"):
            self.working = data["status"] == "working"
            return lianlian_reply(c)
        if c.topic == "Mirror_flip" and data.get("mode") in ("normal", "flip"):
            self.mirror = str(data["mode"])
            return lianlian_reply(c)
        if c.topic in ("upgrade", "sd_format", "bind_status"):
            return lianlian_reply(c)
        return lianlian_reply(c, "-1")
