"""API_RATE_PER_MINUTE: each API token gets its own budget; past it, 429 rate_limited with
Retry-After, and nothing is done (a letter is not sent). With REDIS_URL the budget is one for
every instance sharing the Redis (the real Redis on 127.0.0.1:6379, a fresh key prefix per
test)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.app import create_api_rate_limit
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.plugin_app import BotHarness
from tests.test_api import TOKEN, TOKEN2, Api, error_of, new_user
from web.app import WebServer, create_web_app
from web.context import WebContext
from web.ratelimit import MemoryRateLimit, RateLimit, RedisRateLimit, caller_key

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix no other test (or parallel run) uses; its keys are deleted afterwards."""
    prefix = f"test-mailbridge:{uuid.uuid4().hex}:"
    yield prefix
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def memory_limit(per_minute: int, clock: Callable[[], float], prefix: str) -> RateLimit:
    return MemoryRateLimit(per_minute, clock=clock)


def redis_limit(per_minute: int, clock: Callable[[], float], prefix: str) -> RateLimit:
    return RedisRateLimit.from_url(REDIS_URL, per_minute, prefix=prefix, clock=clock)

LINKS = "/api/v1/items/deal/D-1/links"


async def test_each_token_has_its_own_budget(harness: BotHarness, mail_user: MailUser, mail_stack: MailStack) -> None:
    # 6 a minute: one more every 10 s, so a slow machine can't refill the budget mid-test
    await harness.start(api_tokens=f"{TOKEN}, {TOKEN2}", web_port=0, api_rate_per_minute=6)
    api = Api(harness)
    try:
        await api.employee(7401, mail_user)
        for _ in range(5):
            status, _data = await api.call("GET", LINKS)
            assert status == 200
        to = new_user(mail_stack)
        status, data = await api.send({"user_id": 7401, "to": [to.address], "text": "the 6th request"})
        assert status == 200, data
        before = len(mail_stack.submitted)
        status, data = await api.send({"user_id": 7401, "to": [to.address], "text": "one too many"})
        assert status == 429 and error_of(data)[0] == "rate_limited"
        assert 1 <= int(api.last_headers["Retry-After"]) <= 10
        assert len(mail_stack.submitted) == before  # nothing was sent
        # the other token is not affected; neither are the public document and health
        status, _data = await api.call("GET", LINKS, token=TOKEN2)
        assert status == 200
        status, _data = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200
        status, _data = await api.call("GET", "/health", token=None)
        assert status == 200
        # a wrong token is refused as such, not counted against anyone
        status, data = await api.call("GET", LINKS, token="x" * 32)
        assert status == 401
    finally:
        await api.close()


@pytest.mark.parametrize("make", [memory_limit, redis_limit], ids=["memory", "redis"])
async def test_the_budget_refills_evenly(make: Any, redis_prefix: str) -> None:
    now = [1_000_000.0]
    limit = make(60, lambda: now[0], redis_prefix)
    unlimited = make(0, lambda: now[0], redis_prefix)
    try:
        assert [await limit.take("a") for _ in range(60)] == [0] * 60  # a minute's worth at once
        assert await limit.take("a") == pytest.approx(1.0)  # then one a second
        assert await limit.take("b") == 0  # each token on its own
        now[0] += 0.5
        assert await limit.take("a") == pytest.approx(0.5)
        now[0] += 0.5
        assert await limit.take("a") == 0 and await limit.take("a") > 0
        now[0] += 3600
        assert [await limit.take("a") for _ in range(60)] == [0] * 60  # never above a minute's worth
        assert await limit.take("a") > 0
        assert all([await unlimited.take("a") == 0 for _ in range(100)])
    finally:
        await limit.close()
        await unlimited.close()


async def test_redis_budget_on_redis_time_expires(redis_prefix: str) -> None:
    """Without a test clock the script uses Redis's own TIME (one clock for the fleet); a
    bucket's key lives no longer than a full refill takes."""
    limit = RedisRateLimit.from_url(REDIS_URL, 2, prefix=redis_prefix)
    try:
        assert await limit.take("k") == 0 and await limit.take("k") == 0
        wait = await limit.take("k")
        assert 0 < wait <= 30.0  # one more every 30 s at 2 a minute
        ttl_ms = await limit.redis.pttl(redis_prefix + "k")
        assert 0 < ttl_ms <= 61_000
    finally:
        await limit.close()


async def test_the_wiring_chooses_redis_when_redis_url_is_set(harness: BotHarness) -> None:
    assert isinstance(create_api_rate_limit(harness.settings(api_rate_per_minute=5)), MemoryRateLimit)
    shared = create_api_rate_limit(harness.settings(api_rate_per_minute=5, redis_url=REDIS_URL))
    try:
        assert isinstance(shared, RedisRateLimit) and shared.per_minute == 5
    finally:
        await shared.close()


async def test_two_instances_share_one_budget_through_redis(harness: BotHarness, redis_prefix: str) -> None:
    """Two web apps (as two instances would run them) with their own Redis clients: a token's
    6 a minute are 6 in all, whichever instance serves them; the other token keeps its own."""
    await harness.start(api_tokens=f"{TOKEN}, {TOKEN2}", web_port=0, api_rate_per_minute=0)
    app = harness.app
    servers = []
    for _ in range(2):
        ctx = WebContext(
            app.settings, app.sessionmaker, app.engine, app.deps, app.watchers.states, app.catalog,
            RedisRateLimit.from_url(REDIS_URL, 6, prefix=redis_prefix),
        )
        server = WebServer(create_web_app(ctx), "127.0.0.1", 0)
        await server.start()
        servers.append((server, ctx))

    async def get(n: int, token: str = TOKEN) -> tuple[int, str | None]:
        url = f"http://127.0.0.1:{servers[n][0].port}{LINKS}"
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, resp.headers.get("Retry-After")

    try:
        async with aiohttp.ClientSession() as http:
            assert [(await get(i % 2))[0] for i in range(6)] == [200] * 6
            for n in (0, 1):
                status, retry_after = await get(n)
                assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 10
            assert (await get(1, TOKEN2))[0] == 200
        # one bucket per token in Redis, named by a digest of the token (never the token)
        keys = {k.decode() async for k in servers[0][1].rate_limit.redis.scan_iter(match=redis_prefix + "*")}  # type: ignore[attr-defined]
        assert keys == {redis_prefix + caller_key(TOKEN.encode()), redis_prefix + caller_key(TOKEN2.encode())}
    finally:
        for server, ctx in servers:
            await server.close()
            await ctx.rate_limit.close()


async def test_zero_means_no_limit(harness: BotHarness) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0, api_rate_per_minute=0)
    api = Api(harness)
    try:
        statuses = [(await api.call("GET", LINKS))[0] for _ in range(150)]
        assert set(statuses) == {200}
    finally:
        await api.close()


async def test_rate_limit_is_documented(harness: BotHarness) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0)
    api = Api(harness)
    try:
        status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                if not op["security"]:
                    continue  # public: health
                limited = op["responses"]["429"]
                assert limited["x-error-codes"] == ["rate_limited"], (method, path)
                assert "Retry-After" in limited["headers"]
    finally:
        await api.close()


async def test_a_redis_that_does_not_answer_refuses_the_request(harness: BotHarness, redis_prefix: str) -> None:
    """No silent fallback to "no limit": the API answers 500 internal and does nothing."""
    await harness.start(api_tokens=TOKEN, web_port=0, api_rate_per_minute=0)
    app = harness.app
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    ctx = WebContext(
        app.settings, app.sessionmaker, app.engine, app.deps, app.watchers.states, app.catalog,
        RedisRateLimit.from_url(f"redis://127.0.0.1:{dead}/0", 6, prefix=redis_prefix),
    )
    server = WebServer(create_web_app(ctx), "127.0.0.1", 0)
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{server.port}{LINKS}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as resp:
            assert resp.status == 500
            assert error_of(await resp.json())[0] == "internal"
    finally:
        await server.close()
        await ctx.rate_limit.close()
