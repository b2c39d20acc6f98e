"""Verification codes, senders, password hashing and identity rules at the service level
(a real SQLite database, an injected clock, no HTTP)."""

from __future__ import annotations

import asyncio
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from ivcloud.services.accounts import (
    EmailInvalid,
    Identity,
    Passwords,
    PhoneNumberInvalid,
)
from ivcloud.services.codes import (
    CodeExpired,
    CodeSendFailed,
    CodeTooQuick,
    CodeWrong,
    LogCodeSender,
    RoutingCodeSender,
    SmtpCodeSender,
    Target,
    VerificationCodes,
)
from ivcloud.store.db import create_engine, migrate, session_factory
from ivcloud.store.schema_app import App, VerificationCode

APP = "app_1"
PHONE = Target.phone("86", "13800000001")


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def now_ms(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


class FailingSender:
    async def send(self, target: Target, code: str, purpose: str) -> None:
        raise OSError("SMS gateway down")


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[object]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'codes.db'}")
    await migrate(engine)
    factory = session_factory(engine)
    async with factory.begin() as s:
        s.add(App(app_id=APP, name="a", app_key="k", app_secret="s", created_ms=0))
    yield factory
    await engine.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sender() -> LogCodeSender:
    return LogCodeSender()


@pytest.fixture
def codes(sessions: object, clock: FakeClock, sender: LogCodeSender) -> VerificationCodes:
    return VerificationCodes(sessions, clock, sender, key=b"k" * 32)  # type: ignore[arg-type]


async def sent(
    codes: VerificationCodes,
    sender: LogCodeSender,
    purpose: str = "register",
    target: Target = PHONE,
) -> str:
    await codes.send(APP, target, purpose)
    code = sender.last(target)
    assert code is not None
    return code


async def test_code_is_six_digits_stored_hashed_single_use(
    codes: VerificationCodes, sender: LogCodeSender, sessions: object
) -> None:
    code = await sent(codes, sender)
    assert len(code) == 6 and code.isdigit()
    async with sessions() as s:  # type: ignore[operator]
        rows = (await s.scalars(select(VerificationCode))).all()
    assert len(rows) == 1 and code not in rows[0].code_hash and len(rows[0].code_hash) == 64
    await codes.check(APP, PHONE, "register", code, consume=False)  # checking does not spend
    await codes.check(APP, PHONE, "register", code, consume=True)
    with pytest.raises(CodeExpired):
        await codes.check(APP, PHONE, "register", code, consume=True)


async def test_expiry_at_ttl(
    codes: VerificationCodes, sender: LogCodeSender, clock: FakeClock
) -> None:
    code = await sent(codes, sender)
    clock.advance(299.999)
    await codes.check(APP, PHONE, "register", code, consume=False)
    clock.advance(0.001)
    with pytest.raises(CodeExpired):
        await codes.check(APP, PHONE, "register", code, consume=True)


async def test_attempt_limit(codes: VerificationCodes, sender: LogCodeSender) -> None:
    code = await sent(codes, sender)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):
        with pytest.raises(CodeWrong):
            await codes.check(APP, PHONE, "register", wrong, consume=True)
    await codes.check(APP, PHONE, "register", code, consume=False)  # 4 misses: still alive
    with pytest.raises(CodeWrong):
        await codes.check(APP, PHONE, "register", wrong, consume=False)
    with pytest.raises(CodeExpired):  # the 5th miss killed it, even for the right code
        await codes.check(APP, PHONE, "register", code, consume=True)


async def test_rate_limit_per_target_and_new_code_retires_old(
    codes: VerificationCodes, sender: LogCodeSender, clock: FakeClock
) -> None:
    first = await sent(codes, sender)
    clock.advance(59.9)
    with pytest.raises(CodeTooQuick):
        await codes.send(APP, PHONE, "login")  # per target, whatever the purpose
    await sent(codes, sender, target=Target.email("a@example.com"))  # other targets are free
    clock.advance(0.1)
    second = await sent(codes, sender)
    if second != first:
        with pytest.raises(CodeWrong):
            await codes.check(APP, PHONE, "register", first, consume=True)
    await codes.check(APP, PHONE, "register", second, consume=True)


async def test_purposes_and_apps_are_separate(
    codes: VerificationCodes, sender: LogCodeSender
) -> None:
    code = await sent(codes, sender, "login")
    with pytest.raises(CodeExpired):
        await codes.check(APP, PHONE, "register", code, consume=True)
    with pytest.raises(CodeExpired):
        await codes.check("app_2", PHONE, "login", code, consume=True)
    await codes.check(APP, PHONE, "login", code, consume=True)


async def test_failed_delivery_withdraws_the_code(sessions: object, clock: FakeClock) -> None:
    codes = VerificationCodes(sessions, clock, FailingSender(), key=b"k")  # type: ignore[arg-type]
    with pytest.raises(CodeSendFailed):
        await codes.send(APP, PHONE, "register")
    with pytest.raises(CodeSendFailed):  # not rate-limited: nothing was delivered
        await codes.send(APP, PHONE, "register")
    async with sessions() as s:  # type: ignore[operator]
        assert (await s.scalars(select(VerificationCode))).all() == []


async def test_log_sender_never_logs_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    quiet = LogCodeSender()
    with capture_logs() as logs:
        await quiet.send(PHONE, "123456", "register")
    assert logs == [
        {
            "event": "verification_code_sent",
            "to": "+8613****01",
            "purpose": "register",
            "sender": "dev",
            "log_level": "info",
        }
    ]
    assert "123456" not in capsys.readouterr().out
    loud = LogCodeSender(echo=True, remember=1)
    await loud.send(PHONE, "654321", "login")
    assert "654321" in capsys.readouterr().out
    await loud.send(Target.email("a@b.example"), "111111", "login")
    assert loud.last(PHONE) is None  # bounded memory
    assert Target.email("alice@b.example").masked == "a***@b.example"


class _FakeSmtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: records each DATA block on the server."""

    def handle(self) -> None:
        self.wfile.write(b"220 fake\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 fake\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go\r\n")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                self.server.mails.append(data.decode())  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[str]]]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _FakeSmtp)
    srv.daemon_threads = True
    srv.mails = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], srv.mails  # type: ignore[attr-defined]
    srv.shutdown()
    srv.server_close()


async def test_smtp_sender_and_routing(smtp_server: tuple[int, list[str]]) -> None:
    port, mails = smtp_server
    dev = LogCodeSender()
    smtp = SmtpCodeSender(f"smtp://127.0.0.1:{port}", "codes@ivcloud.example")
    routing = RoutingCodeSender(phone=dev, email=smtp)
    await routing.send(Target.email("bob@example.com"), "246810", "register")
    await routing.send(PHONE, "135791", "login")
    assert len(mails) == 1
    assert "To: bob@example.com" in mails[0] and "246810" in mails[0]
    assert dev.last(PHONE) == "135791"
    with pytest.raises(ValueError):
        SmtpCodeSender("http://mail.example", "x@y")


async def test_passwords_argon2id() -> None:
    cheap = Passwords(time_cost=1, memory_kib=8, parallelism=1)
    hashed = await cheap.hash("correct horse")
    assert hashed.startswith("$argon2id$")
    assert await cheap.verify(hashed, "correct horse")
    assert not await cheap.verify(hashed, "wrong horse")
    assert not await cheap.verify("not a hash", "correct horse")
    assert not cheap.needs_rehash(hashed)
    assert Passwords(time_cost=2, memory_kib=8, parallelism=1).needs_rehash(hashed)


def test_identities() -> None:
    assert Identity.of_phone("+86", " 13800000001 ").target == PHONE
    assert Identity.of_phone("1", "4155550100").columns == {
        "country_code": "1",
        "phone": "4155550100",
    }
    for cc, number in (
        ("86", "1380000000"),
        ("86", "23800000000"),
        ("0", "12345"),
        ("86", "138-0000-0001"),
        ("1", "1234567890123456"),
        ("x", "123456"),
    ):
        with pytest.raises(PhoneNumberInvalid):
            Identity.of_phone(cc, number)
    assert Identity.of_email(" Bob@Example.COM ").email == "bob@example.com"
    for bad in (
        "bob",
        "bob@",
        "@example.com",
        "bob@example",
        "b ob@example.com",
        "a" * 250 + "@example.com",
    ):
        with pytest.raises(EmailInvalid):
            Identity.of_email(bad)


async def test_simultaneous_sends_to_one_target_send_once(
    codes: VerificationCodes, sender: LogCodeSender, sessions: object
) -> None:
    results = await asyncio.gather(
        *(codes.send(APP, PHONE, "register") for _ in range(5)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, CodeTooQuick) for r in results if r is not None)
    async with sessions() as s:  # type: ignore[operator]
        rows = (await s.scalars(select(VerificationCode))).all()
    assert len(rows) == 1
