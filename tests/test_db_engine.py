"""The PostgreSQL engine's pool (storage/db.py): a pooled connection that sat idle is pinged
before it is handed out, and a dead one is replaced, without pinging every checkout (the
three round trips asyncpg's pre-ping costs each transaction). The connection dies at the
network edge: a TCP proxy between the engine and the suite's PostgreSQL drops it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine.url import make_url

from storage.db import autocommit_sessionmaker, create_engine, create_sessionmaker
from tests.harness import database
from tests.harness.tcp_proxy import TcpProxy


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[str, TcpProxy]]:
    """A fresh PostgreSQL database reached through a TCP proxy (PostgreSQL in both passes)."""
    url = await database.create_database(tmp_path, base=database.postgres_base())
    parsed = make_url(url)
    proxy = await TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432)).start()
    try:
        yield parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        await proxy.close()
        await database.drop_database(url)


async def test_a_pooled_connection_dropped_while_idle_is_replaced(proxied: tuple[str, TcpProxy]) -> None:
    url, proxy = proxied
    engine = create_engine(url, ping_after=0.0)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        await proxy.drop()  # the pooled connection is dead; the pool does not know yet
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 2"))).scalar_one() == 2
        assert proxy.accepted == 2  # pinged, found dead, replaced by a new one
    finally:
        await engine.dispose()


async def test_without_the_ping_the_dead_connection_fails_the_next_query(proxied: tuple[str, TcpProxy]) -> None:
    """The check above is what saves that query: the same drop, a connection not idle long enough."""
    url, proxy = proxied
    engine = create_engine(url, ping_after=3600.0)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await proxy.drop()
        with pytest.raises(sa_exc.DBAPIError):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 2"))
        async with engine.connect() as conn:  # invalidated: the next one is new
            assert (await conn.execute(text("SELECT 3"))).scalar_one() == 3
    finally:
        await engine.dispose()


async def test_connections_in_steady_use_are_not_pinged(proxied: tuple[str, TcpProxy]) -> None:
    """Checked out again within the idle limit: handed out as they are (no round trip first),
    so a proxy that stopped forwarding is not noticed at checkout, only by the query."""
    url, proxy = proxied
    engine = create_engine(url, ping_after=3600.0)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        for _ in range(3):
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        assert proxy.accepted == 1
    finally:
        await engine.dispose()


async def test_autocommit_sessions_commit_each_statement(tmp_path: Path) -> None:
    """The alert's claim runs in autocommit (no BEGIN/COMMIT): its write is visible to others
    at once, on either database, without a commit call."""
    url = await database.create_database(tmp_path)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        quick = autocommit_sessionmaker(create_sessionmaker(engine))
        async with quick() as session:
            await session.execute(text("INSERT INTO t (n) VALUES (7)"))
            async with engine.connect() as other:
                assert (await other.execute(text("SELECT n FROM t"))).scalar_one() == 7
        async with engine.connect() as conn:  # the pool's connection is back in its usual mode
            await conn.execute(text("INSERT INTO t (n) VALUES (8)"))
            await conn.rollback()
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        await engine.dispose()
        await database.drop_database(url)
