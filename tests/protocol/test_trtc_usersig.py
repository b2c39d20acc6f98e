"""TRTC UserSig ("TLS sig api v2"): a known-answer vector, the reference libraries' own token
format, the verifier's every refusal, and the decoder on garbage (a clear error, no crash)."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivcloud.protocol.trtc_usersig import (
    MAX_USER_SIG_CHARS,
    UserSigError,
    content_to_sign,
    decode_user_sig,
    mint_user_sig,
    valid_user_id,
    verify_user_sig,
)

KEY = "kat-secret-0123456789abcdef"
APP = 1_400_000_000
T0 = 1_700_000_000
# HMAC-SHA256 of the content below under KEY, computed outside Python with
#   printf 'TLS.identifier:alice\nTLS.sdkappid:1400000000\nTLS.time:1700000000\n'\
#          'TLS.expire:86400\n' | openssl dgst -sha256 -hmac "$KEY" -binary | base64
KAT_SIG = "NUVWjB5QDmu835OZ7mXwKuE8kDVh6q12OyX2fV4lF6I="
# The same with a user buffer of bytes 00 01 02 ("TLS.userbuf:AAEC\n" appended).
KAT_SIG_USERBUF = "k+TL8zCRfenoEmli+x4WQJaWLLVRCQuU8JhHqbMcNOI="
# A ticket in the exact shape Tencent's Python library emits (json.dumps with its default
# ", " / ": " separators, zlib default level, * - _ alphabet) for the same fields.
REFERENCE_TICKET = (
    "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkEnMyk1NhUsUp2YkFBZkpQAlDEwMogMqlVhRkFqUCZSzMTO"
    "CCJZm5ICFDczTFxZnpIMP9QsPCs5xMA11ySy2MTf2jzHMjyr1LXS2yXcIyzAoNjfwrI4zSwkxy3Mw8bZVqAeb2MR8_"
)


def _inflate(ticket: str) -> dict[str, object]:
    packed = base64.b64decode(ticket.translate(str.maketrans("*-_", "+/=")))
    doc: dict[str, object] = json.loads(zlib.decompress(packed))
    return doc


def _pack(doc: object) -> str:
    raw = zlib.compress(json.dumps(doc).encode())
    return base64.b64encode(raw).decode().translate(str.maketrans("+/=", "*-_"))


def test_content_string_is_the_documented_one() -> None:
    assert content_to_sign("alice", APP, T0, 86400) == (
        "TLS.identifier:alice\nTLS.sdkappid:1400000000\nTLS.time:1700000000\nTLS.expire:86400\n"
    )
    assert content_to_sign("alice", APP, T0, 86400, b"\x00\x01\x02").endswith(
        "TLS.expire:86400\nTLS.userbuf:AAEC\n"
    )


def test_minted_ticket_carries_the_known_answer() -> None:
    ticket = mint_user_sig(sdk_app_id=APP, key=KEY, identifier="alice", now=T0, expire_s=86400)
    assert set(ticket) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789*-_")
    assert _inflate(ticket) == {
        "TLS.ver": "2.0",
        "TLS.identifier": "alice",
        "TLS.sdkappid": APP,
        "TLS.expire": 86400,
        "TLS.time": T0,
        "TLS.sig": KAT_SIG,
    }
    with_buf = mint_user_sig(
        sdk_app_id=APP, key=KEY, identifier="alice", now=T0, expire_s=86400, userbuf=b"\0\1\2"
    )
    doc = _inflate(with_buf)
    assert (doc["TLS.userbuf"], doc["TLS.sig"]) == ("AAEC", KAT_SIG_USERBUF)


def test_the_reference_libraries_ticket_verifies() -> None:
    sig = verify_user_sig(REFERENCE_TICKET, sdk_app_id=APP, key=KEY, identifier="alice", now=T0)
    assert (sig.identifier, sig.sdk_app_id, sig.time, sig.expire) == ("alice", APP, T0, 86400)
    assert sig.expires_at == T0 + 86400 and sig.userbuf is None


def test_round_trip_and_each_refusal() -> None:
    ticket = mint_user_sig(sdk_app_id=APP, key=KEY, identifier="u_1", now=T0, expire_s=600)

    def check(
        *,
        app: int = APP,
        key: str = KEY,
        uid: str = "u_1",
        now: int = T0 + 600,
        buf: bytes | None = None,
    ) -> None:
        verify_user_sig(ticket, sdk_app_id=app, key=key, identifier=uid, now=now, userbuf=buf)

    check()  # valid through the last second
    refusals = [
        ({"now": T0 + 601}, "expired"),
        ({"app": APP + 1}, "sdkappid"),
        ({"uid": "u_2"}, "identifier"),
        ({"key": KEY + "x"}, "signature"),
        ({"buf": b"x"}, "userbuf"),
    ]
    for change, reason in refusals:
        with pytest.raises(UserSigError) as info:
            check(**change)  # type: ignore[arg-type]
        assert info.value.reason == reason, change


def test_a_forged_field_breaks_the_signature() -> None:
    doc = _inflate(mint_user_sig(sdk_app_id=APP, key=KEY, identifier="a", now=T0, expire_s=60))
    doc["TLS.expire"] = 10**9  # stretch the lifetime, keep the old signature
    with pytest.raises(UserSigError) as info:
        verify_user_sig(_pack(doc), sdk_app_id=APP, key=KEY, identifier="a", now=T0 + 120)
    assert info.value.reason == "signature"


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"TLS.ver": "1.0"},
        {"TLS.ver": "2.0", "TLS.identifier": 5},
        {"TLS.ver": "2.0", "TLS.identifier": "a", "TLS.sdkappid": "1", "TLS.time": 1},
        {"TLS.ver": "2.0", "TLS.identifier": "a", "TLS.sdkappid": 1, "TLS.time": -1},
        {"TLS.ver": "2.0", "TLS.identifier": "a", "TLS.sdkappid": True, "TLS.time": 1},
        {
            "TLS.ver": "2.0",
            "TLS.identifier": "a",
            "TLS.sdkappid": 1,
            "TLS.time": 1,
            "TLS.expire": 1,
            "TLS.sig": "not base64!",
        },
    ],
)
def test_malformed_documents_are_refused(doc: object) -> None:
    with pytest.raises(UserSigError) as info:
        decode_user_sig(_pack(doc))
    assert info.value.reason == "malformed"


def test_malformed_wrappers_are_refused() -> None:
    bomb = base64.b64encode(zlib.compress(b"{" + b" " * 100_000 + b"}")).decode()
    cases = [
        "",
        "x" * (MAX_USER_SIG_CHARS + 1),
        "abc+",  # standard base64 is not the ticket alphabet
        "abcde",  # bad padding
        base64.b64encode(b"plain text").decode().translate(str.maketrans("+/=", "*-_")),
        bomb.translate(str.maketrans("+/=", "*-_")),
        _pack({"x": 1})[:-8],  # truncated stream
    ]
    for text in cases:
        with pytest.raises(UserSigError) as info:
            decode_user_sig(text)
        assert info.value.reason == "malformed", text[:40]


def test_minting_refuses_ids_trtc_would_refuse() -> None:
    assert valid_user_id("a" * 32) and valid_user_id("d_0-9")
    for bad in ("", "a" * 33, "p/d", "dev:1", "é"):
        assert not valid_user_id(bad)
        with pytest.raises(UserSigError):
            mint_user_sig(sdk_app_id=APP, key=KEY, identifier=bad, now=T0, expire_s=60)
    with pytest.raises(UserSigError):
        mint_user_sig(sdk_app_id=0, key=KEY, identifier="a", now=T0, expire_s=60)
    with pytest.raises(UserSigError):
        mint_user_sig(sdk_app_id=APP, key=KEY, identifier="a", now=T0, expire_s=0)


@given(st.text(max_size=300))
def test_decoder_on_any_text_raises_only_usersig_error(text: str) -> None:
    try:
        decode_user_sig(text)
    except UserSigError as exc:
        assert exc.reason == "malformed"


@given(st.binary(max_size=400))
def test_decoder_on_any_compressed_bytes_raises_only_usersig_error(data: bytes) -> None:
    for blob in (data, zlib.compress(data)):
        text = base64.b64encode(blob).decode().translate(str.maketrans("+/=", "*-_"))
        try:
            decode_user_sig(text)
        except UserSigError as exc:
            assert exc.reason == "malformed"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["TLS.ver", "TLS.identifier", "TLS.sdkappid", "TLS.time", "TLS.expire", "TLS.sig"]
        )
        | st.just("TLS.userbuf"),
        json_values,
    )
)
def test_decoder_on_any_json_document_raises_only_usersig_error(doc: dict[str, object]) -> None:
    try:
        sig = decode_user_sig(_pack({"TLS.ver": "2.0", **doc}))
    except UserSigError as exc:
        assert exc.reason == "malformed"
    else:
        assert isinstance(sig.identifier, str) and sig.sdk_app_id >= 0


@given(
    st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
    st.integers(1, 2**32 - 1),
    st.integers(0, 2**35),
    st.integers(1, 10**8),
    st.text(min_size=1, max_size=64),
    st.none() | st.binary(max_size=40),
)
def test_every_minted_ticket_verifies_until_it_expires(
    identifier: str, app: int, now: int, ttl: int, key: str, userbuf: bytes | None
) -> None:
    ticket = mint_user_sig(
        sdk_app_id=app, key=key, identifier=identifier, now=now, expire_s=ttl, userbuf=userbuf
    )

    def verify(at: int) -> int:
        sig = verify_user_sig(
            ticket, sdk_app_id=app, key=key, identifier=identifier, now=at, userbuf=userbuf
        )
        return sig.time

    assert verify(now + ttl) == now
    with pytest.raises(UserSigError):
        verify(now + ttl + 1)
