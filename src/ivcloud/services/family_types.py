"""Value types and errors of the family service (split out to keep ``families`` small)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivcloud.protocol import appapi_errors as codes
from ivcloud.services.errors import Forbidden, InvalidInput, NotFound


class ProductNotLinked(Forbidden):
    """The device's product is not linked to the user's app."""

    code = codes.APP_NO_PERMISSION_TO_STUDIO_PRODUCT


class TokenNotExist(NotFound):
    code = codes.TOKEN_NOT_EXIST


class TokenExpired(InvalidInput):
    code = codes.TOKEN_IS_EXPIRE


class UserNotExists(NotFound):
    code = codes.USER_NOT_EXISTS


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    family_id: str
    name: str
    address: str
    role: int
    rooms_num: int
    created_ms: int
    updated_ms: int

    def to_api(self) -> dict[str, Any]:
        """An ``AppGetFamilyList`` item; ``AppDescribeFamily`` uses a subset."""
        return {
            "FamilyId": self.family_id,
            "FamilyName": self.name,
            "FamilyType": 0,
            "Address": self.address,
            "RoomsNum": self.rooms_num,
            "Role": self.role,
            "CreateTime": self.created_ms // 1000,
            "UpdateTime": self.updated_ms // 1000,
        }


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room_id: str
    name: str
    device_num: int
    created_ms: int
    updated_ms: int

    def to_api(self) -> dict[str, Any]:
        return {
            "RoomId": self.room_id,
            "RoomName": self.name,
            "DeviceNum": self.device_num,
            "CreateTime": self.created_ms // 1000,
            "UpdateTime": self.updated_ms // 1000,
        }


@dataclass(frozen=True, slots=True)
class MemberInfo:
    user_id: str
    nick_name: str
    avatar: str
    role: int

    def to_api(self) -> dict[str, Any]:
        return {
            "UserID": self.user_id,
            "NickName": self.nick_name,
            "Avatar": self.avatar,
            "Role": self.role,
        }


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a device sits: its family, room, alias and who bound it."""

    device_id: int
    product_id: str
    device_name: str
    family_id: str
    room_id: str
    alias: str
    bound_by: str
    created_ms: int
    updated_ms: int

    def to_api(self) -> dict[str, Any]:
        """A ``DeviceList`` item of ``AppGetFamilyDeviceList`` (spec §2.3)."""
        return {
            "DeviceId": f"{self.product_id}/{self.device_name}",
            "ProductId": self.product_id,
            "DeviceName": self.device_name,
            "AliasName": self.alias,
            "UserID": self.bound_by,
            "FamilyId": self.family_id,
            "RoomId": self.room_id,
            "IconUrl": "",
            "DeviceType": 0,
            "CreateTime": self.created_ms // 1000,
            "UpdateTime": self.updated_ms // 1000,
        }
