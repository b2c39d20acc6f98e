"""Door-lock temporary passwords (device-protocol.md §9): RFC 4226 HOTP over 30 s steps.

The app and the lock both derive a 6-digit code from the lock's DeviceSecret (base64-decoded)
and ``floor(unix_time / 30)``; the lock accepts the code the user types without asking the
cloud, so the algorithm must match Tencent's reference (``fmount/c_otp``) bit for bit:
HMAC-SHA1 over the 8-byte big-endian counter, dynamic truncation, 31-bit value mod 10^digits,
zero-padded.

Acceptance policy (Tencent specifies none): :func:`verify_lock_temp_password` accepts the
current step and ``window`` steps either side (default: t−1, t, t+1, i.e. a code stays
usable for 60–90 s and tolerates ±30 s of clock skew). It returns the matched counter and
does not remember it: making codes single-use (store the highest counter used and refuse
anything not above it) is the caller's job, since that needs state.
"""

from __future__ import annotations

import hashlib
import hmac

from ivcloud.protocol.credentials import decode_device_secret

__all__ = [
    "DEFAULT_DIGITS",
    "DEFAULT_PERIOD",
    "hotp",
    "lock_temp_password",
    "verify_lock_temp_password",
]

DEFAULT_PERIOD = 30
DEFAULT_DIGITS = 6


def hotp(key: bytes, counter: int, digits: int = DEFAULT_DIGITS) -> str:
    """RFC 4226 HOTP-SHA1. ``digits`` may go up to 10 (the 31-bit value has at most 10)."""
    if not 0 <= counter < 2**64:
        raise ValueError("counter must fit in 8 unsigned bytes")
    if not 1 <= digits <= 10:
        raise ValueError("digits must be between 1 and 10")
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[19] & 0x0F
    code = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def _counter(unix_ts: int, period: int) -> int:
    if period <= 0:
        raise ValueError("period must be positive")
    if unix_ts < 0:
        raise ValueError("unix_ts must not be negative")
    return unix_ts // period


def lock_temp_password(
    device_secret_b64: str,
    unix_ts: int,
    period: int = DEFAULT_PERIOD,
    digits: int = DEFAULT_DIGITS,
) -> str:
    """The temporary password valid at ``unix_ts`` (what the app shows the user)."""
    return hotp(decode_device_secret(device_secret_b64), _counter(unix_ts, period), digits)


def verify_lock_temp_password(
    device_secret_b64: str,
    code: str,
    unix_ts: int,
    window: int = 1,
    *,
    period: int = DEFAULT_PERIOD,
    digits: int = DEFAULT_DIGITS,
) -> int | None:
    """The counter ``code`` belongs to if it is within ``window`` steps of ``unix_ts``'s,
    else ``None`` (also for a code that is not ``digits`` ASCII digits). The current step is
    tried first, then alternately earlier and later ones."""
    if window < 0:
        raise ValueError("window must not be negative")
    key = decode_device_secret(device_secret_b64)
    now = _counter(unix_ts, period)
    if not (isinstance(code, str) and len(code) == digits and code.isascii() and code.isdigit()):
        return None
    candidates = [now]
    for k in range(1, window + 1):
        candidates += [now - k, now + k]
    for counter in candidates:
        if 0 <= counter < 2**64 and hmac.compare_digest(hotp(key, counter, digits), code):
            return counter
    return None
