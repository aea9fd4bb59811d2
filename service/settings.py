"""Service configuration from the environment (pydantic-settings).

Variable names are the original Rust service's (``C2S_TOKEN``, ``WORK_API``, ...) so an
existing Fly app's secrets keep working. Defaults point at the local emulators and their
default credentials, so ``python -m service`` works out of the box next to ``perflib serve``.
Secrets are ``SecretStr``: their ``repr``/``str`` print ``**********``, never the value.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    # upstreams
    c2s_base_url: str = "http://127.0.0.1:9001"
    c2s_token: SecretStr = SecretStr("emulator-c2s-token")
    diretrix_base_url: str = "http://127.0.0.1:9002"
    diretrix_user: str = "emulator-user"
    diretrix_pass: SecretStr = SecretStr("emulator-pass")
    work_api_url: str = "http://127.0.0.1:9003"
    # WORKER_API_KEY was the original's alternative name.
    work_api: SecretStr = Field(
        SecretStr("emulator-work-token"),
        validation_alias=AliasChoices("WORK_API", "WORKER_API_KEY"),
    )

    # per-call timeouts (seconds): our limits (docs/service.md#sources)
    c2s_timeout_s: float = 10.0
    diretrix_timeout_s: float = 10.0
    work_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_connections_per_upstream: int = 50
    # upstream courtesy (service/breaker.py)
    breaker_failures: int = Field(5, ge=1)  # consecutive failures that open a circuit
    breaker_open_s: float = Field(10.0, gt=0)  # how long it stays open after them
    max_retry_after_s: float = Field(300.0, ge=0)  # a Retry-After is believed up to this

    # the request as a whole
    pipeline_deadline_s: float = 28.0  # answers success:false before the 30 s middleware cut
    request_timeout_s: float = 30.0
    max_body_bytes: int = 1_048_576
    recent_cpf_window_s: float = 60.0
    # an in-flight marker older than request_timeout_s + this was left by a dead process
    in_flight_margin_s: float = Field(10.0, ge=0)
    income_multiplier: float = 1.9

    # database; DB_URL was the original's alternative name
    database_url: str = Field(
        "sqlite+aiosqlite:///./c2s.db", validation_alias=AliasChoices("DATABASE_URL", "DB_URL")
    )
    db_schema: str | None = None  # PostgreSQL only: search_path (lets tests isolate themselves)
    db_pool_size: int = 10
    db_pool_timeout_s: float = 10.0
    health_db_cache_s: float = 1.0  # /health reuses a DB ping this recent
    health_db_timeout_s: float = 2.0
    health_write_failures: int = Field(3, ge=1)  # consecutive failed writes -> "degraded"

    # hostile clients (service/server.py)
    max_header_bytes: int = Field(16_384, ge=8_192, le=65_536)  # request line + headers -> 431
    header_timeout_s: float = Field(10.0, gt=0)  # a head must arrive in full within this -> 408
    keepalive_timeout_s: float = Field(5.0, gt=0)  # idle keep-alive connections are closed
    max_connections: int = Field(1_000, ge=1)  # open connections beyond this get 503 and close

    # process
    port: int = 8081
    # BIND_HOST, not HOST: some shells export HOST as the machine name.
    bind_host: str = "0.0.0.0"
    log_level: str = "info"
    run_migrations: bool = True

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in {"critical", "error", "warning", "info", "debug", "trace"}:
            raise ValueError(
                f"LOG_LEVEL must be one of critical/error/warning/info/debug, not {v!r}"
            )
        return v

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str) -> str:
        """Accept the plain URLs people paste (postgres://, sqlite://) and pick async drivers."""
        for plain, asyncd in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if v.startswith(plain):
                return asyncd + v[len(plain) :]
        return v

    @field_validator("c2s_base_url", "diretrix_base_url", "work_api_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def secrets(self) -> list[str]:
        """Secret values, for the log redaction filter (defence in depth)."""
        vals = [self.c2s_token, self.diretrix_pass, self.work_api]
        out = [s.get_secret_value() for s in vals if s.get_secret_value()]
        pw = _url_password(self.database_url)
        if pw:
            out.append(pw)
        return out

    def safe_database_url(self) -> str:
        """The database URL with any password masked, fit for logs."""
        pw = _url_password(self.database_url)
        return self.database_url.replace(pw, "***") if pw else self.database_url


def _url_password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # noqa: BLE001 - a malformed URL has no password to hide
        return None
