"""Outage broadcasts end to end: the admin writes, picks, previews and confirms in the chat; the
real bot delivers through its one rate-limited sender to the fake Bot API (which enforces
Telegram's limits with 429 when asked to); the queue in the database survives restarts.

The issue's 10,000-user case takes ~6 minutes at Telegram's real 30 messages/s: it runs in
``bench/broadcast.py``. Here the same assertions run with 600 users and a faster (but still
enforced) limit, to keep each test well under 30 s."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from sqlalchemy import func, select, update

from services.broadcasts import UNCERTAIN
from storage.models import Broadcast, BroadcastDelivery, Mailbox, Service, User
from tests.harness.plugin_app import BotHarness

ADMIN = 4343
NOTICE = "Mail is down until 18:00. We are on it."
BASE = 3_000_000


def notice_calls(h: BotHarness, *, admin: bool = False) -> collections.Counter[int]:
    """Successful sendMessage calls carrying the notice, per chat (the admin's chat, which
    also gets the preview, only when asked)."""
    return collections.Counter(
        int(c.params["chat_id"])
        for c in h.fake.calls_of("sendMessage")
        if c.status == 200 and NOTICE in str(c.params.get("text", "")) and (admin or c.params["chat_id"] != ADMIN)
    )


def attempts_per_chat(h: BotHarness) -> collections.Counter[int]:
    return collections.Counter(
        int(c.params["chat_id"]) for c in h.fake.calls_of("sendMessage") if NOTICE in str(c.params.get("text", ""))
    )


async def add_users(h: BotHarness, n: int, *, inactive: set[int] = frozenset(), service: str | None = None) -> list[int]:  # type: ignore[assignment]
    """n users straight into the database (not through the chat), each with a chat at the fake.
    With ``service``, each also has a (broken: not watched) mailbox of that service."""
    ids = [BASE + i for i in range(n)]
    async with h.session() as s:
        s.add_all(User(id=uid, language="ru" if uid % 3 == 0 else "en", is_active=uid not in inactive) for uid in ids)
        await s.flush()
        if service is not None:
            svc = (await s.execute(select(Service).where(Service.code == service))).scalar_one()
            s.add_all(
                Mailbox(
                    user_id=uid, service_id=svc.id, email=f"{uid}@bc.test", login=str(uid), secret_enc="x",
                    imap_host="localhost", imap_port=1, imap_security="ssl", smtp_host="localhost", smtp_port=1,
                    smtp_security="ssl", state="broken",
                )
                for uid in ids
            )
        await s.commit()
    for uid in ids:
        h.fake.user(uid)
    return ids


async def compose(h: BotHarness, audience: str) -> Any:
    """/admin -> Outage notice -> text -> audience -> preview; returns the admin (at Send)."""
    admin = h.user(ADMIN)
    await admin.send("/admin")
    await admin.press("📣 Outage notice")
    assert "Send the text of the notice" in admin.last().text
    await admin.send(NOTICE)
    assert "Who should get the notice" in admin.last().text
    [label] = [b for b in admin.buttons() if b.startswith(audience)]
    await admin.press(label)
    return admin


async def counts(h: BotHarness, broadcast_id: int | None = None) -> dict[str, int]:
    async with h.session() as s:
        if broadcast_id is None:
            broadcast_id = (await s.execute(select(func.max(Broadcast.id)))).scalar_one()
        rows = await s.execute(
            select(BroadcastDelivery.status, func.count())
            .where(BroadcastDelivery.broadcast_id == broadcast_id)
            .group_by(BroadcastDelivery.status)
        )
        return {status: n for status, n in rows.all()}


async def broadcast_row(h: BotHarness) -> Broadcast:
    async with h.session() as s:
        return (await s.execute(select(Broadcast).order_by(Broadcast.id.desc()).limit(1))).scalar_one()


# The waits below only guard against a stalled job: their timeouts are several times what a
# loaded machine needs. How fast a broadcast goes is measured in bench/broadcast.py.
async def wait_state(h: BotHarness, state: str, timeout: float = 60) -> Broadcast:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        row = await broadcast_row(h)
        if row.state == state:
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"broadcast not {state} within {timeout}s: {await counts(h)}")


async def wait_sent(h: BotHarness, at_least: int, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if (await counts(h)).get("sent", 0) >= at_least:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} sent within {timeout}s: {await counts(h)}")


# ---- the chat flow -------------------------------------------------------------------------
async def test_notice_to_the_users_of_one_service(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    gmail_users = await add_users(harness, 5, service="gmail")
    async with harness.session() as s:  # two more users, of another service or none
        yandex = (await s.execute(select(Service).where(Service.code == "yandex"))).scalar_one()
        s.add_all([User(id=91, language="en"), User(id=92, language="en")])
        await s.flush()
        s.add(Mailbox(user_id=91, service_id=yandex.id, email="91@bc.test", login="91", secret_enc="x", imap_host="h",
                      imap_port=1, imap_security="ssl", smtp_host="h", smtp_port=1, smtp_security="ssl", state="broken"))
        await s.execute(update(User).where(User.id == gmail_users[0]).values(is_active=False))
        await s.commit()
    for uid in (91, 92):
        harness.fake.user(uid)
    admin = harness.user(ADMIN)
    await admin.send("/admin")
    await admin.press("📣 Outage notice")
    await admin.send(NOTICE)
    labels = admin.buttons()
    assert "Everyone · 7" in labels  # 4 gmail + 91 + 92 + the admin (the inactive one skipped)
    assert "Users of Gmail · 4" in labels and "Users of Yandex · 1" in labels
    picker = admin.last()
    await admin.press("Users of Gmail · 4")
    confirm = admin.last()
    assert confirm.message_id == picker.message_id, "one message per step: the picker becomes the preview"
    assert "Preview" in confirm.text and "Notice from the administrator\n\n" + NOTICE in confirm.text
    assert "Send it to Users of Gmail?" in confirm.text and "It goes to 4 users; 1 more blocked the bot and is skipped." in confirm.text
    await admin.press("📣 Send to 4 users")
    await wait_state(harness, "done")
    final = await admin.wait_for(lambda m: "Notice sent" in m.text, timeout=10)
    assert final.message_id == confirm.message_id, "the progress is the confirm message, edited in place"
    assert "sent: 4" in final.text and "blocked the bot: 1" in final.text and final.buttons == []
    got = notice_calls(harness)
    assert set(got) == set(gmail_users[1:]) and set(got.values()) == {1}
    ru_user = next(uid for uid in gmail_users[1:] if uid % 3 == 0)
    ru_text = next(c.params["text"] for c in harness.fake.calls_of("sendMessage") if c.params.get("chat_id") == ru_user)
    assert "Сообщение администратора" in ru_text
    # a second press of Send (an old button) sends nothing more
    again = await admin.press_data(confirm.button("📣 Send to 4 users").callback_data or "", confirm.message_id)
    assert "already sent" in (again.text or "")
    assert notice_calls(harness) == got


async def test_preview_text_change_and_discard(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    await add_users(harness, 3)
    admin = await compose(harness, "Everyone")
    await admin.press("✏️ Text")
    await admin.send("Second <b>version</b> & more")
    preview = admin.last()
    assert "Notice from the administrator\n\nSecond <b>version</b> & more" in preview.text
    assert "Second &lt;b&gt;version&lt;/b&gt; &amp; more" in (preview.html or "")
    await admin.press("👥 Audience")
    assert "Who should get the notice" in admin.last().text
    await admin.press("✖️ Discard")
    assert "Nothing was sent" in admin.last().text
    assert notice_calls(harness) == collections.Counter()
    assert (await broadcast_row(harness)).state == "cancelled"


# ---- many users, Telegram's limits enforced ------------------------------------------------
async def uncertain_ids(h: BotHarness) -> set[int]:
    async with h.session() as s:
        rows = await s.execute(select(BroadcastDelivery.user_id).where(BroadcastDelivery.error == UNCERTAIN))
        return {int(uid) for uid in rows.scalars()}


def progress_edits(h: BotHarness, message_id: int) -> list[str]:
    return [
        str(c.params.get("text", ""))
        for c in h.fake.calls_of("editMessageText")
        if c.status == 200 and c.params.get("chat_id") == ADMIN and c.params.get("message_id") == message_id
    ]


async def test_600_users_429_and_403_everyone_reachable_gets_exactly_one(harness: BotHarness) -> None:
    # a faster limit than Telegram's 30/s keeps the test short; it is enforced all the same
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)
    harness.fake.rate_limit = (110, 1)
    inactive = {BASE + i for i in range(0, 600, 60)}  # blocked the bot earlier: skipped
    ids = await add_users(harness, 600, inactive=inactive)
    blocked = {BASE + i for i in range(5, 600, 50)}  # block it now: 403
    for uid in blocked:
        harness.fake.block(uid)
    reachable = set(ids) - inactive - blocked
    admin = await compose(harness, "Everyone")
    confirm = admin.last()
    assert f"It goes to {600 - len(inactive) + 1} users; {len(inactive)} more blocked the bot" in confirm.text
    harness.fake.fail("sendMessage", status=429, retry_after=1, times=3)  # flood control, thrice
    started = time.monotonic()
    await admin.press(f"📣 Send to {600 - len(inactive) + 1} users")
    await wait_state(harness, "done", timeout=120)  # ~10 s, ~25 s on a loaded machine
    elapsed = time.monotonic() - started

    got = notice_calls(harness)
    assert {uid for uid, n in got.items() if n} == reachable
    assert set(got.values()) == {1}, "nobody gets the notice twice"
    tried = attempts_per_chat(harness)
    assert not inactive & set(tried), "users who blocked the bot earlier are not even tried"
    assert notice_calls(harness, admin=True)[ADMIN] == 1  # the admin is a user too (the preview was an edit)
    assert await counts(harness) == {"sent": len(reachable) + 1, "blocked": len(inactive) + len(blocked)}
    async with harness.session() as s:
        flagged = (await s.execute(select(User.id).where(User.is_active.is_(False)))).scalars().all()
    assert set(flagged) == inactive | blocked
    assert harness.app.sender.limiter.stats.flood_waits >= 3
    # a request that waited out the limiter's 60 s shows here, not as time
    assert harness.app.sender.limiter.stats.timeouts == 0, "no request waited out the limiter's max_wait"

    # the job records "done", then edits its progress message a last time
    final = await admin.wait_for(lambda m: m.message_id == confirm.message_id and "Notice sent" in m.text, timeout=10)
    assert "Notice sent" in final.text and f"sent: {len(reachable) + 1}" in final.text
    assert f"blocked the bot: {len(inactive) + len(blocked)}" in final.text and final.buttons == []
    edits = progress_edits(harness, confirm.message_id)
    moving = [e for e in edits if "Sending the notice" in e and "messages/s" in e]
    assert moving, "the progress message is updated in place while sending"
    # at most one edit per 2 s of the job plus the first and the last; a slow machine only makes
    # fewer (unthrottled, it would be one per notice: hundreds)
    assert len(edits) < elapsed / 2 + 3, "progress edits are throttled (about every 2 s)"


async def test_crash_in_the_middle_then_restart_sends_nobody_twice(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)
    harness.fake.rate_limit = (110, 1)
    ids = await add_users(harness, 600)
    admin = await compose(harness, "Everyone")
    confirm = admin.last()
    harness.fake.set_delay("sendMessage", 0.05)  # Telegram takes a while to answer: requests are in flight
    await admin.press("📣 Send to 601 users")
    await wait_sent(harness, 200)
    # a crash: the broadcast's tasks die where they are (requests in flight included), no
    # clean-up, then the process goes away
    runner: Any = harness.app.extra["broadcasts"]
    crashed = runner.tasks
    for task in crashed:
        task.cancel()
    _, alive = await asyncio.wait(crashed, timeout=10)  # the counts below must not move any more
    assert not alive
    before = await counts(harness)
    await harness.stop()
    assert 200 <= before.get("sent", 0) < 590, before
    in_flight = before.get("sending", 0)

    harness.fake.set_delay("sendMessage", 0)
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)  # resumes at start
    await wait_state(harness, "done", timeout=120)
    assert harness.app.sender.limiter.stats.timeouts == 0
    after = await counts(harness)
    unsure = await uncertain_ids(harness)
    assert len(unsure) == in_flight <= 16, "only requests in flight at the crash are uncertain"
    assert after.get("sent", 0) + after.get("failed", 0) == 601 and after.get("failed", 0) == len(unsure)
    got = notice_calls(harness)
    assert max(got.values()) == 1, "nobody gets the notice twice"
    for uid in ids:
        assert got[uid] == 1 or uid in unsure, uid
    # the resumed job keeps editing the same progress message, and ends it
    final = await admin.wait_for(lambda m: m.message_id == confirm.message_id and "Notice sent" in m.text, timeout=10)
    assert "Notice sent" in final.text and f"sent: {after['sent']}" in final.text
    if unsure:
        assert "may or may not have arrived" in final.text


async def test_stop_and_restart_finish_the_job_exactly_once(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)
    harness.fake.rate_limit = (110, 1)
    ids = await add_users(harness, 600)
    admin = await compose(harness, "Everyone")
    await admin.press("📣 Send to 601 users")
    await wait_sent(harness, 150)
    await harness.stop()  # a normal stop (SIGTERM): requests in flight finish, the rest waits
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)
    async with harness.session() as s:
        assert (await s.execute(select(func.count()).select_from(BroadcastDelivery).where(BroadcastDelivery.status == "sending"))).scalar_one() <= 16
    await wait_state(harness, "done", timeout=120)
    assert harness.app.sender.limiter.stats.timeouts == 0
    assert await counts(harness) == {"sent": 601}
    assert await uncertain_ids(harness) == set()
    got = notice_calls(harness)
    assert all(got[uid] == 1 for uid in ids) and set(got.values()) == {1}


async def test_stop_button_stops_sending(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=100)
    harness.fake.rate_limit = (110, 1)
    await add_users(harness, 600)
    admin = await compose(harness, "Everyone")
    confirm = admin.last()
    await admin.press("📣 Send to 601 users")
    await wait_sent(harness, 100)
    await admin.press("⏹ Stop sending", message_id=confirm.message_id)
    await wait_state(harness, "cancelled")
    final = await admin.wait_for(lambda m: "Sending stopped" in m.text, timeout=10)
    await asyncio.sleep(1.0)
    sent = await counts(harness)
    assert 100 <= sent["sent"] < 600 and sent["pending"] > 0 and "sending" not in sent
    assert sum(notice_calls(harness).values()) == sent["sent"] - 1 or sum(notice_calls(harness).values()) == sent["sent"]
    assert f"not sent: {sent['pending']}" in admin.message(final.message_id).text
    # the next /admin press of Outage notice may start a new one
    await admin.send("/admin")
    await admin.press("📣 Outage notice")
    assert "Send the text of the notice" in admin.last().text


async def test_alerts_and_replies_go_before_the_broadcast(harness: BotHarness) -> None:
    # Telegram's own limits: the broadcast alone fills the bot's budget
    await harness.start(admin_ids=[ADMIN], telegram_global_rate=30)
    harness.fake.rate_limit = (30, 1)
    await add_users(harness, 300)
    admin = await compose(harness, "Everyone")
    await admin.press("📣 Send to 301 users")
    someone = harness.user(77)
    # known from now on: its /start below then writes nothing to the database (on SQLite an
    # open write would hold up the broadcast's own writes, and with them its requests)
    await someone.send("/start")
    await wait_sent(harness, 40)
    # Flood control pauses the whole bot for 5 s: meanwhile every broadcast request queues up
    # for a slot, and a reply and an alert are asked for behind that backlog. When the pause
    # ends they must be the first to reach Telegram, ahead of all of it (proved by order, not
    # by wall time; the 5 s only have to cover queueing the two, normally a few ms).
    limiter = harness.app.sender.limiter
    harness.fake.fail("sendMessage", status=429, retry_after=5)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while limiter.paused_for <= 0:
        assert loop.time() < deadline, "no flood pause"
        await asyncio.sleep(0.01)
    resumes_at = time.monotonic() + limiter.paused_for  # the fake stamps calls with time.monotonic()
    other = harness.user(78)  # another chat: the fake allows one message a second per chat
    reply = asyncio.create_task(someone.send("/start", timeout=30))
    alert = asyncio.create_task(harness.app.sender.send_message(other.id, "📩 an alert"))  # as the notifier does
    await reply
    assert (await alert).ok
    assert "Connect mail" in str(someone.buttons())

    def after_pause() -> list[Any]:
        return [c for c in harness.fake.calls_of("sendMessage") if c.at >= resumes_at]

    deadline = loop.time() + 10
    while sum(NOTICE in str(c.params.get("text", "")) for c in after_pause()) < 10:
        assert loop.time() < deadline, "the broadcast did not go on after the pause"
        await asyncio.sleep(0.02)
    order = [
        "notice" if NOTICE in str(c.params.get("text", "")) else int(c.params["chat_id"]) for c in after_pause()
    ]
    first_notice = order.index("notice")
    assert {77, 78} <= set(order[:first_notice]), order
    assert (await counts(harness)).get("pending", 0) > 100, "the broadcast was still going on"


async def test_no_answer_is_never_resent_and_a_refusal_is_a_failure(harness: BotHarness) -> None:
    """A 5xx (like a timeout) leaves it open whether the message arrived: the limiter would
    retry it, the broadcast does not (at most once). A 4xx is a plain failure."""
    await harness.start(admin_ids=[ADMIN])
    ids = await add_users(harness, 6)
    unsure, refused = ids[1], ids[2]
    admin = await compose(harness, "Everyone")
    harness.fake.fail("sendMessage", status=502, chat_id=unsure, times=None)
    harness.fake.fail("sendMessage", status=400, description="Bad Request: chat not found", chat_id=refused, times=None)
    await admin.press("📣 Send to 7 users")
    await wait_state(harness, "done")
    tried = attempts_per_chat(harness)
    assert tried[unsure] == 1 and tried[refused] == 1, "neither is sent twice"
    got = notice_calls(harness)
    assert {uid for uid in ids if got[uid] == 1} == set(ids) - {unsure, refused}
    async with harness.session() as s:
        rows = {r.user_id: r for r in (await s.execute(select(BroadcastDelivery))).scalars()}
    assert rows[unsure].status == "failed" and rows[unsure].error.startswith("uncertain: TelegramServerError")
    assert rows[refused].status == "failed" and "chat not found" in rows[refused].error
    final = await admin.wait_for(lambda m: "Notice sent" in m.text, timeout=10)
    assert "failed: 2" in final.text and "1 of the failed messages may or may not have arrived" in final.text


async def test_a_user_who_blocks_the_bot_is_left_out_before_any_send_fails(harness: BotHarness) -> None:
    """Telegram tells the bot at once (my_chat_member): the preview counts the user as blocked
    without a single failed send; once they unblock and write, they count again."""
    await harness.start(admin_ids=[ADMIN])
    assert "my_chat_member" in harness.fake.allowed_updates
    users = [harness.user(uid) for uid in (3_100_001, 3_100_002, 3_100_003)]
    for user in users:
        await user.send("/start")
    leaver = users[0]
    update_id = harness.fake.block(leaver.chat_id, notify=True)
    assert update_id is not None
    await harness.fake.wait_processed(update_id)
    admin = harness.user(ADMIN)
    await admin.send("/admin")
    await admin.press("📊 Status")
    assert "(3 active, 1 blocked the bot)" in admin.last().text
    admin = await compose(harness, "Everyone")
    assert "It goes to 3 users; 1 more blocked the bot and is skipped" in admin.last().text
    await admin.press("✖️ Discard")
    assert not [c for c in harness.fake.calls if c.params.get("chat_id") == leaver.chat_id and c.status == 403]

    # back: unblocking is enough to be counted again, and writing keeps them active
    update_id = harness.fake.unblock(leaver.chat_id, notify=True)
    assert update_id is not None
    await harness.fake.wait_processed(update_id)
    await leaver.send("/start")
    admin = await compose(harness, "Everyone")
    assert "It goes to 4 users; nobody has blocked the bot" in admin.last().text
    await admin.press("✖️ Discard")
