"""Several instances: real `python -m bot` processes against PostgreSQL, Redis and the fake Bot
API (tests/harness/fleet.py). They run on this machine's PostgreSQL even in the SQLite pass of
the suite (a database of their own per test)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import Settings
from bot.fleet import AnotherInstance, InstanceGuard, RenewedRedisIsolation, create_redis, redis_key
from tests.harness.fake_telegram import FakeTelegram
from tests.harness.fleet import (
    ROOT,
    Instance,
    bot_env,
    instances,
    postgres_database,
    redis_namespace,
)
from tests.harness.plugin_app import TEST_KEY, BotHarness

pytestmark = pytest.mark.timeout(300)  # each `python -m bot` spends ~2 s of CPU importing aiogram: minutes on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def alembic_versions(url: str) -> list[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return [row[0] for row in await conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        await engine.dispose()


async def test_three_instances_start_together_on_an_empty_postgres(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    """Started at the same moment on an empty database, all three come up (they take turns on
    the migrations and the service seed instead of racing on alembic_version), exactly one
    polls Telegram and nobody got a 409."""
    async with postgres_database() as db, redis_namespace() as (redis_url, prefix):
        env = bot_env(fake_telegram, db, TEST_KEY, REDIS_URL=redis_url, REDIS_PREFIX=prefix)
        fleet = [Instance(f"i{n}", env, tmp_path) for n in range(3)]
        async with instances(*fleet):
            for inst in fleet:
                await inst.wait_log("running: updates by polling", timeout=120)
            await fake_telegram.wait_polling(timeout=15)
            assert sum("polls Telegram (leader)" in inst.log() for inst in fleet) == 1
            assert all("Traceback" not in inst.log() for inst in fleet), [i.log()[-2000:] for i in fleet]
            assert len(await alembic_versions(db)) == 1
            user = fake_telegram.user(5101)
            await user.send("/start")
            await user.wait_for(lambda m: "📬 Connect mail" in m.labels, timeout=15)
        assert not [c for c in fake_telegram.calls_of("getUpdates") if c.status == 409]
    assert all(inst.proc is not None and inst.proc.returncode == 0 for inst in fleet)


MIGRATE_AT = """
import asyncio, logging, sys, time
from storage.db import migrate
logging.basicConfig(level=logging.INFO)
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # all of them at the same moment
asyncio.run(migrate(sys.argv[1]))
"""


async def test_migrations_started_at_the_same_moment_take_turns(tmp_path: Path) -> None:
    """The start-up's migration step (storage.db.migrate) in four processes released at the same
    instant on an empty database: all succeed, the schema is migrated once. (Without the
    advisory lock they raced on creating alembic_version.)"""
    async with postgres_database() as db:
        at = str(time.time() + 8)  # after every interpreter has imported SQLAlchemy and Alembic
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", MIGRATE_AT, db, at, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(4)
        ]
        outputs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), 120) for p in procs))
        for proc, (out, _) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, out.decode()[-3000:]
        logs = b"".join(out for out, _ in outputs).decode()
        assert logs.count("Running upgrade  -> 0001") == 1
        assert len(await alembic_versions(db)) == 1


async def test_second_instance_on_sqlite_is_refused(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'one.sqlite3'}"
    env = bot_env(fake_telegram, db, TEST_KEY)
    first = Instance("first", env, tmp_path)
    async with instances(first):
        await first.wait_log("running: updates by polling")
        second = await Instance("second", env, tmp_path).start()
        assert await second.wait_exit() == 3
        assert f"another mailbridge instance (pid {first.pid} " in second.log()
        assert "SQLite serves one instance" in second.log()
        assert first.proc is not None and first.proc.returncode is None  # untouched
        await fake_telegram.wait_polling(timeout=10)
    assert first.proc.returncode == 0
    guard = InstanceGuard(Settings(_env_file=None, database_url=db), "test")  # type: ignore[call-arg]
    await guard.acquire()  # the lock went with the first one
    await guard.close()


async def test_postgres_without_redis_runs_one_instance(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    """Without REDIS_URL conversation state lives in memory: one instance only, and neither a
    fleet instance nor a second lone one starts next to it."""
    async with postgres_database() as db, redis_namespace() as (redis_url, prefix):
        lone = Instance("lone", bot_env(fake_telegram, db, TEST_KEY), tmp_path)
        async with instances(lone):
            await lone.wait_log("running: updates by polling")
            again = Instance("again", bot_env(fake_telegram, db, TEST_KEY), tmp_path)
            fleet = Instance(
                "fleet", bot_env(fake_telegram, db, TEST_KEY, REDIS_URL=redis_url, REDIS_PREFIX=prefix), tmp_path
            )
            await asyncio.gather(again.start(), fleet.start())
            assert await again.wait_exit() == 3
            assert "another mailbridge instance is already running on this database" in again.log()
            assert f":{lone.pid}:" in again.log()  # names the one in the way (host:pid:...)
            assert await fleet.wait_exit() == 3
            assert "an instance without REDIS_URL is running on this database" in fleet.log()


async def test_polling_leader_dies_and_another_takes_over(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    async with postgres_database() as db, redis_namespace() as (redis_url, prefix):
        env = bot_env(fake_telegram, db, TEST_KEY, REDIS_URL=redis_url, REDIS_PREFIX=prefix)
        a, b = Instance("a", env, tmp_path), Instance("b", env, tmp_path)
        async with instances(a, b):
            for inst in (a, b):
                await inst.wait_log("running: updates by polling", timeout=120)
            await fake_telegram.wait_polling(timeout=15)
            leader, other = (a, b) if "polls Telegram (leader)" in a.log() else (b, a)
            assert "polls Telegram (leader)" in leader.log() and "polls Telegram (leader)" not in other.log()
            user = fake_telegram.user(5102)
            await user.send("/start")
            await user.wait_for(lambda m: "📬 Connect mail" in m.labels, timeout=15)

            leader.kill()  # kill -9: no goodbye, its lock goes with its connection
            await leader.wait_exit()
            started = asyncio.get_running_loop().time()
            await other.wait_log("polls Telegram (leader)", timeout=30)
            mark = user.mark()
            await user.send("/start", wait=False)  # if the leader died in the middle of this user's
            # update, their lock (Redis) lasts 10 s more at most
            await user.wait_for(lambda m: "📬 Connect mail" in m.labels, timeout=30, since=mark)
            assert asyncio.get_running_loop().time() - started < 45
        assert not [c for c in fake_telegram.calls_of("getUpdates") if c.status == 409 and not c.cancelled]


async def test_webhook_fleet_shares_the_conversation(tmp_path: Path, fake_telegram: FakeTelegram) -> None:
    """Three instances in webhook mode: Telegram's updates spread over them one by one, and the
    connect wizard goes on where the previous step (handled elsewhere) left it (Redis). No
    instance polls; a POST without the secret is refused."""
    async with postgres_database() as db, redis_namespace() as (redis_url, prefix):
        ports = [free_port() for _ in range(3)]
        fleet = [
            Instance(f"w{n}", bot_env(
                fake_telegram, db, TEST_KEY, REDIS_URL=redis_url, REDIS_PREFIX=prefix,
                WEBHOOK_URL="https://bot.example.com/telegram/hook", WEB_PORT=str(port),
            ), tmp_path)
            for n, port in enumerate(ports)
        ]
        targets = [f"http://127.0.0.1:{port}/telegram/hook" for port in ports]
        async with instances(*fleet):
            for inst in fleet:
                await inst.wait_log("running: updates by webhook", timeout=120)
            settings = Settings(_env_file=None, bot_token=fake_telegram.token)  # type: ignore[call-arg]
            assert fake_telegram.webhook_url == "https://bot.example.com/telegram/hook"
            assert fake_telegram.webhook_secret == settings.webhook_secret_token()
            assert {"message", "callback_query", "my_chat_member"} <= fake_telegram.allowed_updates
            assert len(fake_telegram.calls_of("setWebhook")) == 3

            user = fake_telegram.user(5103)
            forged = {"update_id": 999_999, "message": {
                "message_id": 1, "date": 0, "chat": user.chat_api(), "from": user.to_api(), "text": "/start",
            }}
            assert await fake_telegram.post_update(targets[0], forged, None) == 401
            assert await fake_telegram.post_update(targets[1], forged, "wrong-secret") == 401

            fake_telegram.webhook_targets = targets
            steps: list[tuple[str, str, str]] = [
                ("send", "/start", "📬 Connect mail"),
                ("press", "📬 Connect mail", "Which mail service"),
                ("press", "Gmail", "Send your e-mail address"),
                ("send", "someone@gmail.com", "Use someone@gmail.com"),
                ("press", "Use someone@gmail.com", "Send the password"),
            ]
            for action, what, expect in steps:
                mark = user.mark()
                if action == "send":
                    await user.send(what)
                else:
                    await user.press(what)
                await user.wait_for(lambda m, e=expect: e in m.text or e in m.labels, timeout=15, since=mark)  # type: ignore[misc]
        assert not fake_telegram.calls_of("getUpdates")
        used = {target for _, target, status in fake_telegram.deliveries if status == 200}
        assert used == set(targets)
        assert all("Traceback" not in inst.log() for inst in fleet), [i.log()[-2000:] for i in fleet]


async def test_poller_whose_lock_connection_drops_stops_and_polls_again(
    fake_telegram: FakeTelegram, mail_stack: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The leader checks its lock every few seconds: when PostgreSQL drops that connection (here
    terminated by an administrator), it stops polling at once, takes the lock again (nobody else
    wants it) and polls on; users notice nothing."""
    async with postgres_database() as db, redis_namespace() as (redis_url, prefix):
        harness = BotHarness(fake_telegram, mail_stack, db, tmp_path)
        await harness.start(redis_url=redis_url, redis_prefix=prefix)
        try:
            leader = harness.app.extra["leader"]
            leader.check = 0.5
            engine = create_async_engine(db)
            async with engine.connect() as conn:
                killed = (await conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name LIKE '%poller' AND datname = current_database()"
                ))).scalar()
            await engine.dispose()
            assert killed == 1
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while sum("polls Telegram (leader)" in r.getMessage() for r in caplog.records) < 2:
                assert loop.time() < deadline, "the poller did not take its lock again"
                await asyncio.sleep(0.1)
            assert any("polling leader lock lost" in r.getMessage() for r in caplog.records)
            await fake_telegram.wait_polling(timeout=15)
            user = harness.user(5104)
            await user.send("/start")
            assert "📬 Connect mail" in user.last().labels
        finally:
            await harness.stop()


async def test_instance_lock_is_taken_again_when_postgres_drops_its_connection() -> None:
    """The lone instance (no REDIS_URL) keeps its claim across a dropped connection: a second
    one started afterwards is still refused."""
    async with postgres_database() as db:
        settings = Settings(_env_file=None, database_url=db)  # type: ignore[call-arg]
        first = InstanceGuard(settings, "first-one", check=0.2)
        await first.acquire()
        try:
            engine = create_async_engine(db, isolation_level="AUTOCOMMIT")  # pg_stat_activity: fresh each time
            async with engine.connect() as conn:
                killed = [pid for pid, done in (await conn.execute(text(
                    "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'mailbridge first-one' AND datname = current_database()"
                ))).all() if done]
                assert len(killed) == 1
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 15
                # held again on a new connection (the terminated backend may still show its lock
                # for a moment while it exits: that one does not count)
                while not (await conn.execute(text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE a.application_name = 'mailbridge first-one' AND a.datname = current_database()"
                    " AND l.locktype = 'advisory' AND l.granted AND l.pid <> :killed"
                ), {"killed": killed[0]})).scalar():
                    assert loop.time() < deadline, "the lock was not taken again"
                    await asyncio.sleep(0.1)
            await engine.dispose()
            second = InstanceGuard(settings, "second-one")
            with pytest.raises(AnotherInstance, match="first-one"):
                await second.acquire()
        finally:
            await first.close()


async def test_one_users_updates_take_turns_across_instances() -> None:
    """The per-user update lock of two instances (each its own Redis client): the second waits
    while the first handles an update, even one longer than the lock's life (it is renewed);
    a lock left by a killed instance (never renewed, never released) is gone after its life."""
    async with redis_namespace() as (url, prefix):
        settings = Settings(_env_file=None, redis_url=url, redis_prefix=prefix)  # type: ignore[call-arg]
        clients = [create_redis(settings), create_redis(settings)]
        try:
            builder = DefaultKeyBuilder(prefix=redis_key(settings, "fsm"), with_bot_id=True)
            a, b = (RenewedRedisIsolation(c, builder, ttl=0.6) for c in clients)
            key = StorageKey(bot_id=1, chat_id=7, user_id=7)
            order: list[str] = []

            async def handle(iso: RenewedRedisIsolation, name: str, seconds: float) -> None:
                async with iso.lock(key):
                    order.append(f"{name} in")
                    await asyncio.sleep(seconds)
                    order.append(f"{name} out")

            first = asyncio.create_task(handle(a, "a", 2.0))  # more than three lock lives
            await asyncio.sleep(0.2)
            await asyncio.gather(first, handle(b, "b", 0))
            assert order == ["a in", "a out", "b in", "b out"]

            dead = clients[0].lock(builder.build(key, "lock"), timeout=0.6)
            assert await dead.acquire()  # what a killed instance leaves behind
            loop = asyncio.get_running_loop()
            started = loop.time()
            await handle(b, "b", 0)
            assert loop.time() - started < 5  # its life (0.6 s) at most, not forever
        finally:
            for c in clients:
                await c.aclose()
