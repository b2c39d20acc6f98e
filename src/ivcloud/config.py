"""Configuration: ``IVCLOUD_*`` environment variables and an optional TOML file.

Everything the embedded mode writes lives under one data directory, so a demo can be thrown
away with one ``rm -r``.  Precedence: explicit arguments > environment > TOML file > defaults.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ivcloud.services.ice import DEFAULT_TURN_TTL_S, validate_turn_url

DEFAULT_DATA_DIR = Path(".ivcloud")


class Settings(BaseSettings):
    """All knobs of one ivcloud instance."""

    model_config = SettingsConfigDict(env_prefix="IVCLOUD_", extra="ignore")

    data_dir: Path = Field(default=DEFAULT_DATA_DIR, description="Where embedded mode writes.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is SQLite at <data_dir>/ivcloud.db.",
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP and MQTT servers bind.")
    http_port: int = Field(default=8080, ge=0, le=65535)
    mqtt_port: int = Field(default=1883, ge=0, le=65535)
    mqtt_ws_port: int | None = Field(default=8083, ge=0, le=65535)
    public_url: str | None = Field(
        default=None,
        description="Base URL devices and apps use to reach HTTP (firmware downloads); "
        "default http://<host>:<http_port>.",
    )
    max_packet_size: int = Field(default=256 * 1024, ge=1024)
    report_batch_max: int = Field(default=500, ge=1, description="History rows per commit.")
    report_batch_delay_ms: float = Field(default=5.0, ge=0)
    report_queue_max: int = Field(default=20_000, ge=1)
    action_timeout_s: float = Field(default=5.0, gt=0)
    secret_key: str | None = Field(
        default=None,
        description="Key for signed URLs; default is generated into <data_dir>/secret-key. "
        "Set the same value on every instance of a scale-out deployment.",
    )
    admin_token: str | None = Field(
        default=None,
        description="Console API token; default is generated into <data_dir>/admin-token.",
    )
    log_level: str = Field(default="info")
    log_json: bool = Field(default=False)
    # -- accounts (App API users): verification codes and password hashing ---------------
    verification_code_ttl_s: int = Field(
        default=300, ge=30, description="How long a verification code stays valid."
    )
    verification_code_resend_s: int = Field(
        default=60, ge=0, description="Minimum time between two codes to one phone/email."
    )
    verification_code_max_attempts: int = Field(
        default=5, ge=1, description="Wrong guesses after which a code is dead."
    )
    verification_code_echo: bool = Field(
        default=True,
        description="Development code sender: print codes to stdout (no SMS/SMTP needed). "
        "Turn off in production; phone codes need a real sender plugged in there.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="Mail email verification codes through this server: "
        "smtp://user:pass@host:25, smtp+starttls://…:587 or smtps://…:465.",
    )
    smtp_from: str = Field(default="ivcloud@localhost", description="From: of code mails.")
    password_hash_time_cost: int = Field(default=3, ge=1, description="argon2id passes.")
    password_hash_memory_kib: int = Field(default=65536, ge=8, description="argon2id memory.")
    password_hash_parallelism: int = Field(default=4, ge=1, description="argon2id lanes.")
    # -- live video NAT traversal: ivcloud answers STUN; TURN is an external server -------
    stun_host: str | None = Field(
        default=None,
        description="UDP address the STUN listener binds; default: host. "
        "'::' = IPv6 and IPv4 (dual-stack).",
    )
    stun_port: int | None = Field(
        default=3478,
        ge=0,
        le=65535,
        description="UDP port ivcloud answers STUN on; 0 = a free port; 'off' = no listener.",
    )
    stun_public_host: str | None = Field(
        default=None,
        description="Host put into the stun: URL given to clients; default: "
        "the host of public_url, else the bind address.",
    )
    stun_rate_limit: int = Field(
        default=100, ge=0, description="STUN answers per source IP per second; 0 = unlimited."
    )
    turn_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="TURN server URLs handed to clients (turn:host:3478?transport=udp, "
        "turns:host:5349); JSON list or comma-separated.",
    )
    turn_secret: SecretStr | None = Field(
        default=None, description="The TURN server's static-auth-secret (coturn use-auth-secret)."
    )
    turn_ttl_seconds: int = Field(
        default=DEFAULT_TURN_TTL_S,
        ge=60,
        le=7 * 86400,
        description="Lifetime of minted TURN credentials.",
    )
    # -- stream hub (live video 1-to-N through the server) --------------------------------
    stream_gop_cache_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        description="Per stream: the tags since the last keyframe kept for joining viewers; "
        "a longer GOP is dropped (joiners then wait for the next keyframe).",
    )
    stream_viewer_backlog_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        description="Per viewer: bytes queued for a viewer before it is skipped to the next "
        "keyframe (a slow viewer never grows memory or stalls the others).",
    )
    stream_publisher_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="How long a viewer waits for the device to start pushing its stream.",
    )
    stream_linger_s: float = Field(
        default=5.0,
        ge=0,
        description="After the last viewer leaves, keep the upload this long (a quick "
        "re-open reuses it) before asking the device to stop.",
    )
    stream_max_viewers: int = Field(
        default=200, ge=1, description="Viewers per stream (device, channel, quality)."
    )
    # -- P2P sessions (WebRTC signalling through the cloud; docs/live-video.md) ------------
    p2p_answer_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long IvcloudP2PConnect waits for the device's answer (it gathers "
        "its ICE candidates, TURN allocation included, before answering).",
    )
    p2p_max_sessions_per_user: int = Field(
        default=16, ge=1, le=1000, description="Open P2P sessions per user (all devices)."
    )
    # -- TRTC calls (App::IotRTC::*): the maker's own TRTC application; docs/app-api.md ----
    trtc_sdk_app_id: int | None = Field(
        default=None,
        ge=1,
        le=2**32 - 1,
        description="SdkAppId of the maker's TRTC application; unset = no TRTC calls.",
    )
    trtc_secret_key: SecretStr | None = Field(
        default=None, description="That application's UserSig secret key (never logged)."
    )
    trtc_usersig_ttl_s: int = Field(
        default=86400,
        ge=60,
        le=180 * 86400,
        description="Lifetime of minted UserSigs; also the longest a call is remembered.",
    )
    trtc_ring_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="An invited device that nobody joins within this time is free again.",
    )
    http_send_buffer_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="SO_SNDBUF of HTTP connections (the kernel doubles it): bounds what a "
        "viewer that stopped reading holds in kernel buffers; 0 = kernel autotuning.",
    )
    # -- cloud storage (event clips, thumbnails, timeline; docs/cloud-storage.md) ---------
    cloud_storage_retention_days: int = Field(
        default=7, ge=1, le=3650, description="Clips, events and thumbnails are kept this long."
    )
    cloud_storage_max_segment_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, description="Largest accepted fMP4 segment."
    )
    cloud_storage_max_thumbnail_bytes: int = Field(
        default=512 * 1024, ge=4 * 1024, description="Largest accepted event JPEG."
    )
    cloud_storage_clock_skew_s: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Device clock error tolerated by upload signatures and time ranges.",
    )
    cloud_storage_timezone: str = Field(
        default="UTC",
        description="IANA time zone of the App API's calendar days (Date, day timeline).",
    )
    cloud_storage_url_ttl_s: int = Field(
        default=3600, ge=60, le=7 * 86400, description="Lifetime of signed thumbnail URLs."
    )
    cloud_storage_cleanup_interval_s: float = Field(
        default=3600.0, gt=0, description="How often expired clips are removed."
    )
    # -- message centre (AppGetMessages; docs/app-api.md "Message centre") ----------------
    message_retention_days: int = Field(
        default=30, ge=1, le=3650, description="App messages older than this are removed."
    )
    message_max_per_user: int = Field(
        default=500, ge=10, le=100_000, description="Newest messages kept per user."
    )
    message_cleanup_interval_s: float = Field(
        default=3600.0, gt=0, description="How often old and surplus messages are removed."
    )

    @field_validator("cloud_storage_timezone")
    @classmethod
    def _check_cloud_storage_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("stun_port", mode="before")
    @classmethod
    def _stun_off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "disabled"):
            return None
        return value

    @field_validator("turn_urls", mode="before")
    @classmethod
    def _split_turn_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [u.strip() for u in text.split(",") if u.strip()]
        return value

    @field_validator("turn_urls")
    @classmethod
    def _check_turn_urls(cls, value: list[str]) -> list[str]:
        return [validate_turn_url(u) for u in value]

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        if self.turn_urls and self.turn_secret is None:
            raise ValueError("turn_urls need turn_secret (the TURN server's static-auth-secret)")
        return self

    @model_validator(mode="after")
    def _trtc_pair(self) -> Settings:
        if (self.trtc_sdk_app_id is None) != (self.trtc_secret_key is None):
            raise ValueError("trtc_sdk_app_id and trtc_secret_key are set together or not at all")
        return self

    @model_validator(mode="after")
    def _backlog_holds_a_gop(self) -> Settings:
        # A joining viewer is handed the whole GOP cache at once; a smaller backlog would
        # overflow on the next frame and throw the cached GOP away again.
        if self.stream_viewer_backlog_bytes < self.stream_gop_cache_bytes:
            raise ValueError("stream_viewer_backlog_bytes must be >= stream_gop_cache_bytes")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ivcloud.db').resolve()}"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"

    def base_url(self, http_port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{http_port or self.http_port}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from an optional TOML file (``[ivcloud]`` table or top level), the
    environment, and explicit overrides (``None`` overrides are ignored)."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            doc = tomllib.load(fh)
        file_values = dict(doc.get("ivcloud", doc))
    env = Settings()
    merged: dict[str, Any] = {**file_values}
    for name in Settings.model_fields:
        if name in env.model_fields_set:
            merged[name] = getattr(env, name)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    return Settings.model_validate(merged)
