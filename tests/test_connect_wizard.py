"""The connect wizard end to end: a user talks to the real bot through the fake Bot API; the bot
logs in to the real Dovecot and SMTP server; the database is checked afterwards."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from mail.providers import load_providers
from storage.models import Letter, Mailbox
from tests.harness.plugin_app import BotHarness

PROVIDERS = load_providers()


def letter(n: int, *, subject: str | None = None, attach: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Sender {n} <sender{n}@example.net>"
    msg["To"] = "someone@example.org"
    msg["Subject"] = subject or f"Letter number {n}"
    msg.set_content(f"Body of letter {n}.\nSecond line.")
    if attach:
        msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename=f"doc{n}.pdf")
    return msg


async def start_wizard(user: Any, service: str, email: str, *, default_login: bool = True) -> None:
    """/start -> Connect mail -> service -> e-mail (-> use the address as login)."""
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press(service)
    await user.send(email)
    if default_login:
        await user.press(f"Use {email}")


async def connect(
    h: BotHarness,
    user: Any,
    *,
    service: str,
    email: str,
    password: str,
    signature: str | None = "Best regards",
    notify: bool = True,
    sound: bool = True,
    processes: bool = True,
) -> None:
    """Walk the whole wizard the way a person does, asserting each step's prompt."""
    await user.send("/start")
    await user.press("📬 Connect mail")
    assert "Which mail service" in user.last().text
    await user.press(service)
    assert "Send your e-mail address" in user.last().text
    await user.send(email)
    await user.press(f"Use {email}")
    if service == "Other":
        await user.wait_for_text("Server settings found via")
        await user.press("✅ These are right")
    assert "Send the password" in user.last().text
    msg_id = await user.send(password)
    assert user.is_deleted(msg_id), "the message with the password must be deleted at once"
    await user.wait_for_text("Signed in to IMAP and SMTP")
    if signature is None:
        await user.press("No signature")
    else:
        await user.send(signature)
    await user.press("🔔 Notify" if notify else "🔕 Don't notify")
    if notify:
        await user.press("🔔 With sound" if sound else "🔕 Silently")
    await user.press("✅ Allow" if processes else "🚫 Don't allow")
    assert "Ready to save" in user.last().text
    await user.press("💾 Save")
    await user.wait_for_text("Mailbox connected", timeout=15)


async def stored_mailbox(h: BotHarness, user_id: int) -> Mailbox | None:
    async with h.session() as s:
        return (await s.execute(select(Mailbox).where(Mailbox.user_id == user_id))).scalar_one_or_none()


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.id)
async def test_each_standard_service_connects(bot_app: BotHarness, mail_user: Any, provider: Any) -> None:
    for n in range(3):
        await bot_app.stack.deliver(mail_user.address, letter(n, attach=n == 1))
    user = bot_app.user(1000 + PROVIDERS.index(provider))
    await user.send("/start")
    await connect(bot_app, user, service=provider.name_en, email=mail_user.address, password=mail_user.password)
    summary = user.last().text
    assert mail_user.address in summary and provider.name_en in summary
    assert "Loaded your 3 latest letters" in summary
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and box.state == "connected"
    assert box.signature == "Best regards" and box.notify and box.notify_sound and box.use_in_processes
    assert box.uidvalidity and box.highest_uid == 3
    async with bot_app.session() as s:
        letters = (await s.execute(select(Letter).where(Letter.mailbox_id == box.id).order_by(Letter.uid))).scalars().all()
    assert [x.subject for x in letters] == ["Letter number 0", "Letter number 1", "Letter number 2"]
    assert [x.has_attachments for x in letters] == [False, True, False]
    assert letters[0].from_addr == "sender0@example.net" and "Body of letter 0" in letters[0].snippet


async def test_password_hint_shown_before_password(bot_app: BotHarness, mail_user: Any) -> None:
    yandex = next(p for p in PROVIDERS if p.id == "yandex")
    user = bot_app.user(2001)
    await start_wizard(user, yandex.name_en, mail_user.address)
    prompt = user.last().text
    assert yandex.hint_en.split(".")[0] in prompt
    assert prompt.index(yandex.hint_en.split(".")[0]) < prompt.index("Send the password")


async def test_import_keeps_latest_50_and_remembers_uids(bot_app: BotHarness, mail_user: Any) -> None:
    for n in range(60):
        await bot_app.stack.deliver(mail_user.address, letter(n))
    user = bot_app.user(2002)
    await connect(bot_app, user, service="Gmail", email=mail_user.address, password=mail_user.password, signature=None)
    assert "Loaded your 50 latest letters" in user.last().text
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and box.highest_uid == 60 and box.signature == ""
    async with bot_app.session() as s:
        uids = (await s.execute(select(Letter.uid).where(Letter.mailbox_id == box.id))).scalars().all()
    assert sorted(uids) == list(range(11, 61))


async def test_preferences_saved_as_chosen(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2003)
    await connect(bot_app, user, service="Yandex", email=mail_user.address, password=mail_user.password,
                  notify=False, processes=False)
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and not box.notify and not box.use_in_processes


async def test_password_kept_secret(bot_app: BotHarness, mail_user: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = bot_app.user(2004)
    await connect(bot_app, user, service="Gmail", email=mail_user.address, password=mail_user.password)
    password = mail_user.password
    # not in any reply or button
    for m in user.all_messages():
        if m.from_bot:
            assert password not in m.text and password not in m.html
    # not in logs
    assert password not in caplog.text
    # not in conversation state (FSM storage) at any point: the wizard has ended, so look at
    # every request the bot made too
    for call in bot_app.fake.calls:
        assert password not in str(call.params)
    # not in the database in clear text
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and password not in box.secret_enc
    if bot_app.db_url.startswith("sqlite"):
        path = bot_app.db_url.split(":///", 1)[1]
        for suffix in ("", "-wal"):
            try:
                raw = open(path + suffix, "rb").read()
            except FileNotFoundError:
                continue
            assert password.encode() not in raw
    assert bot_app.app.deps.secrets.decrypt(box.secret_enc) == password


async def test_password_absent_from_fsm_while_waiting(bot_app: BotHarness, mail_user: Any) -> None:
    from aiogram.fsm.storage.base import StorageKey

    user = bot_app.user(2005)
    await start_wizard(user, "Gmail", mail_user.address)
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in")
    key = StorageKey(bot_id=bot_app.app.bot.id, chat_id=user.id, user_id=user.id)
    data = await bot_app.app.dispatcher.storage.get_data(key)
    assert data and mail_user.password not in repr(data)


async def test_wrong_password_then_fix_only_the_password(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2006)
    await start_wizard(user, "Gmail", mail_user.address)
    bad = await user.send("not-the-password")
    assert user.is_deleted(bad)
    failure = await user.wait_for_text("did not accept the login or password")
    assert "IMAP" in failure.text
    assert "Enter the password again" in " ".join(user.buttons())
    await user.press("🔑 Enter the password again")
    assert "Send the password" in user.last().text
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in to IMAP and SMTP")


async def test_wrong_login_fixed_without_retyping_password(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2007)
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press("Gmail")
    await user.send(mail_user.address)
    await user.send("wrong-login@example.org")
    await user.send(mail_user.password)
    await user.wait_for_text("did not accept")
    await user.press("Change login")
    await user.send(mail_user.address)
    await user.wait_for_text("Signed in to IMAP and SMTP")


async def test_cancel_discards_everything(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2008)
    await start_wizard(user, "Gmail", mail_user.address)
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in")
    await user.send("/cancel")
    assert "Cancelled" in user.last().text
    assert await stored_mailbox(bot_app, user.id) is None
    await user.send("/cancel")
    assert "Nothing to cancel" in user.last().text


async def test_back_walks_the_steps(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2009)
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press("Yahoo")
    await user.send(mail_user.address)
    assert "Login for" in user.last().text
    await user.press("⬅️ Back")
    assert "Send your e-mail address" in user.last().text
    await user.press("⬅️ Back")
    assert "Which mail service" in user.last().text
    await user.press("Gmail")
    await user.send(mail_user.address)
    await user.press(f"Use {mail_user.address}")
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in")
    await user.press("No signature")
    await user.press("⬅️ Back")
    assert "Send a signature" in user.last().text


async def test_one_mailbox_per_user(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2010)
    await connect(bot_app, user, service="Gmail", email=mail_user.address, password=mail_user.password)
    await user.send("/start")
    assert "📬 My mailbox" in user.buttons()
    assert "📬 Connect mail" not in user.buttons()
    # an old Connect button from before is refused with an explanation
    from bot.callbacks import MenuCB

    await user.press_data(MenuCB(action="connect").pack(), user.last().message_id)
    assert "already have a mailbox" in user.last().text
    assert (await stored_mailbox(h := bot_app, user.id)) is not None and (await stored_mailbox(h, user.id)).state == "connected"  # type: ignore[union-attr]


async def test_russian_user_gets_russian_wizard(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(2011, language_code="ru")
    await user.send("/start")
    await user.press("📬 Подключить почту")
    assert "В каком почтовом сервисе" in user.last().text
    await user.press("Gmail")
    await user.send(mail_user.address)
    await user.press(f"Использовать {mail_user.address}")
    assert "Включите двухэтапную аутентификацию" in user.last().text


async def test_company_server_from_the_database(bot_app: BotHarness, mail_user: Any) -> None:
    """A company server an admin added appears in the picker and connects with its own settings."""
    from storage.models import Service

    stack = bot_app.stack
    async with bot_app.session() as s:
        s.add(Service(
            code="company-acme", kind="company", name_en="Acme Corp mail", name_ru="Почта Acme",
            domains="example.org", imap_host="localhost", imap_port=stack.imap_starttls_port, imap_security="starttls",
            smtp_host="localhost", smtp_port=stack.smtp_starttls_port, smtp_security="starttls",
            enabled=True, sort_order=500,
        ))
        s.add(Service(code="company-off", kind="company", name_en="Disabled corp", name_ru="Выключено",
                      imap_host="localhost", imap_port=1, imap_security="ssl", smtp_host="localhost",
                      smtp_port=1, smtp_security="ssl", enabled=False, sort_order=501))
        await s.commit()
    user = bot_app.user(2012)
    await user.send("/start")
    await user.press("📬 Connect mail")
    labels = user.buttons()
    assert "Acme Corp mail" in labels and "Disabled corp" not in labels
    assert labels.index("Acme Corp mail") < labels.index("Other")
    await user.send("/cancel")
    await connect(bot_app, user, service="Acme Corp mail", email=mail_user.address, password=mail_user.password)
    box = await stored_mailbox(bot_app, user.id)
    assert box is not None and box.state == "connected" and box.imap_security == "starttls"


async def test_a_password_message_that_cannot_be_deleted_is_left_to_the_user(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(1031)
    await start_wizard(user, "Gmail", mail_user.address)
    bot_app.fake.fail("deleteMessage", status=400, description="Bad Request: message can't be deleted")
    sent = await user.send(mail_user.password)
    assert not user.is_deleted(sent)
    await user.wait_for_text("Please delete it yourself")
    await user.wait_for_text("Signed in to IMAP and SMTP")
