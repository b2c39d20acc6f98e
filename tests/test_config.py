"""Settings precedence: defaults < TOML file < environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivcloud.config import Settings, load_settings


def test_defaults_are_embedded_mode(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.sqlalchemy_url == f"sqlite+aiosqlite:///{(tmp_path / 'ivcloud.db').resolve()}"
    assert (s.http_port, s.mqtt_port, s.mqtt_ws_port) == (8080, 1883, 8083)
    assert s.admin_token_file == tmp_path / "admin-token"
    assert s.base_url(9000) == "http://127.0.0.1:9000"


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "ivcloud.toml"
    toml.write_text('[ivcloud]\nhttp_port = 9001\nmqtt_port = 9002\nlog_level = "debug"\n')
    monkeypatch.setenv("IVCLOUD_MQTT_PORT", "9003")
    s = load_settings(toml, log_level=None, host="0.0.0.0")
    assert s.http_port == 9001  # file
    assert s.mqtt_port == 9003  # environment beats file
    assert s.log_level == "debug"  # None overrides are ignored
    assert s.host == "0.0.0.0"
    assert s.base_url(s.http_port) == "http://127.0.0.1:9001"


def test_invalid_values_are_refused(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("http_port = 70000\n")
    with pytest.raises(ValueError, match="http_port"):
        load_settings(toml)


def test_public_url_wins(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, public_url="https://iot.example.com/")
    assert s.base_url(8080) == "https://iot.example.com"
