"""/settings: the account card, edits of signature and switches, and the language switch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from storage.models import Mailbox, Service, User
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import connect, stored_mailbox


async def open_card(user: Any) -> None:
    await user.send("/settings")
    await user.press("📬 Mail")


async def test_settings_without_mailbox_leads_to_the_wizard(bot_app: BotHarness) -> None:
    user = bot_app.user(5001)
    await user.send("/settings")
    assert "Settings" in user.last().text
    await user.press("📬 Mail")
    assert "No mailbox is connected yet" in user.last().text
    await user.press("📬 Connect mail")
    assert "Which mail service" in user.last().text


async def test_card_shows_account_and_edits_apply(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(5002)
    await connect(bot_app, user, service="Yandex", email=mail_user.address, password=mail_user.password,
                  signature="Old sig", processes=False)
    await open_card(user)
    card = user.last().text
    for part in (mail_user.address, "Yandex", "connected", "Old sig", "New-mail alerts: on", "Business processes: off"):
        assert part in card, part

    await user.press("New-mail alerts: on")
    assert "New-mail alerts: off" in user.last().text
    await user.press("Sound on mobile: on")
    assert "Sound on mobile: off" in user.last().text
    await user.press("Business processes: off")
    assert "Business processes: on" in user.last().text

    await user.press("✍️ Signature")
    assert "Current signature: Old sig" in user.last().text
    await user.send("y" * 1001)
    assert "the limit is 1000" in user.last().text
    await user.send("<i>New</i> sig & co")
    assert "&lt;i&gt;New&lt;/i&gt; sig &amp; co" in user.last().html

    box = await stored_mailbox(bot_app, user.id)
    assert box is not None
    assert (box.notify, box.notify_sound, box.use_in_processes) == (False, False, True)
    assert box.signature == "<i>New</i> sig & co"

    await user.press("✍️ Signature")
    await user.press("No signature")
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and box.signature == ""


async def test_language_switch(bot_app: BotHarness) -> None:
    user = bot_app.user(5003, language_code="en")
    await user.send("/settings")
    await user.press("🌐 Language")
    await user.press("Русский")
    assert "Язык: русский" in " ".join(m.text for m in user.messages()[-2:])
    await user.send("/start")
    assert "📬 Подключить почту" in user.buttons()
    await user.send("/settings")
    await user.press("🌐 Язык")
    await user.press("English")
    await user.send("/start")
    assert "📬 Connect mail" in user.buttons()


async def test_language_follows_telegram_first(bot_app: BotHarness) -> None:
    user = bot_app.user(5004, language_code="ru-RU")
    await user.send("/help")
    assert "подключает один почтовый ящик" in user.last().text


async def test_a_new_users_first_updates_at_once_both_get_answered(bot_app: BotHarness) -> None:
    """Updates are handled concurrently (as in production): a new user's first two quick
    updates both create-or-get the user row, and neither fails."""
    for user_id in range(5101, 5106):  # a few newcomers, to give the race every chance
        user = bot_app.user(user_id)
        await user.send("/start", wait=False)
        await user.send("/settings", wait=False)
    for user_id in range(5101, 5106):
        user = bot_app.user(user_id)
        await user.wait_for_text("I bring your e-mail into Telegram")
        await user.wait_for_text("Settings")
    async with bot_app.session() as s:
        rows = (await s.execute(select(User).where(User.id.between(5101, 5105)))).scalars().all()
    assert sorted(u.id for u in rows) == list(range(5101, 5106))


async def test_no_disarms_yes_and_each_delete_confirmation_works_once(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(5007)
    await connect(bot_app, user, service="Yandex", email=mail_user.address, password=mail_user.password)
    await open_card(user)
    await user.press("🗑 Delete account")
    first = user.last()
    assert "Delete the mailbox" in first.text
    old_yes = first.button("🗑 Yes, delete").callback_data or ""
    await user.press("No, keep it", first.message_id)
    assert mail_user.address in user.last().text and "Delete the mailbox" not in user.message(first.message_id).text
    # the Yes of the confirmation answered No: refused, nothing deleted
    answer = await user.press_data(old_yes, first.message_id)
    assert answer.show_alert and "out of date" in (answer.text or "")
    assert await stored_mailbox(bot_app, user.id) is not None

    # a new confirmation: the older one's Yes stays refused, its own Yes works once
    await user.press("🗑 Delete account")
    second = user.last()
    assert "Delete the mailbox" in second.text and second.message_id != first.message_id
    answer = await user.press_data(old_yes, first.message_id)
    assert answer.show_alert and await stored_mailbox(bot_app, user.id) is not None
    new_yes = second.button("🗑 Yes, delete").callback_data or ""
    await user.press("🗑 Yes, delete", second.message_id)
    assert "disconnected" in user.last().text
    assert await stored_mailbox(bot_app, user.id) is None
    answer = await user.press_data(new_yes, second.message_id)
    assert answer.show_alert and "out of date" in (answer.text or "")


async def test_text_in_the_reconnect_menu_may_be_the_password_and_is_deleted(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(5008)
    await connect(bot_app, user, service="Yandex", email=mail_user.address, password=mail_user.password)
    await open_card(user)
    await user.press("🔄 Reconnect")
    assert "Reconnect" in user.last().text
    pasted = await user.send("new-password-typed-too-early")
    assert user.is_deleted(pasted)
    assert "I deleted your message" in user.last().text


async def test_reconnect_takes_servers_as_host_port_and_edits_its_menu(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(5009)
    await connect(bot_app, user, service="Yandex", email=mail_user.address, password=mail_user.password)
    async with bot_app.session() as s:  # an account on a server of its own (Other): servers can be changed
        other = (await s.execute(select(Service).where(Service.code == "other"))).scalar_one()
        await s.execute(update(Mailbox).where(Mailbox.user_id == user.id).values(service_id=other.id))
        await s.commit()
    await open_card(user)
    await user.press("🔄 Reconnect")
    menu = user.last()
    assert "Reconnect" in menu.text
    await user.press("IMAP server", menu.message_id)
    assert user.message(menu.message_id).text.startswith("Send the IMAP server as host:port")
    for bad, expected in [("imap.corp.example:99999", "whole number"), (":993", "not a server"), ("a b c", "not a server")]:
        await user.send(bad)
        assert expected in user.last().text, bad
    await user.send("imap.corp.example:143")
    text = user.message(menu.message_id).text
    assert "Reconnect" in text and "imap.corp.example:143 · STARTTLS" in text
    await user.press("SMTP server", menu.message_id)
    await user.send("imap2.corp.example:993 smtp2.corp.example:587")  # both at once
    text = user.message(menu.message_id).text
    assert "imap2.corp.example:993 · SSL/TLS" in text and "smtp2.corp.example:587 · STARTTLS" in text
    assert sum("Reconnect" in m.text and "IMAP:" in m.text for m in user.messages()) == 1, "one menu, edited in place"
