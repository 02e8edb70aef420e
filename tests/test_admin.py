"""/admin end to end: the real bot through the fake Bot API, the real Dovecot for company
servers and the connection test, the database checked afterwards."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.callbacks import AdminCB
from services.oauth import OAuthService
from storage.models import FeatureFlag, Instance, Mailbox, MailboxLease, Service, User
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import connect, letter, stored_mailbox
from tests.test_live_mailbox import wait_alerts, wait_watching

ADMIN = 4242
UNKNOWN = "I don't know that command"
STALE = "This button is out of date"

# every button the admin screens (and the broadcast progress message) carry
ADMIN_BUTTONS = {
    ("menu", "show"), ("menu", "cancel"),
    ("svc", "list"), ("svc", "open"), ("svc", "toggle"),
    ("co", "list"), ("co", "add"), ("co", "open"), ("co", "toggle"), ("co", "edit"), ("co", "test"), ("co", "del"), ("co", "del_yes"),
    ("flag", "list"), ("flag", "set"),
    ("status", "show"),
    ("bc", "new"), ("bc", "stop"), ("bc", "aud"), ("bc", "audpick"), ("bc", "retext"), ("bc", "drop"), ("bc", "go"),
}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def service_by_code(h: BotHarness, code: str) -> Service:
    async with h.session() as s:
        return (await s.execute(select(Service).where(Service.code == code))).scalar_one()


async def open_admin(h: BotHarness, section: str | None = None) -> Any:
    admin = h.user(ADMIN)
    await admin.send("/admin")
    assert "Administration" in admin.last().text
    if section is not None:
        await admin.press(section)
    return admin


# ---- who may administer --------------------------------------------------------------------
async def test_admin_commands_look_unknown_to_everyone_else(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    user = harness.user(7001)
    await user.send("/no_such_command")
    unknown = user.last().text
    assert unknown.startswith(UNKNOWN)
    await user.send("/admin")
    assert user.last().text == unknown, "a non-admin gets exactly the reply to any unknown command"
    await user.send("/admin status")
    assert user.last().text == unknown
    # a forged admin button: the same answer as any stale button, and nothing changes
    await user.send("/start")
    menu = user.last()
    gmail = await service_by_code(harness, "gmail")
    bogus = await user.press_data("zz:nothing", menu.message_id)
    forged = await user.press_data(AdminCB(section="svc", action="toggle", item=gmail.id).pack(), menu.message_id)
    assert forged.text == bogus.text and forged.text.startswith(STALE)
    for section, action in sorted(ADMIN_BUTTONS):  # every admin button, forged
        answer = await user.press_data(AdminCB(section=section, action=action, item=gmail.id, value="all").pack(), menu.message_id)
        assert answer.text == bogus.text, (section, action)
    assert user.last().message_id == menu.message_id, "nothing was shown to a non-admin"
    assert (await service_by_code(harness, "gmail")).enabled
    # mid-wizard, /admin is just text for the wizard's step, as any other unknown command
    await user.press("📬 Connect mail")
    await user.press("Gmail")
    await user.send("/admin")
    mid_admin = user.last().text
    await user.send("/nonsense")
    assert user.last().text == mid_admin.replace("/admin", "/nonsense")
    # the admin gets the menu
    admin = await open_admin(harness)
    assert admin.buttons() == ["📮 Standard services", "🏢 Company servers", "🚩 Feature flags", "📊 Status", "📣 Outage notice"]


async def test_admin_router_checks_the_presser_and_has_one_handler_per_button() -> None:
    """The admin check sits on the router (no handler can forget it) and each button action
    has a handler of its own; an action nobody knows matches no admin handler at all."""
    from aiogram.filters.callback_data import CallbackQueryFilter
    from aiogram.types import CallbackQuery
    from aiogram.types import User as TgUser

    from handlers import all_routers

    def press(section: str, action: str, who: int = ADMIN) -> CallbackQuery:
        data = AdminCB(section=section, action=action, item=1, value="name").pack()
        return CallbackQuery(id="1", from_user=TgUser(id=who, is_bot=False, first_name="A"), chat_instance="c", data=data)

    from bot.config import Settings

    admin_router = next(r for r in all_routers() if r.name == "admin")
    settings = Settings(bot_token="1:x", admin_ids=[ADMIN])  # type: ignore[call-arg]
    for observer in (admin_router.message, admin_router.callback_query):
        for who, expected in ((ADMIN, True), (7003, False)):
            passed, _ = await observer.check_root_filters(press("svc", "list", who), settings=settings)
            assert passed is expected, (observer.event_name, who)
    commands = {
        c.commands[0] for h in admin_router.message.handlers for f in h.filters or [] for c in [f.callback] if hasattr(c, "commands")
    }
    assert {"admin", "oauth_flag", "oauth_client"} <= commands, "every admin command lives under the router's filter"

    async def matching(query: CallbackQuery) -> list[str]:
        found = []
        for handler in admin_router.callback_query.handlers:
            checks = [f.callback for f in handler.filters or [] if isinstance(f.callback, CallbackQueryFilter)]
            if checks and all([await check(query) for check in checks]):
                found.append(handler.callback.__name__)
        return found

    for section, action in sorted(ADMIN_BUTTONS):
        assert len(await matching(press(section, action))) == 1, (section, action)
    for section, action in (("svc", "nosuch"), ("co", "explode"), ("bc", "resend"), ("zz", "list")):
        assert await matching(press(section, action)) == [], (section, action)
    handlers = [h.callback.__name__ for h in admin_router.callback_query.handlers]
    assert len(handlers) == len(ADMIN_BUTTONS) == len(set(handlers))


def menu_of(h: BotHarness, scope: dict[str, Any], language: str = "") -> list[str]:
    key = (json.dumps(scope, sort_keys=True), language)
    return [c["command"] for c in h.fake.commands.get(key, [])]


async def test_only_admins_see_admin_in_their_command_menu(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    everyone = ["start", "inbox", "search", "settings", "cancel", "help"]
    assert menu_of(harness, {"type": "default"}) == everyone
    assert menu_of(harness, {"type": "default"}, "ru") == everyone
    for language in ("", "ru"):
        assert menu_of(harness, {"type": "chat", "chat_id": ADMIN}, language) == [*everyone, "admin"]
    russian = harness.fake.commands[(json.dumps({"type": "default"}, sort_keys=True), "ru")]
    assert russian[1]["description"] == "Последние письма"
    # no other menu anywhere: only the default one and the admin's own
    scopes = {scope for scope, _language in harness.fake.commands}
    assert scopes == {json.dumps(s, sort_keys=True) for s in ({"type": "default"}, {"type": "chat", "chat_id": ADMIN})}


# ---- standard services ---------------------------------------------------------------------
async def test_disabled_service_leaves_the_wizard_but_its_accounts_keep_working(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(admin_ids=[ADMIN])
    owner = harness.user(7101)
    await connect(harness, owner, service="Gmail", email=mail_user.address, password=mail_user.password)
    box = await stored_mailbox(harness, owner.id)
    assert box is not None
    await wait_watching(harness, box.id)

    admin = await open_admin(harness, "📮 Standard services")
    assert "✅ Gmail · 1" in admin.buttons()
    await admin.press("✅ Gmail · 1")
    card = admin.last().text
    assert mail_user.address in card and "connected" in card and "1 connected account" in card
    await admin.press("🚫 Hide from the connect wizard")
    assert "hidden from the connect wizard" in admin.last().text
    assert mail_user.address in admin.last().text, "its connected account is still listed for the admin"
    assert not (await service_by_code(harness, "gmail")).enabled

    newcomer = harness.user(7102)
    await newcomer.send("/start")
    await newcomer.press("📬 Connect mail")
    assert "Gmail" not in newcomer.buttons() and "Yandex" in newcomer.buttons()

    # the connected account keeps working: new mail is still alerted
    await harness.stack.deliver(mail_user.address, letter(1, subject="Still here"))
    [alert] = await wait_alerts(harness, owner, 1)
    assert "Still here" in alert.text
    await owner.send("/settings")
    await owner.press("📬 Mail")
    assert "connected" in owner.last().text

    await admin.press("⬅️ Back")
    await admin.press("🚫 Gmail · 1")
    await admin.press("✅ Show in the connect wizard")
    await newcomer.send("/cancel")
    await newcomer.send("/start")
    await newcomer.press("📬 Connect mail")
    assert "Gmail" in newcomer.buttons()


# ---- company servers -----------------------------------------------------------------------
async def add_company(h: BotHarness, name: str, domains: str, imap: str, smtp: str) -> Any:
    admin = await open_admin(h, "🏢 Company servers")
    await admin.press("➕ Add a company server")
    assert "name" in admin.last().text
    await admin.send(name)
    assert "mail domain" in admin.last().text
    await admin.send(domains)
    assert "IMAP server" in admin.last().text
    await admin.send(imap)
    assert "SMTP server" in admin.last().text
    await admin.send(smtp)
    assert f"Company server {name} added" in admin.last().text
    return admin


async def test_company_server_added_in_chat_is_tested_and_connects(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(admin_ids=[ADMIN])
    stack = harness.stack
    admin = await add_company(
        harness, "Acme mail", "Example.org, acme.test",
        f"localhost:{stack.imap_ssl_port} ssl", f"localhost:{stack.smtp_starttls_port} starttls",
    )
    card = admin.last().text
    assert "example.org, acme.test" in card
    assert f"IMAP: localhost:{stack.imap_ssl_port} · SSL/TLS" in card
    assert f"SMTP: localhost:{stack.smtp_starttls_port} · STARTTLS" in card

    # the test button: TLS and greeting of both ports, without credentials
    await admin.press("🔌 Test the connection")
    report = await admin.wait_for_text("Connection test", timeout=15)
    assert "✅ IMAP" in report.text and "✅ SMTP" in report.text and "Both ports look right" in report.text
    assert "TLSv1" in report.text

    # the wizard offers it first, and a user connects through it to the local Dovecot
    user = harness.user(7201)
    await user.send("/start")
    await user.press("📬 Connect mail")
    labels = user.buttons()
    assert labels[0] == "Acme mail" and labels.index("Acme mail") < labels.index("Gmail")
    await user.send("/cancel")
    await connect(harness, user, service="Acme mail", email=mail_user.address, password=mail_user.password)
    box = await stored_mailbox(harness, user.id)
    assert box is not None and box.state == "connected"
    assert (box.imap_port, box.smtp_port, box.smtp_security) == (stack.imap_ssl_port, stack.smtp_starttls_port, "starttls")

    # a closed port: a clear failure, naming the protocol and what to check
    port = closed_port()
    await admin.press("⬅️ Back")
    await admin.press("✏️ IMAP")
    assert f"Now: localhost:{stack.imap_ssl_port} ssl" in admin.last().text
    await admin.send("not a server!")
    assert "could not read that" in admin.last().text
    await admin.send(f"localhost:{port}")
    assert "Saved" in admin.last().text and f"IMAP: localhost:{port} · SSL/TLS" in admin.last().text
    await admin.press("🔌 Test the connection")
    report = await admin.wait_for_text("Connection test", timeout=15)
    assert f"❌ IMAP localhost:{port}" in report.text and "refused the connection" in report.text
    assert "✅ SMTP" in report.text and "Fix the settings marked ❌" in report.text
    # the account connected earlier keeps its own settings
    box = await stored_mailbox(harness, user.id)
    assert box is not None and box.imap_port == stack.imap_ssl_port

    # in use: can't be removed, only hidden
    await admin.press("⬅️ Back")
    await admin.press("🗑 Remove")
    assert "can't be removed" in admin.callback_answers[-1].text
    async with harness.session() as s:
        assert (await s.execute(select(Service).where(Service.name_en == "Acme mail"))).scalar_one()


async def test_company_server_offered_to_other_with_its_domain(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(admin_ids=[ADMIN])
    stack = harness.stack
    await add_company(
        harness, "Acme mail", "example.org",
        f"localhost:{stack.imap_starttls_port} starttls", f"localhost:{stack.smtp_ssl_port}",
    )
    user = harness.user(7301)
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press("Other")
    await user.send(mail_user.address)
    assert "served by Acme mail" in user.last().text
    await user.press("🏢 Use Acme mail")
    await user.press(f"Use {mail_user.address}")
    assert "Send the password" in user.last().text, "the company's settings: no server questions"
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in to IMAP and SMTP")
    await user.press("No signature")
    await user.press("🔕 Don't notify")
    await user.press("🚫 Don't allow")
    await user.press("💾 Save")
    await user.wait_for_text("Mailbox connected", timeout=15)
    box = await stored_mailbox(harness, user.id)
    assert box is not None and box.service.name_en == "Acme mail" and box.imap_security == "starttls"
    # an address outside the domain is not offered anything
    other = harness.user(7302)
    await other.send("/start")
    await other.press("📬 Connect mail")
    await other.press("Other")
    await other.send("someone@elsewhere.test")
    assert "served by" not in other.last().text and "🏢 Use Acme mail" not in other.buttons()


async def test_unused_company_server_is_removed_and_leaves_the_wizard(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    admin = await add_company(harness, "Old corp", "old.test", "imap.old.test", "smtp.old.test:587")
    assert "IMAP: imap.old.test:993 · SSL/TLS" in admin.last().text
    assert "SMTP: smtp.old.test:587 · STARTTLS" in admin.last().text
    await admin.press("✏️ Name")
    await admin.send("Older corp")
    assert "Older corp" in admin.last().text
    await admin.press("🗑 Remove")
    assert "Remove the company server Older corp" in admin.last().text
    await admin.press("🗑 Yes, remove it")
    assert "No company servers yet" in admin.last().text
    user = harness.user(7401)
    await user.send("/start")
    await user.press("📬 Connect mail")
    assert "Older corp" not in user.buttons()


async def test_company_input_is_validated_and_cancellable(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    admin = await open_admin(harness, "🏢 Company servers")
    await admin.press("➕ Add a company server")
    await admin.send("Acme")
    await admin.send("not a domain!")
    assert "not a list of mail domains" in admin.last().text
    await admin.send("acme.test")
    await admin.send("imap.acme.test:99999")
    assert "could not read that" in admin.last().text
    await admin.send("/cancel")
    assert "Cancelled" in admin.last().text and "Administration" in admin.last().text
    async with harness.session() as s:
        assert (await s.execute(select(Service).where(Service.kind == "company"))).first() is None


# ---- feature flags -------------------------------------------------------------------------
async def test_flag_set_from_chat(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    admin = await open_admin(harness, "🚩 Feature flags")
    assert "enablePostmanOauth2: off" in admin.last().text and "Never set" in admin.last().text
    await admin.press("Turn enablePostmanOauth2 on")
    assert "enablePostmanOauth2: on" in admin.last().text and "Set here by an admin" in admin.last().text
    async with harness.session() as s:
        assert await OAuthService(s, harness.app.deps, harness.app.settings).flag_enabled()
        row = await s.get(FeatureFlag, "enablePostmanOauth2")
        assert row is not None and row.updated_by == ADMIN
    await admin.press("Turn enablePostmanOauth2 off")
    assert "enablePostmanOauth2: off" in admin.last().text


async def test_flag_from_configuration_wins_and_says_so(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN], enable_postman_oauth2=True)
    async with harness.session() as s:
        s.add(FeatureFlag(name="enablePostmanOauth2", enabled=False, updated_by=ADMIN))
        await s.commit()
    admin = await open_admin(harness, "🚩 Feature flags")
    text = admin.last().text
    assert "enablePostmanOauth2: on" in text and "Set by the configuration" in text
    assert "The value chosen here (off) is kept but ignored" in text
    assert not any("Turn" in label for label in admin.buttons())
    # a button from an older screen can't override the configuration either
    forged = await admin.press_data(AdminCB(section="flag", action="set", item=0, value="0").pack(), admin.last().message_id)
    assert "configuration wins" in (forged.text or "")
    async with harness.session() as s:
        assert await OAuthService(s, harness.app.deps, harness.app.settings).flag_enabled()


# ---- status --------------------------------------------------------------------------------
async def test_status_counts(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    gmail = await service_by_code(harness, "gmail")
    yandex = await service_by_code(harness, "yandex")
    now = datetime.now(UTC)
    states = [
        (gmail, "connected", None), (gmail, "connected", None), (gmail, "broken", "imap: auth_failed: bad password"),
        (yandex, "reconnecting", "imap: timeout: no answer"), (yandex, "connected", None), (yandex, "draft", None),
    ]
    async with harness.session() as s:
        # another instance of the fleet, alive all day: this one's lease pass leaves its mailboxes be
        s.add(Instance(id="another-instance", started_at=now, last_seen=now + timedelta(days=1)))
        for n, (service, state, error) in enumerate(states):
            uid = 7500 + n
            s.add(User(id=uid, language="en", is_active=n != 4))
            await s.flush()
            box = Mailbox(
                user_id=uid, service_id=service.id, email=f"u{n}@status.test", login=f"u{n}", secret_enc="x",
                imap_host="localhost", imap_port=1, imap_security="ssl", smtp_host="localhost", smtp_port=1,
                smtp_security="ssl", state=state, last_error=error, state_since=now - timedelta(minutes=n),
            )
            s.add(box)
            await s.flush()
            # watched by another instance of the fleet: this one's lease pass leaves them be
            # (else it would try localhost:1 and move them to reconnecting mid-test)
            s.add(MailboxLease(mailbox_id=box.id, owner="another-instance"))
        s.add(User(id=7599, language="ru", is_active=False))
        await s.commit()
    admin = await open_admin(harness, "📊 Status")
    text = admin.last().text
    # 6 + 1 users created here + the admin; inactive: 7504 and 7599
    assert "8 users (6 active, 2 blocked the bot)" in text
    assert "🟢 3 connected · 🟡 1 reconnecting · 🔴 1 broken" in text
    assert "• Gmail: 2 / 0 / 1" in text and "• Yandex: 1 / 1 / 0" in text
    assert "u2@status.test (Gmail, 🔴 connection broken" in text and "bad password" in text
    assert "u3@status.test (Yandex, 🟡 reconnecting" in text and "no answer" in text
    assert "u0@status.test" not in text
    assert text.index("u2@status.test") < text.index("u3@status.test"), "newest problem first"


# ---- units ---------------------------------------------------------------------------------
def test_parse_server_and_domains() -> None:
    from mail.types import Protocol, Security, ServerSettings
    from services.admin import parse_domains, parse_server

    imap, smtp = Protocol.IMAP, Protocol.SMTP
    assert parse_server("mail.acme.com", imap) == ServerSettings("mail.acme.com", 993, Security.SSL)
    assert parse_server("mail.acme.com starttls", imap) == ServerSettings("mail.acme.com", 143, Security.STARTTLS)
    assert parse_server("Mail.Acme.com:143", imap) == ServerSettings("mail.acme.com", 143, Security.STARTTLS)
    assert parse_server("mail.acme.com:2993 TLS", imap) == ServerSettings("mail.acme.com", 2993, Security.SSL)
    assert parse_server("smtp.acme.com 587", smtp) == ServerSettings("smtp.acme.com", 587, Security.STARTTLS)
    assert parse_server("smtp.acme.com ssl", smtp) == ServerSettings("smtp.acme.com", 465, Security.SSL)
    assert parse_server("10.0.0.5:25 starttls", smtp) == ServerSettings("10.0.0.5", 25, Security.STARTTLS)
    for bad in ("", "mail.acme.com:0", "mail.acme.com:99999", "http://mail.acme.com", "a b c d", "mail.acme.com plain"):
        assert parse_server(bad, imap) is None, bad
    assert parse_domains("Acme.com, @acme.ru;acme.com") == ["acme.com", "acme.ru"]
    assert parse_domains("localhost") is None and parse_domains("") is None and parse_domains("a..b") is None


async def test_probe_reports_tls_and_greeting_on_every_kind_of_port(harness: BotHarness) -> None:
    from mail.types import Protocol, Security, ServerSettings
    from services.admin import probe

    await harness.start(admin_ids=[ADMIN])
    stack, deps = harness.stack, harness.app.deps
    cases = [
        (Protocol.IMAP, stack.imap_ssl_port, Security.SSL, "IMAP4rev1"),
        (Protocol.IMAP, stack.imap_starttls_port, Security.STARTTLS, "IMAP"),
        (Protocol.SMTP, stack.smtp_ssl_port, Security.SSL, "ESMTP"),
        (Protocol.SMTP, stack.smtp_starttls_port, Security.STARTTLS, "ESMTP"),
    ]
    for protocol, port, security, greeting in cases:
        report = await probe(ServerSettings("localhost", port, security), protocol,
                             ssl_context=deps.ssl_context, guard=deps.guard, timeout=5)
        assert report.ok and report.tls_version.startswith("TLSv1") and report.greeting.startswith(greeting), report
    # implicit TLS on a STARTTLS port, and nothing listening: failures that say what is wrong
    wrong = await probe(ServerSettings("localhost", stack.imap_starttls_port, Security.SSL), Protocol.IMAP,
                        ssl_context=deps.ssl_context, guard=deps.guard, timeout=3)
    assert not wrong.ok and wrong.kind is not None
    closed = await probe(ServerSettings("localhost", closed_port(), Security.SSL), Protocol.SMTP,
                         ssl_context=deps.ssl_context, guard=deps.guard, timeout=3)
    assert not closed.ok and closed.kind is not None and closed.kind.value == "connection_refused"


async def test_admin_screens_in_russian(harness: BotHarness) -> None:
    await harness.start(admin_ids=[ADMIN])
    admin = harness.user(ADMIN, language_code="ru")
    await admin.send("/admin")
    assert "Администрирование" in admin.last().text
    for section, title in (("📮 Стандартные сервисы", "Стандартные сервисы"), ("🏢 Серверы компании", "Серверов компании пока нет"),
                           ("🚩 Флаги функций", "enablePostmanOauth2"), ("📊 Состояние", "1 пользователь (")):
        await admin.press(section)
        assert title in admin.last().text, admin.last().text
        await admin.press("⬅️ Назад")
    await admin.press("📣 Оповещение о сбое")
    assert "Пришлите текст оповещения" in admin.last().text


async def test_an_admin_who_never_opened_the_bot_does_not_cost_the_others_their_menu(harness: BotHarness) -> None:
    ghost, other = 4243, 4244
    # Telegram answers "chat not found" for an admin who never opened the bot
    harness.fake.fail("setMyCommands", status=400, description="Bad Request: chat not found", chat_id=ghost, times=None)
    await harness.start(admin_ids=[ghost, ADMIN, other])
    everyone = ["start", "inbox", "search", "settings", "cancel", "help"]
    for admin_id in (ADMIN, other):
        for language in ("", "ru"):
            assert menu_of(harness, {"type": "chat", "chat_id": admin_id}, language) == [*everyone, "admin"]
    assert menu_of(harness, {"type": "chat", "chat_id": ghost}) == []
