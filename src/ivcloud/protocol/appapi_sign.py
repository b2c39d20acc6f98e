"""appapi request signatures, timestamp window and nonce replay cache (app-api.md §1.3).

Sans-IO: no clock is read here; callers pass ``now`` (Unix seconds).

Signature: ``Base64(HMAC-SHA1(AppSecret, canonical))`` where ``canonical`` joins every body
parameter except ``Signature`` as ``name=value`` with ``&``, names sorted by UTF-16 code unit
(JS ``Array.prototype.sort``), values coerced the way a JS template string does
(:func:`js_string`), nothing URL-encoded. Two client families differ on empty values
(NODESDK/Android/iOS keep them, newer MPDEMO/P2PDOC drop ``undefined``/``""``), so
:func:`verify_signature` accepts either canonicalisation.

Replay protection is ours to choose (Tencent's limits are unconfirmed): :func:`check_timestamp`
allows ±300 s of clock skew and :class:`NonceCache` remembers ``(AppKey, Nonce)`` pairs. The
cache window should be at least **twice** the timestamp window: a request stamped ``window``
seconds in the future stays acceptable for ``2 * window`` seconds after it is first seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from typing import Final

from ivcloud.protocol.appapi_errors import (
    INVALID_PARAMETER,
    REQUIRED_PARAM_NOT_FOUND,
    SIGNATURE_EXPIRE,
    AppApiError,
)

__all__ = [
    "DEFAULT_NONCE_WINDOW",
    "DEFAULT_TIMESTAMP_WINDOW",
    "NonceCache",
    "canonical_string",
    "check_timestamp",
    "js_string",
    "sign",
    "verify_signature",
]

DEFAULT_TIMESTAMP_WINDOW: Final[int] = 300
DEFAULT_NONCE_WINDOW: Final[int] = 2 * DEFAULT_TIMESTAMP_WINDOW

_FLOAT_REPR = re.compile(r"(\d+)(?:\.(\d*))?(?:e([+-]\d+))?")
_DECIMAL_INT = re.compile(r"-?[0-9]{1,18}")


def _js_number(value: float) -> str:
    """ECMAScript Number::toString(10) (ECMA-262 §6.1.6.1.20).

    Python's ``repr`` yields the same shortest round-tripping digits as JS engines; only the
    layout (where the point goes, when to switch to exponent form) differs.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # also -0
    if value < 0:
        return "-" + _js_number(-value)
    match = _FLOAT_REPR.fullmatch(repr(value))
    if match is None:  # pragma: no cover - repr of a finite positive float always matches
        return repr(value)
    int_part, frac_part, exp = match.group(1), match.group(2) or "", match.group(3)
    digits = int_part + frac_part
    n = len(int_part) + (int(exp) if exp else 0)  # value = 0.digits * 10**n
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{sign}{abs(e)}"


def _js_string(value: object, active: set[int]) -> str:
    if isinstance(value, str):
        return str.__str__(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _js_number(value)
    if isinstance(value, Mapping):
        return "[object Object]"
    if isinstance(value, list | tuple):
        if id(value) in active:  # JS Array.prototype.join yields "" for a cycle
            return ""
        active.add(id(value))
        try:
            return ",".join("" if item is None else _js_string(item, active) for item in value)
        finally:
            active.discard(id(value))
    return str(value)


def js_string(value: object) -> str:
    """``${value}`` as JavaScript would write it for a JSON-decoded value."""
    return _js_string(value, set())


def _utf16_key(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequences of 16-bit code units.
    return name.encode("utf-16-be", "surrogatepass")


def _utf8(text: str) -> bytes:
    """UTF-8 as Node/crypto-js would produce it: lone surrogates become U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()


def canonical_string(params: Mapping[str, object], *, drop_empty: bool) -> str:
    """The string that is HMAC-ed: ``a=1&b=x`` over every param except ``Signature``."""
    pairs: list[tuple[str, str]] = []
    for raw_name, raw_value in params.items():
        name = js_string(raw_name)
        if name == "Signature":
            continue
        value = js_string(raw_value)
        # JSON null is JS null, which stringifies to "null" and is kept; only values that
        # stringify to "" are dropped (JS `undefined` never reaches a JSON body).
        if drop_empty and value == "":
            continue
        pairs.append((name, value))
    pairs.sort(key=lambda pair: _utf16_key(pair[0]))
    return "&".join(f"{name}={value}" for name, value in pairs)


def _mac(app_secret: str, canonical: str) -> bytes:
    digest = hmac.new(_utf8(app_secret), _utf8(canonical), hashlib.sha1).digest()
    return base64.b64encode(digest)


def sign(app_secret: str, params: Mapping[str, object]) -> str:
    """The ``Signature`` a NODESDK/Android/iOS client sends (keep-empty canonicalisation)."""
    return _mac(app_secret, canonical_string(params, drop_empty=False)).decode("ascii")


def verify_signature(app_secret: str, params: Mapping[str, object]) -> bool:
    """True when ``params["Signature"]`` matches either canonicalisation. Never raises."""
    try:
        signature = params.get("Signature")
        if not isinstance(signature, str) or not signature or not signature.isascii():
            return False
        given = signature.encode("ascii")
        keep = canonical_string(params, drop_empty=False)
        drop = canonical_string(params, drop_empty=True)
        ok = hmac.compare_digest(_mac(app_secret, keep), given)
        if drop != keep:
            ok |= hmac.compare_digest(_mac(app_secret, drop), given)
        return ok
    except Exception:  # arbitrary client input must never turn into a 500
        return False


def check_timestamp(ts: object, now: int, window: int = DEFAULT_TIMESTAMP_WINDOW) -> None:
    """Refuse a ``Timestamp`` that is missing, not an integer (JSON int or decimal string),
    or more than ``window`` seconds away from ``now`` (either direction; the edges pass)."""
    if ts is None or ts == "":
        raise AppApiError(REQUIRED_PARAM_NOT_FOUND, "missing parameter Timestamp")
    if isinstance(ts, bool):
        raise AppApiError(INVALID_PARAMETER, "Timestamp must be an integer")
    if isinstance(ts, int):
        value = ts
    elif isinstance(ts, str) and _DECIMAL_INT.fullmatch(ts):
        value = int(ts)
    else:
        raise AppApiError(INVALID_PARAMETER, "Timestamp must be an integer")
    if abs(value - now) > window:
        raise AppApiError(
            SIGNATURE_EXPIRE, f"Timestamp differs from server time by more than {window}s"
        )


class NonceCache:
    """Bounded in-memory set of ``(app_key, nonce)`` seen in the last ``window`` seconds.

    A pair first seen at ``t`` counts as seen up to and including ``t + window``. Memory is
    bounded by ``max_entries``: when full, the oldest entry is dropped. Expired entries are
    pruned from the oldest end on every call (amortised O(1)). ``now`` should not go backwards
    much; if it does, entries merely live longer.
    """

    def __init__(self, window: int = DEFAULT_NONCE_WINDOW, max_entries: int = 1_000_000) -> None:
        if window < 0:
            raise ValueError("window must not be negative")
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], int] = {}  # insertion order == arrival order

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now: int) -> None:
        seen = self._seen
        while seen:
            key = next(iter(seen))
            if now - seen[key] <= self.window:
                break
            del seen[key]

    def seen(self, app_key: str, nonce: str, now: int) -> bool:
        """True if the pair was already recorded within the window; otherwise record it."""
        self._prune(now)
        key = (app_key, nonce)
        first = self._seen.get(key)
        if first is not None:
            if now - first <= self.window:
                return True
            del self._seen[key]  # expired, not yet pruned (arrival order != time order)
        while len(self._seen) >= self.max_entries:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = now
        return False
