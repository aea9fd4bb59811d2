"""Configuration from the environment: names as the original, secrets hidden, bad values refused."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.settings import Settings

ENV_NAMES = [
    "C2S_BASE_URL",
    "C2S_TOKEN",
    "DIRETRIX_BASE_URL",
    "DIRETRIX_USER",
    "DIRETRIX_PASS",
    "WORK_API_URL",
    "WORK_API",
    "WORKER_API_KEY",
    "DATABASE_URL",
    "DB_URL",
    "DB_SCHEMA",
    "PORT",
    "LOG_LEVEL",
    "DB_POOL_SIZE",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_emulators() -> None:
    s = Settings()
    assert s.c2s_token.get_secret_value() == "emulator-c2s-token"
    assert (s.diretrix_user, s.diretrix_pass.get_secret_value()) == (
        "emulator-user",
        "emulator-pass",
    )
    assert s.work_api.get_secret_value() == "emulator-work-token"
    assert (s.c2s_base_url, s.diretrix_base_url, s.work_api_url) == (
        "http://127.0.0.1:9001",
        "http://127.0.0.1:9002",
        "http://127.0.0.1:9003",
    )
    assert s.database_url == "sqlite+aiosqlite:///./c2s.db"
    assert (s.port, s.db_pool_size, s.log_level) == (8081, 10, "info")
    assert (s.c2s_timeout_s, s.diretrix_timeout_s, s.work_timeout_s) == (10, 10, 30)


def test_original_names_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C2S_TOKEN", "t-c2s")
    monkeypatch.setenv("WORKER_API_KEY", "t-work")
    monkeypatch.setenv("DB_URL", "postgres://u:hunter2@db:5432/app")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("C2S_BASE_URL", "https://api.contact2sale.com/")
    s = Settings()
    assert s.work_api.get_secret_value() == "t-work"
    assert s.database_url == "postgresql+asyncpg://u:hunter2@db:5432/app"
    assert s.safe_database_url() == "postgresql+asyncpg://u:***@db:5432/app"
    assert s.port == 8080 and s.log_level == "warning"
    assert s.c2s_base_url == "https://api.contact2sale.com"
    shown = repr(s) + str(s)
    for secret in ("t-c2s", "t-work", "emulator-pass"):
        assert secret not in shown
    assert set(s.secrets()) == {"t-c2s", "emulator-pass", "t-work", "hunter2"}


@pytest.mark.parametrize(
    ("name", "value"), [("LOG_LEVEL", "loud"), ("PORT", "eighty"), ("DB_POOL_SIZE", "x")]
)
def test_bad_values_are_refused(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert name.lower() in str(err.value)


def test_service_exits_2_on_bad_configuration() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "service"],
        env={"LOG_LEVEL": "loud", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "bad configuration" in r.stderr and "LOG_LEVEL must be one of" in r.stderr


def test_migration_failure_exits_1_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run(
        [sys.executable, "-m", "service.migrate"],
        env={
            "DATABASE_URL": f"postgresql+asyncpg://postgres:pw-9f8e7d@127.0.0.1:{port}/test",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("migration failed: ")
    assert "pw-9f8e7d" not in r.stderr + r.stdout
