"""The live mailbox end to end: alerts pushed by the real Dovecot through the watcher to the
fake Bot API, reading letters, /inbox, Reconnect after a password change, Delete account."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from bot.callbacks import LetterCB
from services.items import ItemLinks
from storage.models import ItemLink, Letter, Mailbox, User
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import connect, letter, stored_mailbox


def alerts(h: BotHarness, user: Any) -> list[Any]:
    return [m for m in user.messages() if m.from_bot and m.text.startswith("📩")]


async def wait_alerts(h: BotHarness, user: Any, count: int, timeout: float = 8.0) -> list[Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = alerts(h, user)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} alerts, got {[m.text for m in alerts(h, user)]}")


async def settle(seconds: float = 1.5) -> None:
    """Give a push that must NOT come time to arrive (Dovecot pushes after ~0.5 s)."""
    await asyncio.sleep(seconds)


async def connected_user(h: BotHarness, mail_user: Any, user_id: int, **prefs: Any) -> Any:
    user = h.user(user_id)
    await connect(h, user, service="Gmail", email=mail_user.address, password=mail_user.password, **prefs)
    box = await stored_mailbox(h, user.id)
    assert box is not None
    await wait_watching(h, box.id)
    return user


async def wait_watching(h: BotHarness, mailbox_id: int, timeout: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if h.app.watchers.states().get(mailbox_id) is not None and h.app.watchers.states()[mailbox_id].value == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"mailbox {mailbox_id} not watched: {h.app.watchers.states()}")


async def test_new_letter_gives_exactly_one_alert_and_opens(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6001)
    msg = letter(1, subject="Quarterly <report> & plans")
    msg.replace_header("From", '"Anna <b>Boss</b>" <anna@example.net>')
    await bot_app.stack.deliver(mail_user.address, msg)
    [alert] = await wait_alerts(bot_app, user, 1)
    assert "Quarterly <report> & plans" in alert.text
    assert "anna@example.net" in alert.text
    assert "&lt;report&gt; &amp; plans" in alert.html
    await settle()
    assert len(alerts(bot_app, user)) == 1
    call = next(c for c in bot_app.fake.calls_of("sendMessage") if c.params.get("text", "").startswith("📩"))
    assert not call.params.get("disable_notification")
    await user.press("📖 Open", message_id=alert.message_id)
    opened = await user.wait_for_text("Body of letter 1")
    assert "Quarterly <report> & plans" in opened.text and "anna@example.net" in opened.text


async def test_burst_of_letters_each_alerted_once(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6002)
    for n in range(5):
        await bot_app.stack.deliver(mail_user.address, letter(100 + n))
    found = await wait_alerts(bot_app, user, 5)
    await settle()
    found = alerts(bot_app, user)
    assert sorted(m.text.split("Letter number ")[1][:3] for m in found) == ["100", "101", "102", "103", "104"]


async def test_silent_when_no_sound_on_mobile(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6003, sound=False)
    await bot_app.stack.deliver(mail_user.address, letter(2))
    [alert] = await wait_alerts(bot_app, user, 1)
    assert alert.disable_notification is True


async def test_alerts_off_still_imports(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6004, notify=False)
    await bot_app.stack.deliver(mail_user.address, letter(3, subject="Quiet one"))
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 8
    while loop.time() < deadline:
        async with bot_app.session() as s:
            n = (await s.execute(select(func.count()).select_from(Letter).where(Letter.subject == "Quiet one"))).scalar_one()
        if n:
            break
        await asyncio.sleep(0.1)
    assert n == 1
    assert alerts(bot_app, user) == []
    await user.send("/inbox")
    assert "Quiet one" in user.last().text


async def test_letters_delivered_while_stopped_are_alerted_after_start(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    user = await connected_user(harness, mail_user, 6005)
    await harness.stop()
    for n in range(3):
        await harness.stack.deliver(mail_user.address, letter(200 + n))
    await harness.start()
    await wait_alerts(harness, user, 3, timeout=10)
    await settle()
    assert len(alerts(harness, user)) == 3


async def test_inbox_pages_and_opens(bot_app: BotHarness, mail_user: Any) -> None:
    for n in range(12):
        await bot_app.stack.deliver(mail_user.address, letter(n, attach=n == 11))
    user = await connected_user(bot_app, mail_user, 6006)
    await user.send("/inbox")
    page1 = user.last()
    assert "letters 1–8 of 12" in page1.text
    assert page1.text.index("Letter number 11") < page1.text.index("Letter number 10")  # newest first
    await user.press("Older ➡️")
    assert "letters 9–12 of 12" in user.last().text
    await user.press("⬅️ Newer")
    assert "letters 1–8 of 12" in user.last().text
    await user.press("1. Letter number 11")
    opened = await user.wait_for_text("Body of letter 11")
    labels = user.buttons(opened.message_id) if opened.buttons else user.buttons()
    assert any(label.startswith("📎 doc11.pdf") for label in labels)
    await user.press(next(label for label in labels if label.startswith("📎 doc11.pdf")))
    doc = await user.wait_for(lambda m: m.document is not None)
    filename, data = doc.document
    assert filename == "doc11.pdf" and data == b"%PDF-1.4 fake"


async def test_another_users_letter_cannot_be_opened(bot_app: BotHarness, mail_user: Any) -> None:
    owner = await connected_user(bot_app, mail_user, 6007)
    await bot_app.stack.deliver(mail_user.address, letter(7, subject="Private matter"))
    await wait_alerts(bot_app, owner, 1)
    async with bot_app.session() as s:
        letter_id = (await s.execute(select(Letter.id).where(Letter.subject == "Private matter"))).scalar_one()
    intruder = bot_app.user(6008)
    await intruder.send("/start")
    before = len(bot_app.fake.calls_of("sendMessage"))
    await intruder.press_data(LetterCB(letter_id=letter_id).pack(), intruder.last().message_id)
    assert "no longer available" in (intruder.callback_answers[-1].text or "")
    await intruder.press_data(LetterCB(letter_id=letter_id, action="att", part="2").pack(), intruder.last().message_id)
    assert "no longer available" in (intruder.callback_answers[-1].text or "")
    assert len(bot_app.fake.calls_of("sendMessage")) == before
    assert not any("Private matter" in m.text for m in intruder.messages())


async def test_password_changed_one_prompt_then_reconnect(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    user = await connected_user(harness, mail_user, 6009)
    box = await stored_mailbox(harness, user.id)
    assert box is not None
    harness.stack.set_password(mail_user.address, "brand-new-secret")
    await harness.stack.kick(mail_user.address)  # the server drops the session: log in again
    prompt = await user.wait_for_text("is broken", timeout=20)
    await settle(4)  # several backoff periods: no second prompt, no login loop
    assert sum("is broken" in m.text for m in user.messages()) == 1
    assert (await stored_mailbox(harness, user.id)).state == "broken"  # type: ignore[union-attr]
    await user.send("/settings")
    await user.press("📬 Mail")
    assert "connection broken" in user.last().text
    await user.press("🔄 Reconnect", message_id=prompt.message_id)
    assert "Reconnect" in user.last().text
    await user.press("💾 Save")  # the old password: refused, nothing changes
    await user.wait_for_text("did not accept")
    await user.press("🔑 New password")
    secret_msg = await user.send("brand-new-secret")
    assert user.is_deleted(secret_msg)
    await user.wait_for_text("Reconnected")
    await wait_watching(harness, box.id)
    await harness.stack.deliver(mail_user.address, letter(9, subject="After reconnect"))
    found = await wait_alerts(harness, user, 1)
    assert "After reconnect" in found[-1].text


async def test_server_restart_is_silent_and_loses_nothing(harness: BotHarness, mail_user: Any) -> None:
    await harness.start()
    user = await connected_user(harness, mail_user, 6010)
    await harness.stack.stop_imap()
    await harness.stack.start_imap()
    await harness.stack.deliver(mail_user.address, letter(10, subject="During the blip"))
    found = await wait_alerts(harness, user, 1, timeout=20)
    await settle()
    assert len(alerts(harness, user)) == 1 and "During the blip" in found[0].text
    assert not any("is broken" in m.text or "not answered" in m.text for m in user.messages())


async def test_blocked_user_is_marked_inactive(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6011)
    bot_app.fake.block(user.id)
    await bot_app.stack.deliver(mail_user.address, letter(11))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 8
    active = True
    while loop.time() < deadline and active:
        async with bot_app.session() as s:
            active = (await s.get(User, user.id)).is_active  # type: ignore[union-attr]
        await asyncio.sleep(0.1)
    assert active is False
    attempts = len([c for c in bot_app.fake.calls_of("sendMessage") if c.params.get("chat_id") == user.id])
    await bot_app.stack.deliver(mail_user.address, letter(12))
    await settle()
    assert len([c for c in bot_app.fake.calls_of("sendMessage") if c.params.get("chat_id") == user.id]) == attempts


async def test_429_on_alert_is_retried_once_delivered(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6012)
    bot_app.fake.fail("sendMessage", status=429, retry_after=1, times=1, chat_id=user.id)
    await bot_app.stack.deliver(mail_user.address, letter(13))
    await wait_alerts(bot_app, user, 1, timeout=10)
    await settle()
    assert len(alerts(bot_app, user)) == 1


async def test_delete_keeps_item_snapshots_and_removes_everything_else(bot_app: BotHarness, mail_user: Any) -> None:
    for n in range(3):
        await bot_app.stack.deliver(mail_user.address, letter(n))
    user = await connected_user(bot_app, mail_user, 6013)
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None
    async with bot_app.session() as s:
        first = (await s.execute(select(Letter).where(Letter.mailbox_id == box.id).order_by(Letter.uid))).scalars().first()
        assert first is not None
        await ItemLinks(s).link("deal", "D-42", first.id)
        await s.commit()
    await user.send("/settings")
    await user.press("📬 Mail")
    await user.press("🗑 Delete account")
    assert "Delete the mailbox" in user.last().text
    await user.press("🗑 Yes, delete")
    assert "disconnected" in user.last().text
    async with bot_app.session() as s:
        assert (await s.execute(select(func.count()).select_from(Mailbox))).scalar_one() == 0
        assert (await s.execute(select(func.count()).select_from(Letter))).scalar_one() == 0
        link = (await s.execute(select(ItemLink))).scalar_one()
    assert link.letter_id is None and link.subject == "Letter number 0" and link.from_addr == "sender0@example.net"
    assert not bot_app.app.watchers.running(box.id)
    await bot_app.stack.deliver(mail_user.address, letter(99))
    await settle()
    assert alerts(bot_app, user) == []
    # and another mailbox can be connected now
    await user.send("/start")
    assert "📬 Connect mail" in user.buttons()



async def test_outage_announced_before_a_restart_is_closed_after_it(harness: BotHarness, mail_user: Any) -> None:
    """The bot told the user the server was unreachable, then restarted: once the watcher is
    connected again the user hears it is back (once), although this process never saw the outage."""
    from sqlalchemy import update
    from sqlalchemy.ext.asyncio import create_async_engine

    await harness.start()
    user = await connected_user(harness, mail_user, 6014)
    await harness.stop()
    engine = create_async_engine(harness.db_url)
    async with engine.begin() as conn:  # as the previous process left it
        await conn.execute(update(Mailbox).where(Mailbox.user_id == user.id).values(outage_notified=True))
    await engine.dispose()
    await harness.start()
    await user.wait_for_text("is back", timeout=10)
    await settle()
    assert sum("is back" in m.text for m in user.messages()) == 1
    box = await stored_mailbox(harness, user.id)
    assert box is not None and box.outage_notified is False

