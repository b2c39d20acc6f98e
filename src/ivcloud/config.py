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
