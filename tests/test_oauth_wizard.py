"""OAuth2 sign-in end to end: a person talks to the real bot through the fake Bot API, signs in
at the local authorization server with a scripted browser that follows the redirect to the
bot's own callback page, and the bot logs in to the real Dovecot and SMTP server with the token
(OAUTHBEARER, which both offer besides XOAUTH2).
Then the token expires and is refreshed silently; then the grant is revoked at the provider and
the account is reported broken. Admin commands, the device flow and every refused callback
(forged, replayed, another user's, no PKCE verifier, expired, denied, provider error)."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from sqlalchemy import func, select, update

from mail.imap import close_imap, open_imap
from services.mailboxes import servers_of
from services.oauth import CALLBACK_PATH, OAuthService, ReauthorizationRequired
from storage.models import Mailbox, OAuthState, Service
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.oauth_server import OAuthServer, ScriptedBrowser, TestClient
from tests.harness.plugin_app import BotHarness

ADMIN = 9100
UNKNOWN = "I don't know that command"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class World:
    def __init__(self, h: BotHarness, oauth: OAuthServer, public_url: str) -> None:
        self.h = h
        self.oauth = oauth
        self.public_url = public_url

    @property
    def callback(self) -> str:
        return self.public_url + CALLBACK_PATH

    async def company(self, code: str, name: str) -> None:
        stack = self.h.stack
        async with self.h.session() as s:
            s.add(Service(
                code=code, kind="company", name_en=name, name_ru=name, domains="example.org",
                imap_host="localhost", imap_port=stack.imap_ssl_port, imap_security="ssl",
                smtp_host="localhost", smtp_port=stack.smtp_starttls_port, smtp_security="starttls",
                enabled=True, sort_order=700,
            ))
            await s.commit()

    async def configure(self, code: str, *, device: bool = False, lifetime: int = 3600) -> TestClient:
        """The admin registers a client at the provider and tells the bot about it."""
        client = self.oauth.add_client(redirect_uris=[self.callback], device=device, access_token_lifetime=lifetime)
        admin = self.h.user(ADMIN)
        args = [code, client.client_id, client.client_secret or "-", self.oauth.authorize_url, self.oauth.token_url]
        if device:
            args.append(self.oauth.device_url)
        args += ["mail", "offline"]
        msg_id = await admin.send("/oauth_client " + " ".join(args))
        assert admin.is_deleted(msg_id), "the message with the client secret must be deleted"
        reply = admin.last().text
        assert "saved" in reply and client.client_secret not in reply  # type: ignore[operator]
        async with self.h.session() as s:
            await s.execute(update(Service).where(Service.code == code).values(oauth2_revoke_url=self.oauth.revoke_url))
            await s.commit()
        return client

    async def mailbox(self, user_id: int) -> Mailbox | None:
        async with self.h.session() as s:
            return (await s.execute(select(Mailbox).where(Mailbox.user_id == user_id))).scalar_one_or_none()


@pytest.fixture
async def world(harness: BotHarness, mail_stack: MailStack) -> World:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    await harness.start(public_url=public_url, web_port=port, admin_ids=[ADMIN])
    admin = harness.user(ADMIN)
    await admin.send("/oauth_flag on")
    assert "is on" in admin.last().text
    return World(harness, oauth, public_url)


async def to_password_step(user: Any, service: str, email: str) -> None:
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press(service)
    await user.send(email)
    await user.press(f"Use {email}")
    assert "Send the password" in user.last().text


async def authorize(user: Any, service: str) -> str:
    """Press Authorize; the sign-in link from the bot's message."""
    await user.press(f"🔐 Authorize with {service}")
    message = await user.wait_for(lambda m: any(b.url for row in m.buttons for b in row))
    return message.button(f"🔐 Sign in at {service}").url or ""


async def finish_wizard(user: Any) -> None:
    await user.wait_for_text("Signed in to IMAP and SMTP", timeout=10)
    await user.send("Sent via OAuth")
    await user.press("🔔 Notify")
    await user.press("🔔 With sound")
    await user.press("✅ Allow")
    await user.press("💾 Save")
    await user.wait_for_text("Mailbox connected", timeout=15)


async def imap_works(stack: MailStack, login: str, token: str) -> bool:
    from mail.netguard import HostGuard
    from mail.types import Credentials, MailCheckError, Security, ServerSettings

    try:
        client = await open_imap(
            ServerSettings("localhost", stack.imap_ssl_port, Security.SSL), Credentials(login, oauth2_token=token),
            ssl_context=stack.client_ssl_context(), guard=HostGuard(allow_private=True), timeout=5,
        )
    except MailCheckError:
        return False
    await close_imap(client)
    return True


async def no_oauth_mailbox(world: World, user_id: int) -> None:
    box = await world.mailbox(user_id)
    assert box is None or box.auth_kind != "oauth2", "nothing may be stored after a refused sign-in"


# ---- visibility and admin commands -----------------------------------------------------------
async def test_flag_off_shows_nothing_and_non_admins_get_unknown_command(harness: BotHarness, mail_stack: MailStack, mail_user: MailUser) -> None:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    await harness.start(public_url=f"http://127.0.0.1:{port}", web_port=port, admin_ids=[ADMIN])
    world = World(harness, oauth, f"http://127.0.0.1:{port}")
    await world.company("acme-off", "Acme Off")
    await world.configure("acme-off")  # client configured, flag still off
    assert "users will see Authorize once it is on (/oauth_flag on)" in harness.user(ADMIN).last().text
    user = harness.user(9101)
    await to_password_step(user, "Acme Off", mail_user.address)
    assert not any("Authorize" in label for label in user.buttons()) and "Authorize" not in user.last().text
    await user.send("/cancel")
    # a non-admin: the ordinary reply, no hint that the commands exist, nothing changed
    for command in ("/oauth_flag on", "/oauth_client acme-off id secret", "/oauth_flag"):
        msg_id = await user.send(command)
        assert user.last().text.startswith(UNKNOWN) and not user.is_deleted(msg_id)
    await user.send("/no_such_command")
    assert user.last().text.startswith(UNKNOWN)
    async with harness.session() as s:
        assert not await OAuthService(s, harness.app.deps, harness.app.settings).flag_enabled()


async def test_configuration_wins_over_the_admin(harness: BotHarness, mail_stack: MailStack, mail_user: MailUser) -> None:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    await harness.start(public_url=f"http://127.0.0.1:{port}", web_port=port, admin_ids=[ADMIN], enable_postman_oauth2=False)
    world = World(harness, oauth, f"http://127.0.0.1:{port}")
    await world.company("acme-cfg", "Acme Cfg")
    await world.configure("acme-cfg")
    admin = harness.user(ADMIN)
    assert "switched off in the configuration: users will see Authorize once the configuration turns it on" in admin.last().text
    await admin.send("/oauth_flag on")
    assert "configuration" in admin.last().text and "stays off" in admin.last().text
    user = harness.user(9102)
    await to_password_step(user, "Acme Cfg", mail_user.address)
    assert not any("Authorize" in label for label in user.buttons())


async def test_admin_client_command_validates(world: World) -> None:
    admin = world.h.user(ADMIN)
    await admin.send("/oauth_client")
    assert "Usage" in admin.last().text and "gmail" in admin.last().text
    msg_id = await admin.send("/oauth_client nosuch id topsecret")
    assert admin.is_deleted(msg_id) and "no service with the code nosuch" in admin.last().text
    assert "topsecret" not in admin.last().text
    await admin.send("/oauth_client other id topsecret http://idp.example/auth http://idp.example/token")
    assert "Not saved" in admin.last().text and "topsecret" not in admin.last().text
    await admin.send("/oauth_client gmail gid topsecret")  # built-in endpoints
    text = admin.last().text
    assert "Gmail" in text and "sign-in by link" in text and world.callback in text and "topsecret" not in text
    assert "users will see" not in text, "the flag is on: no word about it"
    async with world.h.session() as s:
        gmail = (await s.execute(select(Service).where(Service.code == "gmail"))).scalar_one()
        assert gmail.oauth2_client_id == "gid" and "topsecret" not in (gmail.oauth2_client_secret_enc or "")


# ---- code flow end to end --------------------------------------------------------------------
async def test_authorize_connect_refresh_then_revoked(world: World, mail_user: MailUser, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await world.company("acme", "Acme")
    client_registration = await world.configure("acme", lifetime=30)  # under a minute: every use refreshes first
    user = world.h.user(9103)
    await to_password_step(user, "Acme", mail_user.address)
    assert "Authorize" in user.last().text
    url = await authorize(user, "Acme")
    assert url.startswith(world.oauth.authorize_url)
    browser = ScriptedBrowser()
    page = await browser.sign_in(url, mail_user.address, mail_user.password)
    assert page.url.startswith(world.callback) and page.status == 200
    assert "Signed in" in page.text and "Back to Telegram" in page.text and "https://t.me/" in page.text
    await user.wait_for_text("Signed in at Acme")
    await user.wait_for_text("Signed in to IMAP and SMTP", timeout=10)
    draft = await world.mailbox(user.id)
    assert draft is not None and draft.state == "draft"
    async with world.h.session() as s:
        first = OAuthService(s, world.h.app.deps).tokens_of(draft)
    fsm_data = str(await world.h.app.extra["oauth_flows"].notifier.fsm(user.id).get_data())
    assert first.access_token not in fsm_data and str(first.refresh_token) not in fsm_data
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None and box.state == "connected" and box.auth_kind == "oauth2"
    assert mail_user.password not in box.secret_enc
    async with world.h.session() as s:
        tokens = OAuthService(s, world.h.app.deps).tokens_of(box)
    assert tokens.refresh_token and tokens.access_token not in box.secret_enc
    assert await world.mailbox(user.id) is not None
    async with world.h.session() as s:
        assert (await s.execute(select(func.count()).select_from(OAuthState).where(OAuthState.used_at.is_(None)))).scalar() == 0

    # the access token expires: the next use refreshes silently and IMAP still works
    world.oauth.expire_access_tokens(mail_user.address)
    assert not await imap_works(world.h.stack, mail_user.address, tokens.access_token)
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        creds = await OAuthService(s, world.h.app.deps).fresh_credentials(box)
        await s.commit()
    assert creds.oauth2_token and creds.oauth2_token != tokens.access_token
    client = await open_imap(
        servers_of(box).imap, creds, ssl_context=world.h.app.deps.ssl_context, guard=world.h.app.deps.guard, timeout=5
    )
    await close_imap(client)

    # the person withdraws the bot's access at the provider: the account is reported broken
    world.oauth.revoke_user(mail_user.address)
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        with pytest.raises(ReauthorizationRequired):
            await OAuthService(s, world.h.app.deps).fresh_credentials(box)
        await s.commit()
    box = await world.mailbox(user.id)
    assert box is not None and box.state == "broken" and box.last_error == "oauth:invalid_grant"

    # no secret in any of the bot's log lines (authlib's are the provider's own): tokens, the
    # client secret, the code, the state
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith("authlib"))
    assert "refreshed" in logged
    callback_query = parse_qs(urlsplit(next(u for u in browser.history if CALLBACK_PATH in u)).query)
    for secret in (first.access_token, first.refresh_token, creds.oauth2_token, client_registration.client_secret,
                   callback_query["code"][0], callback_query["state"][0]):
        assert secret and secret not in logged


async def test_delete_revokes_at_the_provider(world: World, mail_user: MailUser) -> None:
    await world.company("acme-rv", "Acme RV")
    await world.configure("acme-rv")
    user = world.h.user(9104)
    await to_password_step(user, "Acme RV", mail_user.address)
    page = await ScriptedBrowser().sign_in(await authorize(user, "Acme RV"), mail_user.address, mail_user.password)
    assert page.status == 200
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None
    async with world.h.session() as s:
        svc = OAuthService(s, world.h.app.deps)
        tokens = svc.tokens_of(box)
        assert await svc.revoke(box) is True
    assert not world.oauth.is_active(tokens.access_token)


# ---- device flow end to end ------------------------------------------------------------------
async def test_device_flow_end_to_end(world: World, mail_user: MailUser) -> None:
    await world.company("acme-dev", "Acme Dev")
    await world.configure("acme-dev", device=True)
    user = world.h.user(9105)
    await to_password_step(user, "Acme Dev", mail_user.address)
    await user.press("🔐 Authorize with Acme Dev")
    prompt = await user.wait_for_text("enter the code")
    code = prompt.text.split("enter the code", 1)[1].split()[0]
    link = prompt.button("🔗 Open Acme Dev").url or ""
    assert link.startswith(world.oauth.page_base_url + "/") and link.startswith("https://")
    page = await world.oauth.browser().enter_device_code(link, code, mail_user.address, mail_user.password)
    assert page.status == 200
    await user.wait_for_text("Signed in at Acme Dev", timeout=10)
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None and box.state == "connected" and box.auth_kind == "oauth2"


@pytest.mark.parametrize("where", ["remote", "loopback"])
async def test_device_link_that_is_not_https_is_explained(
    world: World, mail_user: MailUser, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider whose verification link is plain http (on a remote host, or on loopback,
    where the person's browser is not): a clear message, the password step with Authorize
    again, no link shown, no traceback."""
    caplog.set_level(logging.WARNING)
    code = f"acme-http-{where}"
    await world.company(code, "Acme HTTP")
    await world.configure(code, device=True)
    insecure = "http://idp.example.test/device" if where == "remote" else f"{world.oauth.base_url}/device"
    world.oauth.device_page_url = insecure
    try:
        user = world.h.user(9120 if where == "remote" else 9121)
        await to_password_step(user, "Acme HTTP", mail_user.address)
        mark = user.mark()
        await user.press("🔐 Authorize with Acme HTTP")
        told = await user.wait_for(lambda m: "not secure" in m.text, since=mark)
        assert "send the password instead" in told.text and insecure not in told.text
        step = await user.wait_for(lambda m: "Send the password" in m.text, since=mark)
        assert "🔐 Authorize with Acme HTTP" in step.labels, "the person can still choose"
        assert not any(b.url for m in user.messages() for row in m.buttons for b in row), "no link was shown"
    finally:
        world.oauth.device_page_url = None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback in the log"
    await no_oauth_mailbox(world, user.id)


async def test_device_flow_denied(world: World, mail_user: MailUser) -> None:
    await world.company("acme-dd", "Acme DD")
    await world.configure("acme-dd", device=True)
    user = world.h.user(9106)
    await to_password_step(user, "Acme DD", mail_user.address)
    await user.press("🔐 Authorize with Acme DD")
    prompt = await user.wait_for_text("enter the code")
    code = prompt.text.split("enter the code", 1)[1].split()[0]
    await world.oauth.browser().enter_device_code(prompt.button("🔗 Open Acme DD").url or "", code, mail_user.address, mail_user.password, allow=False)
    message = await user.wait_for_text("You declined access", timeout=10)
    assert "🔐 Authorize with Acme DD" in message.labels
    await no_oauth_mailbox(world, user.id)


# ---- refused callbacks -----------------------------------------------------------------------
async def test_forged_state_is_refused(world: World, mail_user: MailUser) -> None:
    await world.company("acme-f", "Acme F")
    await world.configure("acme-f")
    user = world.h.user(9107)
    await to_password_step(user, "Acme F", mail_user.address)
    await authorize(user, "Acme F")
    before = len(user.messages())
    page = await ScriptedBrowser().open(world.callback + "?state=forged-state&code=whatever")
    assert page.status == 400 and "not valid" in page.text
    page = await ScriptedBrowser().open(world.callback)
    assert page.status == 400
    assert len(user.messages()) == before  # nobody is told anything about a state nobody owns
    await no_oauth_mailbox(world, user.id)


async def test_replayed_state_is_refused(world: World, mail_user: MailUser) -> None:
    await world.company("acme-r", "Acme R")
    await world.configure("acme-r")
    user = world.h.user(9108)
    await to_password_step(user, "Acme R", mail_user.address)
    browser = ScriptedBrowser()
    page = await browser.sign_in(await authorize(user, "Acme R"), mail_user.address, mail_user.password)
    assert page.status == 200
    await user.wait_for_text("Signed in to IMAP and SMTP", timeout=10)
    mark = user.mark()
    replay = await ScriptedBrowser().open(page.url)
    assert replay.status == 400 and "already used" in replay.text and "changes nothing" in replay.text
    told = await user.wait_for(lambda m: "opened again" in m.text, since=mark)
    assert "changed nothing: your sign-in stands" in told.text and "Nothing was saved" not in told.text
    assert not any("Nothing was saved" in m.text for m in user.messages()), "the sign-in did save the tokens"
    box = await world.mailbox(user.id)
    assert box is not None and box.auth_kind == "oauth2", "the replay took nothing away"


async def test_state_of_another_user_is_refused(world: World, mail_user: MailUser, mail_stack: MailStack) -> None:
    """Alice's state with the code from Bob's sign-in: PKCE binds each code to its own state."""
    await world.company("acme-x", "Acme X")
    await world.configure("acme-x")
    alice, bob = world.h.user(9109), world.h.user(9110)
    await to_password_step(alice, "Acme X", mail_user.address)
    await to_password_step(bob, "Acme X", mail_user.address)
    url_a, url_b = await authorize(alice, "Acme X"), await authorize(bob, "Acme X")
    back_a = await ScriptedBrowser().sign_in(url_a, mail_user.address, mail_user.password, follow_redirects=False)
    back_b = await ScriptedBrowser().sign_in(url_b, mail_user.address, mail_user.password, follow_redirects=False)
    state_a = parse_qs(urlsplit(back_a.url).query)["state"][0]
    code_b = parse_qs(urlsplit(back_b.url).query)["code"][0]
    page = await ScriptedBrowser().open(f"{world.callback}?state={state_a}&code={code_b}")
    assert page.status == 400 and "did not confirm" in page.text
    await alice.wait_for_text("did not confirm the sign-in")
    await no_oauth_mailbox(world, alice.id)
    await no_oauth_mailbox(world, bob.id)


async def test_missing_verifier_and_expired_state_are_refused(world: World, mail_user: MailUser) -> None:
    await world.company("acme-e", "Acme E")
    await world.configure("acme-e")
    user = world.h.user(9111)
    await to_password_step(user, "Acme E", mail_user.address)
    back = await ScriptedBrowser().sign_in(await authorize(user, "Acme E"), mail_user.address, mail_user.password, follow_redirects=False)
    async with world.h.session() as s:
        await s.execute(update(OAuthState).where(OAuthState.user_id == user.id).values(code_verifier_enc=None))
        await s.commit()
    page = await ScriptedBrowser().open(back.url)
    assert page.status == 400 and "could not be verified" in page.text
    await user.wait_for_text("could not be verified")
    await no_oauth_mailbox(world, user.id)

    message = await user.wait_for(lambda m: "🔐 Authorize with Acme E" in m.labels)
    await user.press("🔐 Authorize with Acme E", message.message_id)
    url = (await user.wait_for(lambda m: "🔐 Sign in at Acme E" in m.labels, new_only=False)).button("🔐 Sign in at Acme E").url
    back = await ScriptedBrowser().sign_in(url or "", mail_user.address, mail_user.password, follow_redirects=False)
    async with world.h.session() as s:  # 10 minutes pass
        await s.execute(update(OAuthState).where(OAuthState.used_at.is_(None)).values(expires_at=datetime.now(UTC) - timedelta(seconds=5)))
        await s.commit()
    page = await ScriptedBrowser().open(back.url)
    assert page.status == 400 and "expired" in page.text
    await user.wait_for_text("took longer than 10 minutes")
    await no_oauth_mailbox(world, user.id)


async def test_denied_consent_and_provider_error(world: World, mail_user: MailUser) -> None:
    await world.company("acme-d", "Acme D")
    await world.configure("acme-d")
    user = world.h.user(9112)
    await to_password_step(user, "Acme D", mail_user.address)
    page = await ScriptedBrowser().sign_in(await authorize(user, "Acme D"), mail_user.address, mail_user.password, allow=False)
    assert page.status == 400 and "declined" in page.text
    retry = await user.wait_for_text("You declined access at Acme D")
    await user.press("🔐 Authorize with Acme D", retry.message_id)
    url = (await user.wait_for(lambda m: "🔐 Sign in at Acme D" in m.labels)).button("🔐 Sign in at Acme D").url
    world.oauth.next_authorize_error = "server_error"
    page = await ScriptedBrowser().sign_in(url or "", mail_user.address, mail_user.password)
    assert page.status == 400 and "reported an error" in page.text
    await user.wait_for_text("Acme D reported an error during sign-in (server_error")
    await no_oauth_mailbox(world, user.id)


async def test_callback_after_the_wizard_was_cancelled_stores_nothing(world: World, mail_user: MailUser) -> None:
    await world.company("acme-c", "Acme C")
    await world.configure("acme-c")
    user = world.h.user(9113)
    await to_password_step(user, "Acme C", mail_user.address)
    url = await authorize(user, "Acme C")
    await user.send("/cancel")
    revoked = len(world.oauth.revocations)
    page = await ScriptedBrowser().sign_in(url, mail_user.address, mail_user.password)
    assert page.status == 400 and "cancelled" in page.text
    await user.wait_for_text("Nothing was saved")
    assert await world.mailbox(user.id) is None
    assert len(world.oauth.revocations) == revoked + 1, "tokens nobody will use are revoked at once"
    mark = user.mark()
    replay = await ScriptedBrowser().open(page.url)  # nothing was kept: the replay says so too
    assert replay.status == 400 and "Nothing was saved" in replay.text
    told = await user.wait_for(lambda m: "already used" in m.text, since=mark)
    assert "Nothing was saved" in told.text


async def test_callback_finishes_on_another_instance(world: World, mail_user: MailUser) -> None:
    """Two instances share the database and the FSM storage (Redis in production; here the
    same storage object): the sign-in starts on this one, the provider's redirect reaches the
    other, which never saw the sign-in begin, and the wizard goes on from there."""
    from bot.app import create_bot
    from bot.i18n import Catalog
    from handlers.oauth import ChatSignIn
    from services.oauth_flows import OAuthFlows
    from storage.db import create_engine, create_sessionmaker

    await world.company("acme-2i", "Acme 2I")
    await world.configure("acme-2i")
    user = world.h.user(9122)
    await to_password_step(user, "Acme 2I", mail_user.address)
    back = await ScriptedBrowser().sign_in(await authorize(user, "Acme 2I"), mail_user.address, mail_user.password, follow_redirects=False)
    app = world.h.app
    engine = create_engine(app.settings.database_url)  # the other instance: its own connections, bot and memory
    bot = create_bot(app.settings)
    other = OAuthFlows(
        settings=app.settings, sessionmaker=create_sessionmaker(engine), deps=app.deps,
        notifier=ChatSignIn(bot=bot, storage=app.dispatcher.storage, catalog=Catalog(), sessionmaker=create_sessionmaker(engine), deps=app.deps),
    )
    try:
        query = {k: v[0] for k, v in parse_qs(urlsplit(back.url).query).items()}
        outcome = await other.handle_callback(query)
        assert outcome.ok and outcome.service == "Acme 2I"
        await user.wait_for_text("Signed in at Acme 2I")
        await finish_wizard(user)  # the rest of the wizard runs on the first instance
        again = await other.handle_callback(query)  # delivered twice: handled once
        assert not again.ok and again.key == "done_state"
    finally:
        await other.close()
        await bot.session.close()
        await engine.dispose()
    box = await world.mailbox(user.id)
    assert box is not None and box.state == "connected" and box.auth_kind == "oauth2"


async def test_callback_page_is_not_cached_and_sends_no_referrer(world: World) -> None:
    async with aiohttp.ClientSession() as http, http.get(world.callback + "?state=x&code=y") as response:
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"


# ---- a broken OAuth2 account signs in again (Reconnect -> Save) -------------------------------
async def break_account(world: World, user_id: int, mail_user: MailUser) -> Mailbox:
    world.oauth.revoke_user(mail_user.address)
    box = await world.mailbox(user_id)
    assert box is not None
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        with pytest.raises(ReauthorizationRequired):
            await OAuthService(s, world.h.app.deps).fresh_credentials(box)
        await s.commit()
        assert box.state == "broken"
        return box


async def assert_reconnected(world: World, user_id: int, mail_user: MailUser) -> None:
    box = await world.mailbox(user_id)
    assert box is not None and box.state == "connected" and box.last_error is None
    async with world.h.session() as s:
        tokens = OAuthService(s, world.h.app.deps).tokens_of(box)
    assert await imap_works(world.h.stack, mail_user.address, tokens.access_token)


async def test_broken_account_signs_in_again_by_link(world: World, mail_user: MailUser) -> None:
    await world.company("acme-re", "Acme RE")
    await world.configure("acme-re", lifetime=30)
    user = world.h.user(9114)
    await to_password_step(user, "Acme RE", mail_user.address)
    assert (await ScriptedBrowser().sign_in(await authorize(user, "Acme RE"), mail_user.address, mail_user.password)).status == 200
    await finish_wizard(user)
    box = await break_account(world, user.id, mail_user)
    mark = user.mark()
    assert await world.h.app.extra["oauth_flows"].start_reauthorization(user.id, box.id)
    message = await user.wait_for(lambda m: "🔐 Sign in at Acme RE" in m.labels, since=mark)
    page = await ScriptedBrowser().sign_in(message.button("🔐 Sign in at Acme RE").url or "", mail_user.address, mail_user.password)
    assert page.status == 200
    await user.wait_for_text("Signed in at Acme RE again", timeout=10)
    await assert_reconnected(world, user.id, mail_user)
    # another user cannot start a sign-in for this account
    assert not await world.h.app.extra["oauth_flows"].start_reauthorization(9199, box.id)


async def test_broken_account_signs_in_again_with_a_code(world: World, mail_user: MailUser) -> None:
    await world.company("acme-rd", "Acme RD")
    await world.configure("acme-rd", device=True, lifetime=30)
    user = world.h.user(9115)
    await to_password_step(user, "Acme RD", mail_user.address)
    await user.press("🔐 Authorize with Acme RD")
    prompt = await user.wait_for_text("enter the code")
    code = prompt.text.split("enter the code", 1)[1].split()[0]
    await world.oauth.browser().enter_device_code(prompt.button("🔗 Open Acme RD").url or "", code, mail_user.address, mail_user.password)
    await finish_wizard(user)
    box = await break_account(world, user.id, mail_user)
    mark = user.mark()
    assert await world.h.app.extra["oauth_flows"].start_reauthorization(user.id, box.id)
    prompt = await user.wait_for(lambda m: "enter the code" in m.text, since=mark)
    code = prompt.text.split("enter the code", 1)[1].split()[0]
    await world.oauth.browser().enter_device_code(prompt.button("🔗 Open Acme RD").url or "", code, mail_user.address, mail_user.password)
    await user.wait_for_text("Signed in at Acme RD again", timeout=10)
    await assert_reconnected(world, user.id, mail_user)


async def test_callback_page_speaks_russian(world: World, mail_user: MailUser) -> None:
    await world.company("acme-ru", "Acme RU")
    await world.configure("acme-ru")
    user = world.h.user(9116, language_code="ru")
    await user.send("/start")
    await user.press("📬 Подключить почту")
    await user.press("Acme RU")
    await user.send(mail_user.address)
    await user.press(f"Использовать {mail_user.address}")
    await user.press("🔐 Войти через Acme RU")
    message = await user.wait_for(lambda m: "🔐 Войти в Acme RU" in m.labels)
    page = await ScriptedBrowser().sign_in(message.button("🔐 Войти в Acme RU").url or "", mail_user.address, mail_user.password)
    assert page.status == 200 and "Вход выполнен" in page.text and "Вернуться в Telegram" in page.text
    page = await ScriptedBrowser().open(page.url)  # replayed: the user's language too
    assert page.status == 400 and "уже была использована" in page.text and "ничего не меняет" in page.text
    forged = await ScriptedBrowser().open(world.callback + "?state=nope")
    assert forged.status == 400 and "not valid" in forged.text  # unknown user: the browser's language (none: English)


async def test_device_sign_in_after_cancel_stores_nothing(world: World, mail_user: MailUser) -> None:
    import asyncio

    await world.company("acme-dc", "Acme DC")
    await world.configure("acme-dc", device=True)
    user = world.h.user(9117)
    await to_password_step(user, "Acme DC", mail_user.address)
    await user.press("🔐 Authorize with Acme DC")
    prompt = await user.wait_for_text("enter the code")
    code = prompt.text.split("enter the code", 1)[1].split()[0]
    await user.send("/cancel")
    await world.oauth.browser().enter_device_code(prompt.button("🔗 Open Acme DC").url or "", code, mail_user.address, mail_user.password)
    flows = world.h.app.extra["oauth_flows"]
    for _ in range(50):  # the polling notices the cancelled wizard within one interval
        if not flows.polling(user.id):
            break
        await asyncio.sleep(0.1)
    assert not flows.polling(user.id)
    assert not any("Signed in at Acme DC" in m.text for m in user.messages())
    assert await world.mailbox(user.id) is None
