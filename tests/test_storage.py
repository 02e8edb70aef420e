"""Storage: migrations match the models, one mailbox per user and one claim per API token and
idempotency key are database rules, secrets are encrypted with rotating keys, and the key file
is created private."""

from __future__ import annotations

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.crypto import SecretBox, load_or_create_keys
from storage.db import alembic_config, create_engine, create_sessionmaker, migrate
from storage.models import Base, IdempotencyKey, Mailbox, Service, User
from tests.harness import database


async def test_migrations_match_models(db_url: str) -> None:
    await migrate(db_url)
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    await engine.dispose()
    assert diff == []


async def test_one_mailbox_per_user_is_enforced_by_the_database(db_url: str) -> None:
    await migrate(db_url)
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as s:
            s.add(User(id=777001, language="en"))
            service = Service(code="t-one", kind="other", name_en="T", name_ru="T")
            s.add(service)
            await s.flush()

            def box() -> Mailbox:
                return Mailbox(
                    user_id=777001, service_id=service.id, email="a@b.c", login="a@b.c", secret_enc="x",
                    imap_host="h", imap_port=993, imap_security="ssl", smtp_host="h", smtp_port=465, smtp_security="ssl",
                )

            s.add(box())
            await s.flush()
            s.add(box())
            with pytest.raises(IntegrityError):
                await s.flush()
            await s.rollback()
    finally:
        await engine.dispose()


def test_secret_box_round_trip_and_rotation() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = SecretBox([old]).encrypt("pässword")
    assert "pässword" not in token
    rotated = SecretBox([new, old])
    assert rotated.decrypt(token) == "pässword"
    assert SecretBox([new]).decrypt(rotated.rotate(token)) == "pässword"
    with pytest.raises(ValueError):
        SecretBox([new]).decrypt(token)
    assert "pässword" not in repr(rotated)


def test_key_file_created_private(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "sub" / "encryption.key"
    keys = load_or_create_keys(None, key_file)
    assert len(keys) == 1 and key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_file.resolve()) in caplog.text
    assert keys[0] not in caplog.text
    assert load_or_create_keys(None, key_file) == keys  # reused on the next start
    assert load_or_create_keys("k1, k2", key_file) == ["k1", "k2"]  # configuration wins


async def test_one_claim_per_token_and_idempotency_key_is_enforced_by_the_database(db_url: str) -> None:
    await migrate(db_url)
    engine = create_engine(db_url)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as s:
            for token_hash in ("a" * 64, "b" * 64):  # the same key under another token is another key
                s.add(IdempotencyKey(token_hash=token_hash, key="k-1", request_hash="c" * 64))
            await s.commit()
            s.add(IdempotencyKey(token_hash="a" * 64, key="k-1", request_hash="d" * 64))
            with pytest.raises(IntegrityError):
                await s.commit()
            await s.rollback()
    finally:
        await engine.dispose()


async def _two_mailboxes(engine: AsyncEngine, uids: tuple[int, int]) -> None:
    """A service and two connected mailboxes of users `uids`, for the lease migrations' tests."""
    async with create_sessionmaker(engine)() as s:
        service = Service(code="t-lease", kind="other", name_en="T", name_ru="T")
        s.add(service)
        s.add_all([User(id=uid, language="en") for uid in uids])
        await s.flush()
        for uid in uids:
            s.add(Mailbox(
                user_id=uid, service_id=service.id, email=f"{uid}@lease.test", login="l", secret_enc="x",
                imap_host="h", imap_port=1, imap_security="ssl", smtp_host="h", smtp_port=1,
                smtp_security="ssl", state="connected",
            ))
        await s.commit()


async def test_leases_held_before_their_own_table_are_carried_over_and_back(tmp_path: Path) -> None:
    """Migration 0011 moves the mailbox leases out of `mailboxes` into `mailbox_leases`: an
    instance holding a lease at the upgrade still holds it after, and a downgrade puts it back.
    (A database of its own: the suite's shared one is at head already.)"""
    db_url = await database.create_database(tmp_path)
    config = alembic_config(db_url)
    await asyncio.to_thread(command.upgrade, config, "0010")
    engine = create_engine(db_url)
    try:
        await _two_mailboxes(engine, (777101, 777102))
        async with engine.begin() as conn:
            await conn.execute(text(
                "UPDATE mailboxes SET lease_owner = 'host:1:abc', lease_until = CURRENT_TIMESTAMP "
                "WHERE user_id = 777101"
            ))
        await asyncio.to_thread(command.upgrade, config, "0011")
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT m.user_id, l.owner, l.until IS NOT NULL FROM mailbox_leases l "
                "JOIN mailboxes m ON m.id = l.mailbox_id"
            ))).all()
            assert [tuple(r) for r in rows] == [(777101, "host:1:abc", True)]
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("mailboxes")})
            assert not {"lease_owner", "lease_until"} & columns
        await asyncio.to_thread(command.downgrade, config, "0010")
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT user_id, lease_owner, lease_until IS NOT NULL FROM mailboxes ORDER BY user_id"
            ))).all()
            assert [tuple(r) for r in rows] == [(777101, "host:1:abc", True), (777102, None, False)]
    finally:
        await engine.dispose()
        await database.drop_database(db_url)


async def test_leases_outlive_the_column_of_their_own_end_and_get_it_back(tmp_path: Path) -> None:
    """Migration 0012 drops mailbox_leases.until (a lease lasts as long as its owner's
    heartbeat): the owners stay; a downgrade gives every held lease one lifetime from then
    and leaves the free ones without an end."""
    db_url = await database.create_database(tmp_path)
    config = alembic_config(db_url)
    await asyncio.to_thread(command.upgrade, config, "0011")
    engine = create_engine(db_url)
    try:
        await _two_mailboxes(engine, (777201, 777202))
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO mailbox_leases (mailbox_id, owner, until) "
                "SELECT id, CASE WHEN user_id = 777201 THEN 'host:1:abc' END, CURRENT_TIMESTAMP FROM mailboxes"
            ))
        await migrate(db_url)
        query = (
            "SELECT m.user_id, l.owner{} FROM mailbox_leases l JOIN mailboxes m ON m.id = l.mailbox_id "
            "ORDER BY m.user_id"
        )
        async with engine.connect() as conn:
            rows = (await conn.execute(text(query.format("")))).all()
            assert [tuple(r) for r in rows] == [(777201, "host:1:abc"), (777202, None)]
            columns = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("mailbox_leases")})
            assert columns == {"mailbox_id", "owner"}
        before = datetime.now(UTC)
        await asyncio.to_thread(command.downgrade, config, "0011")
        async with engine.connect() as conn:
            rows = (await conn.execute(text(query.format(", l.until")))).all()
        assert [tuple(r)[:2] for r in rows] == [(777201, "host:1:abc"), (777202, None)]
        held_until = rows[0][2] if isinstance(rows[0][2], datetime) else datetime.fromisoformat(rows[0][2])
        held_until = held_until if held_until.tzinfo else held_until.replace(tzinfo=UTC)
        assert before + timedelta(seconds=19) < held_until < datetime.now(UTC) + timedelta(seconds=21)
        assert rows[1][2] is None
    finally:
        await engine.dispose()
        await database.drop_database(db_url)
