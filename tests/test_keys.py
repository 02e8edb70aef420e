"""Encryption keys shared by instances: no fresh key when secrets are stored (or on PostgreSQL),
a clear stop when the keys can't read what is stored, and `python -m bot rotate-keys`.

These tests call `bot.__main__.main()` in the test process (synchronous tests: it runs its own
event loop), with settings from the environment as an operator gives them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from bot.__main__ import main
from storage.crypto import SecretBox
from storage.db import create_engine, create_sessionmaker, migrate
from storage.models import Mailbox, Service, User
from tests.harness.fleet import postgres_database

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def env(monkeypatch: pytest.MonkeyPatch, tmp: Path, db: str, keys: str | None) -> None:
    monkeypatch.chdir(tmp)
    for name in ("ENCRYPTION_KEYS", "ENCRYPTION_KEY_FILE", "REDIS_URL", "WEBHOOK_URL", "API_TOKENS", "PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOT_TOKEN", "123456:never-used")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DATABASE_URL", db)
    if keys is not None:
        monkeypatch.setenv("ENCRYPTION_KEYS", keys)


async def seed(db: str, key: str, users: int = 3) -> None:
    """Mailboxes with passwords and a service with an OAuth2 client secret, under `key`."""
    await migrate(db)
    engine = create_engine(db)
    box = SecretBox([key])
    async with create_sessionmaker(engine)() as s:
        service = Service(code="corp", kind="company", name_en="Corp", name_ru="Корп", domains="corp.example",
                          enabled=True, sort_order=1, oauth2_client_secret_enc=box.encrypt("client-secret"))
        s.add(service)
        await s.flush()
        for n in range(users):
            s.add(User(id=9000 + n, language="en"))
            await s.flush()
            s.add(Mailbox(user_id=9000 + n, service_id=service.id, email=f"u{n}@corp.example", login=f"u{n}",
                          secret_enc=box.encrypt(f"password-{n}"), imap_host="h", imap_port=993, imap_security="ssl",
                          smtp_host="h", smtp_port=465, smtp_security="ssl", state="connected"))
        await s.commit()
    await engine.dispose()


async def secrets_of(db: str) -> list[str]:
    engine = create_engine(db)
    async with create_sessionmaker(engine)() as s:
        rows = [t for (t,) in await s.execute(select(Mailbox.secret_enc).order_by(Mailbox.id))]
        rows += [t for (t,) in await s.execute(select(Service.oauth2_client_secret_enc).where(Service.code == "corp"))]
    await engine.dispose()
    return rows


def test_no_new_key_over_stored_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'k.sqlite3'}"
    asyncio.run(seed(db, OLD, users=1))
    env(monkeypatch, tmp_path, db, None)
    assert main([]) == 3
    err = capsys.readouterr().err
    assert "already holds 2 encrypted secret(s)" in err and "Set ENCRYPTION_KEYS" in err
    assert not (tmp_path / "data" / "encryption.key").exists()  # no key that could never read them
    assert not (tmp_path / "k.sqlite3.lock").read_text()  # the instance lock was let go


def test_keys_that_read_nothing_stop_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'k.sqlite3'}"
    asyncio.run(seed(db, OLD, users=2))
    env(monkeypatch, tmp_path, db, OTHER)
    assert main([]) == 3
    err = capsys.readouterr().err
    assert "cannot decrypt any of the 3 newest secrets" in err and "same ENCRYPTION_KEYS" in err
    assert OTHER not in err and OLD not in err


def test_no_key_file_on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    async def with_db() -> str:
        async with postgres_database() as db:
            env(monkeypatch, tmp_path, db, None)
            code = await asyncio.to_thread(main, [])
            return f"{code} {capsys.readouterr().err}"

    out = asyncio.run(with_db())
    assert out.startswith("3 ") and "the database is PostgreSQL" in out and "Fernet.generate_key" in out
    assert not (tmp_path / "data" / "encryption.key").exists()


def test_rotate_keys_reencrypts_everything_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'k.sqlite3'}"
    asyncio.run(seed(db, OLD, users=5))
    before = asyncio.run(secrets_of(db))
    env(monkeypatch, tmp_path, db, f"{NEW},{OLD}")
    assert main(["rotate-keys"]) == 0
    out = capsys.readouterr().out
    assert "6 re-encrypted with the first key, 0 already were" in out and "the others may be removed" in out
    after = asyncio.run(secrets_of(db))
    only_new = SecretBox([NEW])
    assert [only_new.decrypt(t) for t in after] == [f"password-{n}" for n in range(5)] + ["client-secret"]
    assert not set(before) & set(after)

    assert main(["rotate-keys"]) == 0  # again: nothing to do, nothing rewritten
    assert "0 re-encrypted with the first key, 6 already were" in capsys.readouterr().out
    assert asyncio.run(secrets_of(db)) == after

    env(monkeypatch, tmp_path, db, NEW)  # the old key dropped: everything still reads
    asyncio.run(seed_more(db, OTHER))  # one secret no configured key reads
    assert main(["rotate-keys"]) == 1
    captured = capsys.readouterr()
    assert "1 unreadable" in captured.out and "keep the old keys" in captured.err


async def seed_more(db: str, key: str) -> None:
    engine = create_engine(db)
    async with create_sessionmaker(engine)() as s:
        s.add(User(id=9999, language="en"))
        await s.flush()
        service = (await s.execute(select(Service).where(Service.code == "corp"))).scalar_one()
        s.add(Mailbox(user_id=9999, service_id=service.id, email="x@corp.example", login="x",
                      secret_enc=SecretBox([key]).encrypt("lost"), imap_host="h", imap_port=993, imap_security="ssl",
                      smtp_host="h", smtp_port=465, smtp_security="ssl", state="connected"))
        await s.commit()
    await engine.dispose()
