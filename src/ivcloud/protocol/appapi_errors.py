"""App API error codes and the exception that carries them (app-api.md §1.4).

The wire puts these strings in ``data.Error.Code`` next to ``code: -1000``. Two groups:

Documented by Tencent (app-api.md §1.4 "Documented error codes") — used with the meaning the
docs give them.

Defined here, because the spec leaves them **[UNCONFIRMED]** (§1.4, §7). Names follow the
Tencent Cloud API 3.0 *common* error codes where one fits, otherwise the same style:

=====================================  ==========================================================
Code                                   Used for
=====================================  ==========================================================
``AuthFailure.SignatureFailure``       appapi ``Signature`` missing, not a string, or wrong
                                       (one code for all: a guesser learns nothing; TC3 common)
``AuthFailure.SecretIdNotFound``       ``AppKey`` unknown or disabled (TC3 common "key does not
                                       exist"; the AppKey plays the role of a TC3 SecretId)
``AuthFailure.SignatureExpire``        ``Timestamp`` outside the ±window around server time
                                       (TC3 common, same meaning: "differs by more than 5 min")
``AuthFailure.ReplayAttack``           ``Nonce`` already used by this AppKey inside the window
                                       (no TC3 common code exists; named in the same style)
``ErrorRequiredParamNotFound``         a required parameter is absent / null / ``""`` (documented)
``InvalidAction``                      unknown or malformed ``Action`` (documented)
``InvalidParameter``                   a parameter of the wrong JSON type or shape (e.g. a
                                       ``DeviceId`` without exactly one ``/``) (documented)
``InvalidParameterValue``              right type, value out of range / too long (documented)
=====================================  ==========================================================
"""

# ruff: noqa: S105 - the "TOKEN" constants are error codes, not credentials

from __future__ import annotations

from typing import Final

from ivcloud.protocol.errors import ProtocolError

__all__ = [
    "API_ERROR_CODE",
    "APP_KEY_NOT_FOUND",
    "APP_NO_PERMISSION_TO_STUDIO_PRODUCT",
    "BIND_DEVICE_NOT_CONNECTED",
    "DEVICE_INFO_OUTDATED",
    "FAILED_OPERATION",
    "INTERNAL_ERROR",
    "INVALID_ACCESS_TOKEN",
    "INVALID_ACTION",
    "INVALID_JSON",
    "INVALID_PARAMETER",
    "INVALID_PARAMETER_VALUE",
    "INVALID_SHARE_DEVICE_TOKEN",
    "MSG_ID_INVALID",
    "NO_PERMISSION",
    "PHONE_NUMBER_INVALID",
    "READ_TOKEN_INFO_ERROR",
    "REPLAY_ATTACK",
    "REQUIRED_PARAM_NOT_FOUND",
    "SEND_VERIFY_CODE_TOO_QUICK",
    "SIGNATURE_EXPIRE",
    "SIGNATURE_FAILURE",
    "TOKEN_INFO_SAVE_ERROR",
    "TOKEN_IS_EXPIRE",
    "TOKEN_NOT_EXIST",
    "USER_LOGIN_FAILED",
    "USER_NOT_EXISTS",
    "AppApiError",
]

#: Numeric ``code`` of every API-level error envelope (Android ``ErrorCode.REQ_ERROR_CODE``).
API_ERROR_CODE: Final[int] = -1000

# --- documented by Tencent (app-api.md §1.4) ---------------------------------------------------
INTERNAL_ERROR: Final[str] = "InternalError"
REQUIRED_PARAM_NOT_FOUND: Final[str] = "ErrorRequiredParamNotFound"
INVALID_ACTION: Final[str] = "InvalidAction"
INVALID_PARAMETER: Final[str] = "InvalidParameter"
INVALID_PARAMETER_VALUE: Final[str] = "InvalidParameterValue"
INVALID_JSON: Final[str] = "InvalidParameterValue.InvalidJSON"
#: Clients (SDK, Android) start their login flow again when they see this one.
INVALID_ACCESS_TOKEN: Final[str] = "InvalidParameterValue.InvalidAccessToken"
USER_NOT_EXISTS: Final[str] = "InvalidParameterValue.ErrorUserNotExists"
USER_LOGIN_FAILED: Final[str] = "InvalidParameterValue.UserLoginFailed"
PHONE_NUMBER_INVALID: Final[str] = "InvalidParameterValue.PhoneNumberInvalid"
SEND_VERIFY_CODE_TOO_QUICK: Final[str] = "InvalidParameterValue.SendVerifyCodeTooQuick"
NO_PERMISSION: Final[str] = "InvalidParameterValue.NoPermission"
TOKEN_NOT_EXIST: Final[str] = "InvalidParameterValue.TokenNotExist"
TOKEN_IS_EXPIRE: Final[str] = "InvalidParameterValue.TokenIsExpire"
READ_TOKEN_INFO_ERROR: Final[str] = "InvalidParameterValue.ReadTokenInfoError"
TOKEN_INFO_SAVE_ERROR: Final[str] = "InvalidParameterValue.TokenInfoSaveError"
INVALID_SHARE_DEVICE_TOKEN: Final[str] = "InvalidParameterValue.InvalidShareDeviceToken"
BIND_DEVICE_NOT_CONNECTED: Final[str] = "InvalidParameterValue.BindDeviceNotConnected"
APP_NO_PERMISSION_TO_STUDIO_PRODUCT: Final[str] = (
    "UnauthorizedOperation.APPNoPermissionToStudioProduct"
)
FAILED_OPERATION: Final[str] = "FailedOperation"
DEVICE_INFO_OUTDATED: Final[str] = "FailedOperation.DeviceInfoOutdated"
#: ``AppDeleteMessage`` (DOC 1081/40795): a malformed, unknown or other user's ``MsgID``.
MSG_ID_INVALID: Final[str] = "InvalidParameterValue.MsgIDInvalid"

# --- defined here (spec: UNCONFIRMED; see the module docstring) --------------------------------
SIGNATURE_FAILURE: Final[str] = "AuthFailure.SignatureFailure"
APP_KEY_NOT_FOUND: Final[str] = "AuthFailure.SecretIdNotFound"
SIGNATURE_EXPIRE: Final[str] = "AuthFailure.SignatureExpire"
REPLAY_ATTACK: Final[str] = "AuthFailure.ReplayAttack"


class AppApiError(ProtocolError):
    """An App API request refused with ``data.Error = {"Code": code, "Message": message}``.

    ``message`` goes to the client verbatim, so it must not contain secrets.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"AppApiError({self.code!r}, {self.message!r})"
