"""Settings parse the operator-facing names, and `python -m bot` without a token says how to get one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import DEFAULT_DATABASE_URL, DEFAULT_TELEGRAM_API_URL, Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_and_env_names(monkeypatch) -> None:
    for name in list(os.environ):
        if name in {"BOT_TOKEN", "DATABASE_URL", "ADMIN_IDS", "ENCRYPTION_KEYS", "TELEGRAM_API_URL"}:
            monkeypatch.delenv(name)
    s = Settings(_env_file=None)
    assert s.database_url == DEFAULT_DATABASE_URL and s.telegram_api_url == DEFAULT_TELEGRAM_API_URL
    assert s.allow_private_mail_hosts is False and s.enable_postman_oauth2 is False
    monkeypatch.setenv("BOT_TOKEN", "1:abc")
    monkeypatch.setenv("ADMIN_IDS", "1, 22,333")
    monkeypatch.setenv("ALLOW_PRIVATE_MAIL_HOSTS", "true")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    monkeypatch.setenv("MAIL_PROVIDER_OVERRIDES", '{"gmail": {"imap": {"host": "h", "port": 1, "security": "ssl"}}}')
    monkeypatch.setenv("enablePostmanOauth2", "true")
    s = Settings(_env_file=None)
    assert s.admin_ids == [1, 22, 333]
    assert s.allow_private_mail_hosts is True
    assert s.telegram_api_url == "http://127.0.0.1:8081"
    assert s.mail_provider_overrides["gmail"]["imap"]["port"] == 1
    assert s.enable_postman_oauth2 is True
    assert "1:abc" not in repr(s)


def test_start_without_token_explains(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOT_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "BOT_TOKEN" in proc.stderr and "@BotFather" in proc.stderr


def test_env_example_lists_every_setting_and_empty_values_mean_unset(tmp_path: Path, monkeypatch) -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    names = {line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")}
    expected = {(f.alias or name).upper() if (f.alias or name) != "enablePostmanOauth2" else "enablePostmanOauth2"
                for name, f in Settings.model_fields.items()}
    assert expected == names
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(example, encoding="utf-8")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.bot_token is None and s.mail_ca_file is None and s.encryption_keys is None and s.redis_url is None


async def test_python_m_bot_starts_polls_and_stops(tmp_path: Path, fake_telegram) -> None:
    """The real entry point, as an operator runs it: settings from the environment, migrations
    applied to a fresh SQLite file, a key file generated, polling against the (fake) Bot API,
    a clean stop on SIGTERM."""
    import asyncio
    import signal

    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "DATABASE_", "ENCRYPTION_"))}
    env.update({
        "PYTHONPATH": str(ROOT),
        "BOT_TOKEN": fake_telegram.token,
        "TELEGRAM_API_URL": fake_telegram.base_url,
    })
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await fake_telegram.wait_polling(timeout=60)
        user = fake_telegram.user(4242)
        await user.send("/start")  # production polling handles updates as tasks: wait for the reply
        reply = await user.wait_for(lambda m: "📬 Connect mail" in m.labels, timeout=15)
        assert "Hello" in reply.text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert (tmp_path / "data" / "mailbridge.sqlite3").exists()
    key_file = tmp_path / "data" / "encryption.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert str(key_file.resolve()) in err.decode()  # the log says where the new key is
    assert fake_telegram.calls_of("setMyCommands")


def test_fleet_settings(monkeypatch) -> None:
    s = Settings(_env_file=None)
    assert (s.watch_lease_ttl, s.watch_lease_renew, s.alert_retry_interval, s.shutdown_grace) == (20, 5, 30, 10)
    monkeypatch.setenv("INSTANCE_ID", "web-1")
    monkeypatch.setenv("WATCH_LEASE_TTL", "8")
    monkeypatch.setenv("WATCH_LEASE_RENEW", "2")
    s = Settings(_env_file=None)
    assert (s.instance_id, s.watch_lease_ttl, s.watch_lease_renew) == ("web-1", 8, 2)
    monkeypatch.setenv("WATCH_LEASE_RENEW", "5")  # renewing later than half the lease: refused
    with pytest.raises(ValidationError, match="WATCH_LEASE_RENEW"):
        Settings(_env_file=None)


def test_webhook_settings(monkeypatch) -> None:
    """WEBHOOK_URL must be https (Telegram's rule); the secret follows Telegram's alphabet and is
    derived from the token when not set, so every instance agrees on it; neither is echoed."""
    import pytest
    from pydantic import ValidationError

    s = Settings(_env_file=None, bot_token="1:abc", webhook_url="https://bot.example.com/tg/hook")
    assert s.webhook_path == "/tg/hook" and s.web_enabled
    derived = s.webhook_secret_token()
    assert derived == Settings(_env_file=None, bot_token="1:abc").webhook_secret_token()
    assert derived != Settings(_env_file=None, bot_token="2:abc").webhook_secret_token()
    assert "1:abc" not in derived and len(derived) == 64
    assert Settings(_env_file=None, bot_token="1:abc", webhook_secret="s3cret_-X").webhook_secret_token() == "s3cret_-X"
    with pytest.raises(ValidationError, match="https"):
        Settings(_env_file=None, webhook_url="http://bot.example.com/hook")
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None, webhook_secret="bad secret!")
    assert "bad secret!" not in str(err.value)
    assert not Settings(_env_file=None, database_url="postgresql+asyncpg://x/y").fleet
    assert Settings(_env_file=None, database_url="postgresql+asyncpg://x/y", redis_url="redis://r").fleet
    assert not Settings(_env_file=None, redis_url="redis://r").fleet  # SQLite: one instance anyway
