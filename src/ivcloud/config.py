"""Configuration: ``IVCLOUD_*`` environment variables and an optional TOML file.

Everything the embedded mode writes lives under one data directory, so a demo can be thrown
away with one ``rm -r``.  Precedence: explicit arguments > environment > TOML file > defaults.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

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
