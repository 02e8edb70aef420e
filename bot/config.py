"""Settings, read from the environment and `.env` (see `.env.example` for every variable)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/mailbridge.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        # a validation error never repeats the value: URLs carry passwords, secrets are secrets
        hide_input_in_errors=True,
    )

    bot_token: SecretStr | None = None
    telegram_api_url: str = DEFAULT_TELEGRAM_API_URL
    # the largest file the bot takes from the chat (attachments of an answer): 20 MB through
    # Telegram's Bot API; a self-hosted Bot API server (TELEGRAM_API_URL) has its own limit
    telegram_download_limit: int = Field(default=20 * 1024 * 1024, ge=1)
    database_url: str = DEFAULT_DATABASE_URL
    encryption_keys: SecretStr | None = None
    encryption_key_file: Path = Path("data/encryption.key")
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    allow_private_mail_hosts: bool = False
    mail_ca_file: Path | None = None
    mail_timeout: float = Field(default=15.0, gt=0, le=300)
    import_limit: int = Field(default=50, ge=1, le=500)
    enable_postman_oauth2: bool = Field(default=False, alias="enablePostmanOauth2")
    # where the OAuth2 provider sends the browser back (the bot's own web server, below)
    public_url: str | None = None
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    # the business-process HTTP API (web/): bearer tokens, comma-separated; none = not served
    api_tokens: SecretStr | None = None
    api_max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=64 * 1024)
    api_max_attachments_bytes: int = Field(default=20 * 1024 * 1024, ge=0)
    api_rate_per_minute: int = Field(default=120, ge=0, le=100_000)  # per token; 0: no limit
    mail_provider_overrides: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    watch_idle_refresh: float = Field(default=290.0, ge=5, le=1740)
    watch_outage_notice: float = Field(default=1800.0, ge=1)
    watch_start_rate: float = Field(default=50.0, gt=0)
    telegram_global_rate: float = Field(default=30.0, gt=0, le=1000)
    # a fleet of instances sharing one database (services/fleet.py): this instance's id
    # (default <host>:<pid>:<random>), how long a mailbox lease lasts and how often it is renewed
    instance_id: str | None = Field(default=None, max_length=64)
    watch_lease_ttl: float = Field(default=20.0, ge=1, le=600)
    watch_lease_renew: float = Field(default=5.0, gt=0, le=300)
    # pending alerts (an earlier attempt certainly failed) are sent again this often
    alert_retry_interval: float = Field(default=30.0, gt=0, le=3600)
    # on SIGTERM: how long sends already on their way may take before the process exits
    shutdown_grace: float = Field(default=10.0, ge=0, le=120)
    # several instances (README "Running several instances"): Redis for conversation state and
    # per-user locking; every key starts with REDIS_PREFIX
    redis_url: str | None = None
    redis_prefix: str = Field(default="mailbridge", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # Telegram delivers updates to this HTTPS URL (any instance takes any update) instead of
    # one instance polling; the path is served by the bot's web server on WEB_HOST:WEB_PORT
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None  # empty: derived from BOT_TOKEN (see webhook_secret_token)
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _empty_flag_is_unset(cls, data: Any) -> Any:
        """`enablePostmanOauth2=` (empty) leaves the flag to the admin's /oauth_flag."""
        if isinstance(data, dict):
            for key in [k for k in data if str(k).lower() in {"enablepostmanoauth2", "enable_postman_oauth2"}]:
                if isinstance(data[key], str) and not data[key].strip():
                    data = {k: v for k, v in data.items() if k != key}
        return data

    @field_validator(
        "bot_token", "encryption_keys", "mail_ca_file", "redis_url", "public_url", "api_tokens",
        "webhook_url", "webhook_secret", "instance_id", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("mail_provider_overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("PUBLIC_URL must be an http(s) URL without query or fragment")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith("https://") or "#" in value:
            raise ValueError("WEBHOOK_URL must be an https:// URL (Telegram delivers only over HTTPS)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """Telegram's rule for secret_token: 1-256 of A-Z a-z 0-9 _ - (the value is not echoed)."""
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: SecretStr | None) -> SecretStr | None:
        """Split and trimmed; weak tokens are refused when the API starts
        (web.middleware.check_tokens), so no token ever appears in a settings validation error."""
        if value is None:
            return None
        tokens = [t.strip() for t in value.get_secret_value().split(",") if t.strip()]
        return SecretStr(",".join(tokens)) if tokens else None

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> Settings:
        if self.watch_lease_renew * 2 > self.watch_lease_ttl:
            raise ValueError("WATCH_LEASE_RENEW must be at most half of WATCH_LEASE_TTL (renew well before expiry)")
        return self

    @property
    def api_token_list(self) -> list[str]:
        """The configured API tokens (empty: the API is not served)."""
        return self.api_tokens.get_secret_value().split(",") if self.api_tokens else []

    @property
    def web_enabled(self) -> bool:
        """The web server runs for the OAuth2 callback (PUBLIC_URL) or the API (API_TOKENS)."""
        return bool(self.public_url or self.api_tokens or self.webhook_url)

    @property
    def webhook_path(self) -> str:
        """The path of WEBHOOK_URL, where the web server takes Telegram's POSTs."""
        return urlsplit(self.webhook_url or "").path or "/"

    def webhook_secret_token(self) -> str:
        """What Telegram sends back in X-Telegram-Bot-Api-Secret-Token: WEBHOOK_SECRET, or else
        HMAC-SHA256 of a fixed label keyed with BOT_TOKEN, so every instance agrees on it without
        one more setting and nobody without the token can forge updates."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        token = self.bot_token.get_secret_value() if self.bot_token else ""
        return hmac.new(token.encode(), b"mailbridge-webhook-secret", hashlib.sha256).hexdigest()

    @property
    def oauth_flag_configured(self) -> bool:
        """True when configuration sets enablePostmanOauth2 (then it wins over the admin's
        /oauth_flag, whose value is kept in the database)."""
        return "enable_postman_oauth2" in self.model_fields_set

    @property
    def fleet(self) -> bool:
        """Several instances may share the database: PostgreSQL and Redis (README "Running
        several instances"). Otherwise exactly one instance runs (bot/fleet.py enforces it)."""
        return bool(self.redis_url) and not self.is_sqlite

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
