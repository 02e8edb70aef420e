"""TelegramLimiter + TelegramSender with a real aiogram Bot against the fake Bot API over HTTP."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiogram.methods.base import Response
from aiogram.types import Message
from pydantic import SecretStr

from bot.app import create_bot
from bot.config import Settings
from bot.sender import SendStatus, TelegramSender
from bot.telegram_limits import (
    Kind,
    LimitConfig,
    Priority,
    RateLimitTimeout,
    TelegramLimiter,
    classify,
    close_limiter,
    find_limiter,
    install_limiter,
    may_have_arrived,
    use_priority,
)
from bot.telegram_session import KeptTypesSession
from tests.harness.fake_telegram import FakeTelegram
from tests.harness.scripted_servers import closed_port
from tests.harness.virtual_clock import VirtualClock

FAST_RETRY = {"backoff_base": 0.05, "backoff_max": 0.2}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def statuses(fake: FakeTelegram, method: str = "sendMessage") -> list[int | None]:
    return [c.status for c in fake.calls_of(method)]


def test_which_methods_are_paced() -> None:
    assert classify("sendMessage") is Kind.COUNTED
    assert classify("sendDocument") is Kind.COUNTED
    assert classify("sendMediaGroup") is Kind.COUNTED
    assert classify("copyMessage") is Kind.COUNTED
    assert classify("forwardMessage") is Kind.COUNTED
    assert classify("editMessageText") is Kind.PAUSED
    assert classify("deleteMessage") is Kind.PAUSED
    assert classify("sendChatAction") is Kind.PAUSED
    assert classify("answerCallbackQuery") is Kind.OTHER
    assert classify("getUpdates") is Kind.THROUGH


async def test_install_is_idempotent(telegram_bot: Bot) -> None:
    assert find_limiter(telegram_bot) is None
    limiter = install_limiter(telegram_bot)
    assert install_limiter(telegram_bot) is limiter
    assert TelegramSender(telegram_bot).limiter is limiter
    assert sum(isinstance(m, TelegramLimiter) for m in telegram_bot.session.middleware) == 1


@pytest.mark.timeout(20)
async def test_429_pauses_the_whole_bot_then_retries(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    fake.user(101)
    fake.user(102)
    clock = VirtualClock()
    install_limiter(telegram_bot, clock=clock)  # the pause runs on a clock the test moves
    sender = TelegramSender(telegram_bot)
    fake.fail("sendMessage", status=429, retry_after=3, chat_id=101)

    first = asyncio.create_task(sender.send_message(101, "to a"))
    # the pause starts when the bot has read the 429
    await eventually(lambda: sender.limiter.paused_for > 0)
    # the bot is paused now: a send to ANOTHER chat waits as well, and so does a plain
    # bot call (a handler reply goes through the same limiter)
    second = asyncio.create_task(sender.send_message(102, "to b"))
    direct = asyncio.create_task(telegram_bot.send_message(102, "handler reply"))
    await clock.advance(2.9)
    await asyncio.sleep(0.2)  # (real time: the fake would have had them by now)
    assert len(fake.calls_of("sendMessage")) == 1, "nothing is sent during the pause"
    assert not (first.done() or second.done() or direct.done())
    await clock.advance(0.2)  # the pause is over: the retry and the others go out
    result, second_result, direct_message = await asyncio.wait_for(
        asyncio.gather(first, second, direct), 10
    )
    assert result.ok and second_result.ok and direct_message.message_id
    assert [m.text for m in fake.user(101).messages()] == ["to a"]
    assert sorted(m.text for m in fake.user(102).messages()) == ["handler reply", "to b"]
    assert statuses(fake) == [429, 200, 200, 200]
    assert sender.limiter.stats.flood_waits == 1


@pytest.mark.timeout(20)
async def test_flood_wait_longer_than_max_wait_fails_fast(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake_telegram.user(103)
    # failing "fast" means at once, not at max_wait (10 s) nor after the pause (60 s)
    sender = TelegramSender(telegram_bot, limits=LimitConfig(max_wait=10))
    fake_telegram.fail("sendMessage", status=429, retry_after=60, chat_id=103)
    started = time.monotonic()
    result = await sender.send_message(103, "hello")
    assert result.status is SendStatus.FAILED and "RetryAfter" in result.reason
    assert time.monotonic() - started < 5.0
    # the pause (60 s) is still in force: a second request can't get a slot within 10 s
    started = time.monotonic()
    with pytest.raises(RateLimitTimeout):
        await telegram_bot.send_message(103, "again")
    assert time.monotonic() - started < 5.0
    assert len(fake_telegram.calls_of("sendMessage")) == 1


@pytest.mark.timeout(20)
async def test_blocked_chat_calls_hook_once_and_is_not_tried_again(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    fake.user(201)
    fake.user(202)
    seen: list[int] = []

    async def on_blocked(chat_id: int) -> None:
        seen.append(chat_id)

    sender = TelegramSender(telegram_bot, on_blocked=on_blocked)
    fake.block(201)
    result = await sender.send_message(201, "hi")
    assert result.status is SendStatus.BLOCKED and "blocked" in result.reason
    assert seen == [201] and sender.is_blocked(201)
    tried = len(fake.calls_of("sendMessage"))
    again = await sender.send_message(201, "hi again")
    doc = await sender.send_document(201, "a.txt", b"data")
    assert again.status is SendStatus.BLOCKED and doc.status is SendStatus.BLOCKED
    assert len(fake.calls_of("sendMessage")) == tried and not fake.calls_of("sendDocument")
    assert seen == [201]
    # concurrent sends that all meet the 403: the hook still runs once
    fake.block(202)
    results = await asyncio.gather(*(sender.send_message(202, f"m{i}") for i in range(3)))
    assert {r.status for r in results} == {SendStatus.BLOCKED}
    assert seen == [201, 202]
    # the user comes back
    fake.unblock(201)
    sender.unblock(201)
    assert (await sender.send_message(201, "welcome back")).ok
    assert [m.text for m in fake.user(201).messages()] == ["welcome back"]


@pytest.mark.timeout(20)
async def test_a_send_that_may_have_arrived_is_not_retried_other_requests_are(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    user = fake.user(301)
    # every try spends a slot: lift the per-chat pace so only the retries are measured here
    sender = TelegramSender(telegram_bot, limits=LimitConfig(per_chat_rate=50, **FAST_RETRY))
    # a 5xx on a send: Telegram may have delivered it before its front end failed; a second
    # copy is worse than none, so it is reported as uncertain, not retried
    fake.fail("sendMessage", status=500)
    result = await sender.send_message(301, "once at most")
    assert result.status is SendStatus.FAILED and result.uncertain and "ServerError" in result.reason
    assert statuses(fake) == [500]
    assert sender.limiter.stats.not_retried == 1 and sender.limiter.stats.retries == 0

    # an edit is idempotent: retried after 5xx
    sent = await sender.send_message(301, "v0")
    assert sent.ok and sent.message_id is not None
    fake.fail("editMessageText", status=502, times=2)
    await telegram_bot.edit_message_text("v1", chat_id=301, message_id=sent.message_id)
    assert statuses(fake, "editMessageText") == [502, 502, 200]
    assert user.last().text == "v1"

    fake.fail("sendMessage", status=400, description="Bad Request: chat not found")
    result = await sender.send_message(301, "x")
    assert result.status is SendStatus.FAILED and not result.uncertain
    assert "chat not found" in result.reason
    assert statuses(fake) == [500, 200, 400]

    fake.fail("editMessageText", status=502, times=None)
    with pytest.raises(TelegramServerError):
        await telegram_bot.edit_message_text("v2", chat_id=301, message_id=sent.message_id)
    fake.clear_faults()
    assert len(statuses(fake, "editMessageText")) == 3 + LimitConfig().attempts


async def _hang_up_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that reads a whole HTTP request (it has "arrived") and closes without answering."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    _hang_up_after_request.requests += 1  # type: ignore[attr-defined]
    writer.transport.abort()


@pytest.mark.timeout(20)
async def test_a_send_lost_after_it_left_is_not_retried() -> None:
    _hang_up_after_request.requests = 0  # type: ignore[attr-defined]
    server = await asyncio.start_server(_hang_up_after_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot("123456:TEST-token", session=session)
    try:
        sender = TelegramSender(bot, limits=LimitConfig(**FAST_RETRY))
        result = await sender.send_message(1, "did it arrive?")
        assert result.status is SendStatus.FAILED and result.uncertain
        assert "NetworkError" in result.reason
        assert _hang_up_after_request.requests == 1, "sent once, never twice"  # type: ignore[attr-defined]
        assert sender.limiter.stats.retries == 0 and sender.limiter.stats.not_retried == 1
        # an idempotent request lost the same way is tried again
        with pytest.raises(TelegramNetworkError):
            await bot.edit_message_text("x", chat_id=1, message_id=1)
        assert _hang_up_after_request.requests == 1 + LimitConfig().attempts  # type: ignore[attr-defined]
    finally:
        await session.close()
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(20)
async def test_a_send_that_timed_out_is_not_retried(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake_telegram.user(302)
    sender = TelegramSender(telegram_bot)
    fake_telegram.set_delay("sendMessage", 3.0)  # Telegram is slow: the client gives up first
    with pytest.raises(TelegramNetworkError) as caught:
        await telegram_bot.send_message(302, "slow", request_timeout=1)
    assert may_have_arrived(caught.value)
    fake_telegram.set_delay("sendMessage", 0)
    assert len(fake_telegram.calls_of("sendMessage")) == 1
    assert sender.limiter.stats.not_retried == 1


@pytest.mark.timeout(20)
async def test_network_errors_are_retried_a_few_times() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{closed_port()}"))
    bot = Bot("123456:TEST-token", session=session)
    try:
        # nothing listens: the connection never opens, nothing was sent, a retry is safe
        sender = TelegramSender(bot, limits=LimitConfig(attempts=3, **FAST_RETRY))
        result = await sender.send_message(1, "nobody listens")
        assert result.status is SendStatus.FAILED and "NetworkError" in result.reason
        assert not result.uncertain
        assert sender.limiter.stats.retries == 2
    finally:
        await session.close()


@pytest.mark.timeout(40)
async def test_rate_limit_is_kept_without_flood_errors(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    fake.rate_limit = (30, 1)  # the fake refuses a 2nd message to a chat within 1 s
    chats = [400 + i for i in range(10)]
    for chat in chats:
        fake.user(chat)
    # The fake tolerates no per-chat burst, so the limiter is told the same. On a loaded
    # machine one request can reach the fake hundreds of ms after its grant while the next one
    # does not: the limiter spaces a chat's sends from the previous one's answer, so that is
    # no reason for a 429 either.
    sender = TelegramSender(telegram_bot, limits=LimitConfig(per_chat_burst=1))
    per_chat = 6
    started = time.monotonic()
    results = await asyncio.gather(
        *(sender.send_message(chat, f"message {n}") for n in range(per_chat) for chat in chats)
    )
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    # the caller never sees a 429; the fake should not have needed to send one either (one
    # is tolerated: a loaded machine can delay one request and hurry the next past the margin)
    assert statuses(fake).count(429) <= 1
    for chat in chats:
        texts = [m.text for m in fake.user(chat).messages()]
        assert texts == [f"message {n}" for n in range(per_chat)]
    # 6 messages per chat: never faster than 1/s (5 s), paced at 1/1.1 s plus the round trip
    # (~5.6 s); the upper bound only catches pacing gone badly wrong (e.g. a pause per message)
    assert 5.0 <= elapsed < 15.0, elapsed


@pytest.mark.timeout(20)
async def test_a_late_arrival_does_not_crowd_the_next_send(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    fake.rate_limit = (30, 1)
    user = fake.user(450)
    sender = TelegramSender(telegram_bot, limits=LimitConfig(per_chat_burst=1))
    # the first message reaches "Telegram" 1 s late (a slow new connection, a busy network)
    fake.set_delay("sendMessage", 1.0)
    first = asyncio.create_task(sender.send_message(450, "one"))
    await eventually(lambda: bool(fake.calls_of("sendMessage")))
    fake.set_delay("sendMessage", 0)
    # paced from its grant alone, the second would arrive 0.1 s after the first: a 429
    second = await sender.send_message(450, "two")
    assert (await first).ok and second.ok
    assert 429 not in statuses(fake)
    assert [m.text for m in user.messages()] == ["one", "two"]
    one, two = fake.calls_of("sendMessage")
    assert two.at - one.done_at >= 1.0


@pytest.mark.timeout(30)
async def test_alert_overtakes_a_bulk_backlog(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    bulk_chats = [1000 + i for i in range(100)]
    for chat in [*bulk_chats, 500, 501]:
        fake.user(chat)
    clock = VirtualClock()  # time moves only when the test says: the backlog waits meanwhile
    limiter = install_limiter(telegram_bot, clock=clock)  # default limits
    sender = TelegramSender(telegram_bot)
    with use_priority(Priority.BULK):  # tasks created here inherit BULK as well
        backlog = [
            asyncio.create_task(telegram_bot.send_message(chat, "news")) for chat in bulk_chats
        ]
    burst = int(LimitConfig().global_burst)
    await eventually(lambda: len(fake.calls_of("sendMessage")) == burst)  # the burst, then a wait
    prompt = asyncio.create_task(
        sender.send_message(501, "🔌 reconnect", priority=Priority.RECONNECT)
    )
    alert = asyncio.create_task(sender.send_message(500, "📩 new letter"))
    await clock.advance(0)
    assert len(fake.calls_of("sendMessage")) == burst and limiter.stats.granted == burst
    # the next two slots: the alert, then the prompt, ahead of 95 bulk messages
    step = 1.01 / limiter.config.paced_global_rate  # one token
    await clock.advance(step)
    assert (await asyncio.wait_for(alert, 10)).ok
    await clock.advance(step)
    assert (await asyncio.wait_for(prompt, 10)).ok
    while not all(task.done() for task in backlog):
        await clock.advance(0.2)
        await asyncio.sleep(0.01)
    assert len(await asyncio.gather(*backlog)) == 100
    calls = fake.calls_of("sendMessage")
    assert len(calls) == 102 and 429 not in statuses(fake)
    assert [c.params["chat_id"] for c in calls[burst : burst + 2]] == [500, 501]


@pytest.mark.timeout(20)
async def test_edits_do_not_spend_the_budget(
    fake_telegram: FakeTelegram, telegram_bot: Bot
) -> None:
    fake = fake_telegram
    user = fake.user(601)
    sender = TelegramSender(telegram_bot, limits=LimitConfig(per_chat_burst=1))
    sent = await sender.send_message(601, "v0")
    assert sent.ok and sent.message_id is not None
    started = time.monotonic()
    for n in range(1, 6):
        await telegram_bot.edit_message_text(f"v{n}", chat_id=601, message_id=sent.message_id)
    # paced like sends, 5 edits would take 5.5 s (1 per 1.1 s); unpaced they take milliseconds
    assert time.monotonic() - started < 2.5
    assert user.last().text == "v5"
    assert sender.limiter.stats.granted == 1


@pytest.mark.timeout(20)
async def test_documents(fake_telegram: FakeTelegram, telegram_bot: Bot) -> None:
    user = fake_telegram.user(701)
    sender = TelegramSender(telegram_bot)
    data = bytes(range(256)) * 10
    result = await sender.send_document(701, "отчёт.bin", data, caption="<b>report</b>")
    assert result.ok
    doc = user.last().document
    assert doc is not None and doc.data == data and doc.filename == "отчёт.bin"
    assert user.last().text == "report"
    too_big = await sender.send_document(701, "big.bin", b"\0" * (50 * 1024 * 1024 + 1))
    empty = await sender.send_document(701, "empty.bin", b"")
    assert too_big.status is SendStatus.FAILED and empty.status is SendStatus.FAILED
    assert len(fake_telegram.calls_of("sendDocument")) == 1


@pytest.mark.timeout(20)
async def test_the_bots_session_keeps_the_answer_types_across_garbage_collections(
    fake_telegram: FakeTelegram,
) -> None:
    """aiogram reads each answer as Response[...], a pydantic class cached only weakly: without
    a strong reference the next collection frees it and the next answer builds it again (about
    4 ms of CPU per request). The bot's session keeps the ones it has used."""
    fake_telegram.user(303)
    bot = create_bot(Settings(bot_token=SecretStr(fake_telegram.token), telegram_api_url=fake_telegram.base_url))
    try:
        assert isinstance(bot.session, KeptTypesSession)
        await bot.send_message(303, "one")
        answer_type = weakref.ref(Response[Message])
        gc.collect()
        assert answer_type() is not None, "the class built for the first answer is still there"
        sent = await bot.send_message(303, "two")
        assert sent.text == "two" and Response[Message] is answer_type()
    finally:
        await bot.session.close()
        await close_limiter(bot)
