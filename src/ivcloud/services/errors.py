"""Exception hierarchy of the services layer, mapped once at each edge (HTTP status and
App API ``Error.Code`` in ``api``; ``$thing`` reply codes in ``gateway``)."""


class ServiceError(Exception):
    """Base of every use-case failure."""

    code = "InternalError"


class NotFound(ServiceError):
    code = "ResourceNotFound"


class Conflict(ServiceError):
    code = "ResourceInUse"


class InvalidInput(ServiceError):
    """Input rejected by validation (thing model, QR string, firmware file, …)."""

    code = "InvalidParameterValue"


class DeviceOffline(ServiceError):
    code = "DeviceOffline"


class DeviceTimeout(ServiceError):
    """The device did not answer in time (action, synchronous control)."""

    code = "DeviceTimeout"


class Forbidden(ServiceError):
    """The caller may not reach this resource.  Also used for ids that do not exist, so
    that ids of other users cannot be probed."""

    code = "InvalidParameterValue.NoPermission"


class Unavailable(ServiceError):
    """Storage failed transiently: nothing was changed and the caller may retry."""

    code = "FailedOperation"
