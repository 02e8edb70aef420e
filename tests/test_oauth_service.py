"""services/oauth.py against the local authorization server, the real Dovecot and a real
database: flag precedence, client configuration, sign-in states and every way a callback can
be wrong, token refresh with rotation, invalid_grant, revocation."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from mail.imap import close_imap, open_imap
from mail.netguard import HostGuard
from mail.oauth2 import TokenSet
from mail.types import FailureKind, MailCheckError, MailServers, Security, ServerSettings
from services.mailboxes import AccountInput, MailboxService
from services.oauth import (
    CALLBACK_PATH,
    FLAG,
    OAuthProblem,
    OAuthService,
    Problem,
    ReauthorizationRequired,
    hash_state,
)
from storage.models import FeatureFlag, Mailbox, OAuthState, Service, User
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.oauth_server import OAuthServer, ScriptedBrowser, TestClient
from tests.harness.plugin_app import BotHarness


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Env:
    """The started bot's database and deps, the provider, and one company service with a
    client registered at the provider."""

    def __init__(self, h: BotHarness, oauth: OAuthServer, public_url: str) -> None:
        self.h = h
        self.oauth = oauth
        self.public_url = public_url
        self.client: TestClient | None = None

    def service(self, session: Any) -> OAuthService:
        return OAuthService(session, self.h.app.deps, self.h.app.settings)

    async def add_company(self, code: str = "corp", *, device: bool = False, lifetime: int = 3600) -> Service:
        stack = self.h.stack
        self.client = self.oauth.add_client(
            redirect_uris=[self.public_url + CALLBACK_PATH], device=device, access_token_lifetime=lifetime
        )
        async with self.h.session() as s:
            s.add(Service(
                code=code, kind="company", name_en="Corp", name_ru="Корп", domains="example.org",
                imap_host="localhost", imap_port=stack.imap_ssl_port, imap_security="ssl",
                smtp_host="localhost", smtp_port=stack.smtp_ssl_port, smtp_security="ssl", enabled=True, sort_order=600,
            ))
            await s.flush()
            service = await self.service(s).configure_client(
                code, self.client.client_id, self.client.client_secret,
                authorize_url=self.oauth.authorize_url, token_url=self.oauth.token_url,
                device_url=self.oauth.device_url if device else None, scopes=["mail", "offline"],
            )
            service.oauth2_revoke_url = self.oauth.revoke_url
            await s.commit()
            return service

    async def add_user(self, user_id: int) -> None:
        async with self.h.session() as s:
            s.add(User(id=user_id, language="en"))
            await s.commit()

    async def begin(self, user_id: int, service_code: str, email: str) -> str:
        async with self.h.session() as s:
            svc = self.service(s)
            service = await svc.services.by_code(service_code)
            assert service is not None
            setup = await svc.offer(service)
            assert setup is not None and setup.flow == "code"
            url = await svc.begin_code(user_id, setup, email=email, login=email, wizard="nonce123")
            await s.commit()
            return url

    async def finish(self, state: str | None, code: str | None, error: str | None = None) -> TokenSet:
        async with self.h.session() as s:
            svc = self.service(s)
            try:
                row = await svc.claim(state)
            finally:
                await s.commit()
            return await svc.exchange(row, code=code, error=error)


@pytest.fixture
async def env(harness: BotHarness, mail_stack: MailStack) -> Env:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    await harness.start(public_url=public_url, web_port=port, enable_postman_oauth2=True)
    return Env(harness, oauth, public_url)


async def sign_in(url: str, user: MailUser, *, allow: bool = True) -> dict[str, str]:
    """The provider's redirect back to the bot, as query parameters (not followed)."""
    page = await ScriptedBrowser().sign_in(url, user.address, user.password, allow=allow, follow_redirects=False)
    assert page.status == 302, page
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def account(stack: MailStack, service_id: int, email: str) -> AccountInput:
    return AccountInput(
        service_id=service_id, email=email, login=email,
        servers=MailServers(
            ServerSettings("localhost", stack.imap_ssl_port, Security.SSL),
            ServerSettings("localhost", stack.smtp_ssl_port, Security.SSL),
        ),
    )


async def imap_login_works(stack: MailStack, login: str, token: str) -> bool:
    from mail.types import Credentials

    try:
        client = await open_imap(
            ServerSettings("localhost", stack.imap_ssl_port, Security.SSL),
            Credentials(login, oauth2_token=token),
            ssl_context=stack.client_ssl_context(), guard=HostGuard(allow_private=True), timeout=5,
        )
    except MailCheckError as exc:
        assert exc.kind is FailureKind.AUTH_FAILED
        return False
    await close_imap(client)
    return True


# ---- flag and configuration ------------------------------------------------------------------
async def test_flag_admin_value_and_configuration_wins(harness: BotHarness) -> None:
    await harness.start()
    app = harness.app
    async with harness.session() as s:
        unset = OAuthService(s, app.deps, harness.settings())
        assert not await unset.flag_enabled()
        assert await unset.set_flag(True, by=1) is True
        await s.commit()
    async with harness.session() as s:
        assert await OAuthService(s, app.deps, harness.settings()).flag_enabled()
        forced_off = OAuthService(s, app.deps, harness.settings(enable_postman_oauth2=False))
        assert not await forced_off.flag_enabled()
        assert await forced_off.set_flag(True) is False  # stored, but configuration wins
        row = await s.get(FeatureFlag, FLAG)
        assert row is not None and row.enabled
        await OAuthService(s, app.deps, harness.settings()).set_flag(False)
        assert await OAuthService(s, app.deps, harness.settings(enable_postman_oauth2=True)).flag_enabled()


async def test_configure_client_validates_and_encrypts(env: Env) -> None:
    service = await env.add_company()
    async with env.h.session() as s:
        stored = await s.get(Service, service.id)
        assert stored is not None and stored.oauth2_client_id == env.client.client_id  # type: ignore[union-attr]
        assert stored.oauth2_client_secret_enc and env.client.client_secret not in stored.oauth2_client_secret_enc  # type: ignore[union-attr,operator]
        svc = env.service(s)
        with pytest.raises(LookupError):
            await svc.configure_client("no-such-service", "id", "secret")
        with pytest.raises(ValueError):  # a company server needs endpoints
            await svc.configure_client("corp", "id", "secret")
        with pytest.raises(ValueError):  # plain http off loopback
            await svc.configure_client("corp", "id", "secret", authorize_url="http://idp.example/a", token_url="http://idp.example/t")
        # a standard service has built-in endpoints: the client id is enough
        gmail = await svc.configure_client("gmail", "gid", "gsecret")
        setup = svc.setup_for(gmail)
        assert setup is not None and setup.flow == "code" and setup.endpoints.authorize_url.startswith("https://accounts.google.com")  # type: ignore[union-attr]
        outlook = await svc.configure_client("outlook.com", "mid", None)
        setup = svc.setup_for(outlook)
        assert setup is not None and setup.flow == "device" and setup.client.client_secret is None


# ---- code flow -------------------------------------------------------------------------------
async def test_code_flow_state_is_hashed_single_use_and_bound(env: Env, mail_user: MailUser) -> None:
    await env.add_company()
    await env.add_user(4101)
    url = await env.begin(4101, "corp", mail_user.address)
    query = parse_qs(urlsplit(url).query)
    state = query["state"][0]
    assert query["code_challenge_method"] == ["S256"] and query["redirect_uri"] == [env.public_url + CALLBACK_PATH]
    async with env.h.session() as s:
        row = (await s.execute(select(OAuthState))).scalar_one()
        assert row.state_hash == hash_state(state) and state not in row.state_hash
        assert row.user_id == 4101 and row.code_verifier_enc and row.used_at is None
    back = await sign_in(url, mail_user)
    assert back["state"] == state
    tokens = await env.finish(back["state"], back["code"])
    assert await imap_login_works(env.h.stack, mail_user.address, tokens.access_token)
    with pytest.raises(OAuthProblem) as err:  # replay of a sign-in whose tokens were not kept
        await env.finish(back["state"], back["code"])
    assert err.value.problem is Problem.USED_STATE and err.value.user_id == 4101
    async with env.h.session() as s:  # the tokens came back: the verifier goes
        svc = env.service(s)
        await svc.mark_done((await s.execute(select(OAuthState))).scalar_one())
        await s.commit()
        assert (await s.execute(select(OAuthState))).scalar_one().code_verifier_enc is None
    with pytest.raises(OAuthProblem) as err:  # replay of a completed sign-in: "changes nothing"
        await env.finish(back["state"], back["code"])
    assert err.value.problem is Problem.DONE_STATE and err.value.user_id == 4101


async def test_forged_expired_denied_error_and_missing_verifier(env: Env, mail_user: MailUser) -> None:
    await env.add_company()
    await env.add_user(4102)
    for forged in (None, "", "x" * 500, "not-a-state-we-issued"):
        with pytest.raises(OAuthProblem) as err:
            await env.finish(forged, "code")
        assert err.value.problem is Problem.UNKNOWN_STATE and err.value.user_id is None

    # expired: signed in in time at the provider, came back after 10 minutes
    url = await env.begin(4102, "corp", mail_user.address)
    back = await sign_in(url, mail_user)
    async with env.h.session() as s:
        await s.execute(update(OAuthState).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        await s.commit()
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back["state"], back["code"])
    assert err.value.problem is Problem.EXPIRED_STATE and err.value.user_id == 4102

    # denied consent, and a provider error
    back = await sign_in(await env.begin(4102, "corp", mail_user.address), mail_user, allow=False)
    assert back["error"] == "access_denied"
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back["state"], None, back["error"])
    assert err.value.problem is Problem.DENIED
    env.oauth.next_authorize_error = "temporarily_unavailable"
    back = await sign_in(await env.begin(4102, "corp", mail_user.address), mail_user)
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back["state"], back.get("code"), back["error"])
    assert err.value.problem is Problem.PROVIDER_ERROR and "temporarily_unavailable" in err.value.detail

    # the PKCE verifier is gone: refused before the provider is asked
    url = await env.begin(4102, "corp", mail_user.address)
    back = await sign_in(url, mail_user)
    async with env.h.session() as s:
        await s.execute(update(OAuthState).where(OAuthState.used_at.is_(None)).values(code_verifier_enc=None))
        await s.commit()
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back["state"], back["code"])
    assert err.value.problem is Problem.NO_VERIFIER


async def test_code_of_another_users_sign_in_is_refused(env: Env, mail_user: MailUser, mail_stack: MailStack) -> None:
    """Mix-up: user A's state with the code from user B's sign-in (B's PKCE challenge)."""
    await env.add_company()
    await env.add_user(4103)
    await env.add_user(4104)
    url_a = await env.begin(4103, "corp", mail_user.address)
    url_b = await env.begin(4104, "corp", mail_user.address)
    back_a = await sign_in(url_a, mail_user)
    back_b = await sign_in(url_b, mail_user)
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back_a["state"], back_b["code"])
    assert err.value.problem is Problem.EXCHANGE_FAILED and err.value.user_id == 4103
    # and B's state is still good for B's own code
    tokens = await env.finish(back_b["state"], back_b["code"])
    assert tokens.access_token


async def test_a_new_sign_in_retires_the_older_one(env: Env, mail_user: MailUser) -> None:
    await env.add_company()
    await env.add_user(4105)
    first = await env.begin(4105, "corp", mail_user.address)
    second = await env.begin(4105, "corp", mail_user.address)
    back = await sign_in(first, mail_user)
    with pytest.raises(OAuthProblem) as err:
        await env.finish(back["state"], back["code"])
    assert err.value.problem is Problem.USED_STATE
    back = await sign_in(second, mail_user)
    assert (await env.finish(back["state"], back["code"])).access_token


# ---- tokens: refresh, rotation, invalid_grant, revocation -------------------------------------
async def connected_mailbox(env: Env, user_id: int, mail_user: MailUser, service: Service) -> int:
    await env.add_user(user_id)
    back = await sign_in(await env.begin(user_id, service.code, mail_user.address), mail_user)
    tokens = await env.finish(back["state"], back["code"])
    async with env.h.session() as s:
        box = await MailboxService(s, env.h.app.deps).store_tokens(user_id, account(env.h.stack, service.id, mail_user.address), tokens)
        box.state = "connected"
        await s.commit()
        return box.id


async def test_refresh_before_expiry_rotates_and_stores(env: Env, mail_user: MailUser) -> None:
    service = await env.add_company(lifetime=30)  # < 60 s left from the start
    box_id = await connected_mailbox(env, 4106, mail_user, service)
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None and box.auth_kind == "oauth2"
        assert mail_user.password not in box.secret_enc
        before = env.service(s).tokens_of(box)
        assert before.access_token not in box.secret_enc and before.refresh_token not in box.secret_enc  # type: ignore[operator]
    # the old access token dies at the provider; the bot refreshes before using it
    env.oauth.expire_access_tokens(mail_user.address)
    assert not await imap_login_works(env.h.stack, mail_user.address, before.access_token)
    refreshes = env.oauth.refresh_count
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None
        creds = await env.service(s).fresh_credentials(box)
        await s.commit()
    assert env.oauth.refresh_count == refreshes + 1
    assert creds.oauth2_token and creds.oauth2_token != before.access_token
    assert await imap_login_works(env.h.stack, mail_user.address, creds.oauth2_token)
    async with env.h.session() as s:  # the rotated refresh token was stored
        box = await s.get(Mailbox, box_id)
        assert box is not None
        after = env.service(s).tokens_of(box)
        assert after.refresh_token and after.refresh_token != before.refresh_token
        assert after.access_token == creds.oauth2_token


async def test_fresh_token_is_used_without_refresh(env: Env, mail_user: MailUser) -> None:
    service = await env.add_company(lifetime=3600)
    box_id = await connected_mailbox(env, 4107, mail_user, service)
    refreshes = env.oauth.refresh_count
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None
        creds = await env.service(s).fresh_credentials(box)
    assert env.oauth.refresh_count == refreshes
    assert creds.oauth2_token and await imap_login_works(env.h.stack, mail_user.address, creds.oauth2_token)


async def test_revoked_refresh_token_breaks_the_account(env: Env, mail_user: MailUser) -> None:
    service = await env.add_company(lifetime=30)
    box_id = await connected_mailbox(env, 4108, mail_user, service)
    env.oauth.revoke_user(mail_user.address)  # the person withdrew consent at the provider
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None
        with pytest.raises(ReauthorizationRequired) as err:
            await env.service(s).fresh_credentials(box)
        assert err.value.kind is FailureKind.AUTH_FAILED
        await s.commit()
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None and box.state == "broken" and box.last_error == "oauth:invalid_grant"


async def test_revoke_at_the_provider(env: Env, mail_user: MailUser) -> None:
    service = await env.add_company()
    box_id = await connected_mailbox(env, 4109, mail_user, service)
    async with env.h.session() as s:
        box = await s.get(Mailbox, box_id)
        assert box is not None
        tokens = env.service(s).tokens_of(box)
        assert await env.service(s).revoke(box) is True
    assert not env.oauth.is_active(tokens.access_token)
    assert not await imap_login_works(env.h.stack, mail_user.address, tokens.access_token)


# ---- layers --------------------------------------------------------------------------------
def _imports(path: Any, *, top_level_only: bool = False) -> list[tuple[str, bool]]:
    """(module, at top level) for every import in a file, those under `if TYPE_CHECKING:` left
    out (they are not executed)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.append((child.module, top))
            visit(child, top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))

    visit(tree, True)
    return [item for item in found if item[1]] if top_level_only else found


def test_sign_in_service_knows_no_telegram_and_imports_make_no_cycle() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    flows = [m for m, _ in _imports(root / "services" / "oauth_flows.py")]
    assert not [m for m in flows if m.split(".")[0] in {"aiogram", "bot", "handlers", "web"}], flows
    # no import hidden in a function to dodge a cycle, where the sign-in is wired
    for name in ("bot/app.py", "web/app.py", "web/oauth_page.py", "services/mailboxes.py", "services/oauth.py", "services/oauth_flows.py"):
        hidden = [
            m for m, top in _imports(root / name)
            if not top and (m.startswith("handlers") or m in {"services.oauth", "services.oauth_flows", "services.mailboxes"})
        ]
        assert not hidden, (name, hidden)
    assert "handlers.oauth" not in [m for m, _ in _imports(root / "web" / "oauth_page.py")]
    # the services import each other without a cycle
    graph = {
        f"services.{p.stem}": {m for m, _ in _imports(p) if m.startswith("services.")}
        for p in (root / "services").glob("*.py")
    }

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        for target in sorted(graph.get(node, ())):
            found = cycle_from(target, [*path, node])
            if found:
                return found
        return None

    for module in sorted(graph):
        assert cycle_from(module, []) is None, cycle_from(module, [])
