"""Several instances of the bot, one Telegram budget: limiters sharing Redis (RedisBudget),
each on its own real aiogram Bot, against the fake Bot API enforcing Telegram's limits.

Redis runs on 127.0.0.1:6379; every test uses a key prefix of its own (deleted afterwards),
so parallel runs never share a budget."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from redis.asyncio import Redis

from bot.sender import TelegramSender
from bot.telegram_limits import LimitConfig, Priority, RedisBudget, install_limiter, use_priority
from tests.harness.fake_telegram import FakeTelegram, make_bot
from tests.test_sender import eventually, statuses

REDIS_URL = "redis://127.0.0.1:6379/0"
# the fake tolerates no per-chat burst: the limiters are told the same
LIMITS = LimitConfig(per_chat_burst=1)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test:tg:{uuid.uuid4().hex}"
    yield name
    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def fleet(fake_telegram: FakeTelegram, prefix: str) -> AsyncIterator[list[TelegramSender]]:
    """Two instances: two Bots, each with its own Redis connection and limiter, one budget."""
    senders: list[TelegramSender] = []
    bots: list[Bot] = []
    try:
        for n in range(2):
            bot = make_bot(fake_telegram)
            bots.append(bot)
            budget = RedisBudget(Redis.from_url(REDIS_URL), prefix, LIMITS, instance_id=f"i{n}", owns_client=True)
            install_limiter(bot, budget=budget)
            senders.append(TelegramSender(bot))
        yield senders
    finally:
        for sender in senders:
            await sender.limiter.close()
        for bot in bots:
            await bot.session.close()


@pytest.mark.timeout(40)
async def test_two_instances_keep_one_budget(fake_telegram: FakeTelegram, fleet: list[TelegramSender]) -> None:
    fake = fake_telegram
    fake.rate_limit = (30, 1)  # Telegram's limits: 30/s overall, 1/s per chat (429 beyond)
    chats = [7000 + i for i in range(30)]
    for chat in chats:
        fake.user(chat)
    # both instances write to the same 30 chats, twice each: 120 messages. Unshared, each
    # would pace at 29/s (58/s together: the fake's budget is gone within a second) and send
    # two messages to a chat at once.
    with use_priority(Priority.BULK):
        jobs = [
            sender.send_message(chat, f"{n}:{round_}")
            for round_ in range(2)
            for n, sender in enumerate(fleet)
            for chat in chats
        ]
        results = await asyncio.gather(*jobs)
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    assert 429 not in statuses(fake), "no flood error: the fleet kept Telegram's limits"
    per_chat = collections.Counter(int(c.params["chat_id"]) for c in fake.calls_of("sendMessage"))
    assert set(per_chat.values()) == {4}
    for chat in chats:
        arrivals = [c.at for c in fake.calls_of("sendMessage") if c.params["chat_id"] == chat]
        assert all(b - a >= 0.9 for a, b in zip(arrivals, arrivals[1:], strict=False))
    granted = [sender.limiter.stats.granted for sender in fleet]
    assert sum(granted) == 120 and min(granted) > 0


@pytest.mark.timeout(30)
async def test_a_429_seen_by_one_instance_pauses_the_other(
    fake_telegram: FakeTelegram, fleet: list[TelegramSender]
) -> None:
    fake = fake_telegram
    first, second = fleet
    fake.user(7101)
    fake.user(7102)
    fake.fail("sendMessage", status=429, retry_after=2, chat_id=7101)
    flooded = asyncio.create_task(first.send_message(7101, "to a"))
    await eventually(lambda: first.limiter.paused_for > 0)
    assert second.limiter.paused_for == 0  # it has not asked Redis yet
    result = await second.send_message(7102, "to b")  # another instance, another chat
    assert result.ok and (await flooded).ok
    flood = fake.calls_of("sendMessage")[0]
    other = next(c for c in fake.calls_of("sendMessage") if c.params["chat_id"] == 7102)
    assert flood.status == 429 and flood.done_at is not None
    assert other.at - flood.done_at >= 1.9, "the second instance waited out the first one's 429"
    assert statuses(fake) == [429, 200, 200]
    assert second.limiter.stats.flood_waits == 0, "it never met the 429 itself"


@pytest.mark.timeout(40)
async def test_alerts_go_first_across_the_fleet(fake_telegram: FakeTelegram, fleet: list[TelegramSender]) -> None:
    fake = fake_telegram
    fake.rate_limit = (30, 1)
    bulk_instance, alert_instance = fleet
    bulk_chats = [7200 + i for i in range(90)]
    alert_chats = [7400 + i for i in range(8)]
    for chat in [*bulk_chats, *alert_chats]:
        fake.user(chat)
    with use_priority(Priority.BULK):
        backlog = [
            asyncio.create_task(bulk_instance.send_message(chat, "news", priority=Priority.BULK))
            for chat in bulk_chats
        ]
    await eventually(lambda: len(fake.calls_of("sendMessage")) >= 15, timeout=10)  # the broadcast runs
    # eight alerts on the OTHER instance: each takes the fleet's next slot, ahead of the backlog
    alerts = await asyncio.gather(*(alert_instance.send_message(chat, "📩 new letter") for chat in alert_chats))
    assert all(a.ok for a in alerts)
    await asyncio.gather(*backlog)
    order = ["alert" if c.params["chat_id"] in alert_chats else "bulk" for c in fake.calls_of("sendMessage")]
    first, last = order.index("alert"), len(order) - 1 - order[::-1].index("alert")
    # (one bulk request may already have been granted, or on its way, when the alerts came)
    assert order[first : last + 1].count("bulk") <= 2, order[first : last + 1]
    assert 429 not in statuses(fake)
    assert order[last + 1 :].count("bulk") > 30, "the backlog was still waiting when the alerts went"
