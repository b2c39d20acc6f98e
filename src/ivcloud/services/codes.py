"""One-time verification codes (register, reset password, login, bind) and how they reach
the user.

Rules, chosen because a 6-digit code is only as strong as the limits around it:

* 6 random digits, valid ``ttl_ms`` (default 5 min), **single use**;
* only an HMAC-SHA256 of the code is stored (keyed with the instance secret), so a database
  dump does not hand out live codes;
* at most ``max_attempts`` (default 5) wrong guesses per code, then it is dead: 5 guesses in
  10⁶ is the whole budget an attacker gets per code sent;
* one send per target per ``resend_ms`` (default 60 s) → ``SendVerifyCodeTooQuick``. The
  limit lives in the database (the newest row of the target), so every instance of a
  scale-out deployment enforces the same one;
* a new code for a target and purpose retires the older ones.

Delivery goes through the :class:`CodeSender` protocol.  :class:`LogCodeSender` is the
*development* default: it logs that a code was sent to a masked address, keeps the last code
per target in memory (tests and the demo read it) and, when ``echo`` is on, prints the code
to stdout — never into structured logs.  :class:`SmtpCodeSender` mails codes with
``smtplib`` in a worker thread.  SMS has no built-in sender: plug one in behind the protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import smtplib
import ssl
from collections import OrderedDict
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final, Literal, Protocol
from urllib.parse import unquote, urlsplit

import structlog
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ivcloud.services.errors import ServiceError
from ivcloud.services.ports import Clock
from ivcloud.services.throttle import KeyedLocks
from ivcloud.store.schema_app import VerificationCode

log = structlog.get_logger("ivcloud.codes")

Channel = Literal["phone", "email"]
PURPOSES: Final[frozenset[str]] = frozenset({"register", "resetpass", "login"})
DEFAULT_TTL_MS: Final[int] = 5 * 60 * 1000
DEFAULT_RESEND_MS: Final[int] = 60 * 1000
DEFAULT_MAX_ATTEMPTS: Final[int] = 5
_KEEP_EXPIRED_MS: Final[int] = 24 * 3600 * 1000


class CodeTooQuick(ServiceError):
    code = "InvalidParameterValue.SendVerifyCodeTooQuick"


class CodeWrong(ServiceError):
    """The code does not match; the client may try again (until attempts run out)."""

    code = "InvalidParameterValue.VerificationCodeError"


class CodeExpired(ServiceError):
    """No live code: never sent, expired, used, or out of attempts — send a new one."""

    code = "InvalidParameterValue.VerificationCodeExpired"


class CodeSendFailed(ServiceError):
    code = "FailedOperation.SendVerifyCodeFailed"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a code goes.  ``key`` is what rows and rate limits are keyed by; ``address``
    is what a sender dials or mails (``+8613800000000`` / ``a@b.example``)."""

    channel: Channel
    address: str
    key: str

    @classmethod
    def phone(cls, country_code: str, number: str) -> Target:
        return cls("phone", f"+{country_code}{number}", f"phone:{country_code}:{number}")

    @classmethod
    def email(cls, address: str) -> Target:
        return cls("email", address, f"email:{address}")

    @property
    def masked(self) -> str:
        """Enough to tell targets apart in a log, not enough to contact anyone."""
        if self.channel == "email":
            local, _, domain = self.address.partition("@")
            return f"{local[:1]}***@{domain}"
        return f"{self.address[:5]}****{self.address[-2:]}"


class CodeSender(Protocol):
    async def send(self, target: Target, code: str, purpose: str) -> None:
        """Deliver ``code`` or raise; the code is then withdrawn."""
        ...


class LogCodeSender:
    """Development sender: no delivery at all.  Logs a masked notice, remembers the last
    code of each target (bounded) and prints codes to stdout when ``echo`` is on, so a
    self-hosted demo can register users without SMS or SMTP.  Not for production."""

    def __init__(self, *, echo: bool = False, remember: int = 1000) -> None:
        self.echo = echo
        self._remember = remember
        self._last: OrderedDict[str, str] = OrderedDict()

    async def send(self, target: Target, code: str, purpose: str) -> None:
        self._last[target.key] = code
        self._last.move_to_end(target.key)
        while len(self._last) > self._remember:
            self._last.popitem(last=False)
        log.info("verification_code_sent", to=target.masked, purpose=purpose, sender="dev")
        if self.echo:
            print(f"[ivcloud dev] verification code for {target.address} ({purpose}): {code}")

    def last(self, target: Target) -> str | None:
        """The last code sent to ``target`` (tests, demo)."""
        return self._last.get(target.key)


class SmtpCodeSender:
    """Mails codes through an SMTP server given as a URL: ``smtp://user:pass@host:25``
    (plain), ``smtp+starttls://…:587`` or ``smtps://…:465``.  ``smtplib`` blocks, so each
    mail is sent in a worker thread with a timeout."""

    def __init__(self, url: str, sender: str, *, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise ValueError("smtp_url must be smtp://, smtp+starttls:// or smtps://host[:port]")
        self._scheme = parts.scheme
        self._host = parts.hostname
        default_port = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}[parts.scheme]
        self._port = parts.port or default_port
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._from = sender
        self._timeout = timeout_s

    async def send(self, target: Target, code: str, purpose: str) -> None:
        if target.channel != "email":
            raise ValueError("SmtpCodeSender only mails")
        msg = EmailMessage()
        msg["From"] = self._from
        msg["To"] = target.address
        msg["Subject"] = f"Your verification code: {code}"
        msg.set_content(
            f"Your verification code is {code}.\n"
            "It is valid for a few minutes. If you did not ask for it, ignore this mail.\n"
        )
        await asyncio.to_thread(self._send_sync, msg)
        log.info("verification_code_sent", to=target.masked, purpose=purpose, sender="smtp")

    def _send_sync(self, msg: EmailMessage) -> None:
        client: smtplib.SMTP
        if self._scheme == "smtps":
            client = smtplib.SMTP_SSL(
                self._host,
                self._port,
                timeout=self._timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
        with client:
            if self._scheme == "smtp+starttls":
                client.starttls(context=ssl.create_default_context())
            if self._user is not None:
                client.login(self._user, self._password or "")
            client.send_message(msg)


class RoutingCodeSender:
    """Email through one sender, phone through another (e.g. SMTP + the dev sender)."""

    def __init__(self, *, phone: CodeSender, email: CodeSender) -> None:
        self.phone = phone
        self.email = email

    async def send(self, target: Target, code: str, purpose: str) -> None:
        sender = self.email if target.channel == "email" else self.phone
        await sender.send(target, code, purpose)


class VerificationCodes:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        sender: CodeSender,
        *,
        key: bytes,
        ttl_ms: int = DEFAULT_TTL_MS,
        resend_ms: int = DEFAULT_RESEND_MS,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self.sender = sender
        self._key = hmac.new(key, b"ivcloud verification codes", hashlib.sha256).digest()
        self.ttl_ms = ttl_ms
        self.resend_ms = resend_ms
        self.max_attempts = max_attempts
        # Two simultaneous sends to one target would both pass the resend check.
        self._sending = KeyedLocks()

    def _hash(self, app_id: str, target: Target, purpose: str, code: str) -> str:
        msg = "\0".join((app_id, target.key, purpose, code)).encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    async def send(self, app_id: str, target: Target, purpose: str) -> None:
        """Create a code and deliver it.  Raises :class:`CodeTooQuick` inside the resend
        window, :class:`CodeSendFailed` if delivery fails (the code is withdrawn, so the
        client may retry at once)."""
        async with self._sending.hold(f"{app_id}\0{target.key}"):
            await self._send(app_id, target, purpose)

    async def _send(self, app_id: str, target: Target, purpose: str) -> None:
        now = self._clock.now_ms()
        code = f"{secrets.randbelow(10**6):06d}"
        mine = (VerificationCode.app_id == app_id) & (VerificationCode.target == target.key)
        async with self._sessions.begin() as s:
            last = await s.scalar(select(func.max(VerificationCode.created_ms)).where(mine))
            if last is not None and now - last < self.resend_ms:
                raise CodeTooQuick("a code was sent to this target less than a minute ago")
            await s.execute(
                delete(VerificationCode).where(
                    mine, VerificationCode.expires_ms < now - _KEEP_EXPIRED_MS
                )
            )
            await s.execute(
                update(VerificationCode)
                .where(mine, VerificationCode.purpose == purpose)
                .values(used=True)
            )
            row = VerificationCode(
                app_id=app_id,
                target=target.key,
                purpose=purpose,
                code_hash=self._hash(app_id, target, purpose, code),
                attempts=0,
                used=False,
                created_ms=now,
                expires_ms=now + self.ttl_ms,
            )
            s.add(row)
        try:
            await self.sender.send(target, code, purpose)
        except Exception as exc:
            log.warning("verification_code_send_failed", to=target.masked, error=repr(exc))
            async with self._sessions.begin() as s:
                await s.execute(delete(VerificationCode).where(VerificationCode.id == row.id))
            raise CodeSendFailed("the verification code could not be sent") from None

    async def check(
        self, app_id: str, target: Target, purpose: str, code: str, *, consume: bool
    ) -> None:
        """Accept the live code of (target, purpose) or raise :class:`CodeWrong` /
        :class:`CodeExpired`.  ``consume`` spends it (the action it guards is done);
        a wrong guess always costs an attempt, also when only checking."""
        now = self._clock.now_ms()
        async with self._sessions() as s:
            row = await s.scalar(
                select(VerificationCode)
                .where(
                    VerificationCode.app_id == app_id,
                    VerificationCode.target == target.key,
                    VerificationCode.purpose == purpose,
                    VerificationCode.used.is_(False),
                )
                .order_by(VerificationCode.id.desc())
                .limit(1)
            )
        if row is None or row.expires_ms <= now or row.attempts >= self.max_attempts:
            raise CodeExpired("no valid verification code: request a new one")
        expected = self._hash(app_id, target, purpose, code)
        matches = hmac.compare_digest(row.code_hash, expected)
        async with self._sessions.begin() as s:
            # Conditional updates: two racing requests cannot both spend one code, and the
            # attempt counter cannot be raced past its limit.
            if not matches:
                await s.execute(
                    update(VerificationCode)
                    .where(VerificationCode.id == row.id)
                    .values(attempts=VerificationCode.attempts + 1)
                )
            elif consume:
                result = await s.execute(
                    update(VerificationCode)
                    .where(
                        VerificationCode.id == row.id,
                        VerificationCode.used.is_(False),
                        VerificationCode.attempts < self.max_attempts,
                    )
                    .values(used=True)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise CodeExpired("no valid verification code: request a new one")
        if not matches:
            raise CodeWrong("the verification code is wrong")
