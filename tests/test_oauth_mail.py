"""OAuth2 at the protocol level: mail/oauth2.py against the local authorization server
(tests/harness/oauth_server.py), and token logins to the real Dovecot and the test SMTP
server with tokens that server issued (checked by introspection). Both servers offer
OAUTHBEARER and XOAUTH2, so the client logs in with OAUTHBEARER here (Dovecot's log and the
SMTP server's record of each letter say so); XOAUTH2 is covered by scripted servers that offer
only XOAUTH2 (tests/test_mail_scripted.py)."""

from __future__ import annotations

import asyncio
import email.message
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from mail.imap import close_imap, open_imap
from mail.netguard import HostGuard
from mail.oauth2 import (
    ClientConfig,
    DevicePending,
    Endpoints,
    OAuthClient,
    OAuthError,
    authorization_url,
    builtin_endpoints,
    check_endpoint_url,
    code_challenge,
    new_code_verifier,
)
from mail.smtp import close_smtp, open_smtp
from mail.types import Credentials, FailureKind, MailCheckError, Security, ServerSettings
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.oauth_server import OAuthServer, ScriptedBrowser

REDIRECT = "http://127.0.0.1:9/oauth/callback"  # never reached: the test reads the Location


@pytest.fixture
async def oauth(mail_stack: MailStack) -> OAuthServer:
    return await mail_stack.oauth_server()


def endpoints(server: OAuthServer, scopes: tuple[str, ...] = ("mail",)) -> Endpoints:
    return Endpoints(
        token_url=server.token_url,
        authorize_url=server.authorize_url,
        device_url=server.device_url,
        revoke_url=server.revoke_url,
        scopes=scopes,
    )


def imap_server(stack: MailStack) -> ServerSettings:
    return ServerSettings("localhost", stack.imap_ssl_port, Security.SSL)


def guard() -> HostGuard:
    return HostGuard(allow_private=True)


async def code_for(server: OAuthServer, user: MailUser, client: ClientConfig, verifier: str, state: str = "s1") -> str:
    """Sign in with the scripted browser; the code from the redirect's Location."""
    url = authorization_url(
        endpoints(server), client, redirect_uri=REDIRECT, state=state, verifier=verifier, login_hint=user.address
    )
    browser = ScriptedBrowser()
    page = await browser.sign_in(url, user.address, user.password, follow_redirects=False)
    assert page.status == 302, page
    query = parse_qs(urlsplit(page.url).query)
    assert query["state"] == [state]
    return query["code"][0]


# ---- mail/oauth2.py units --------------------------------------------------------------------
def test_pkce_s256_known_vector() -> None:
    # RFC 7636 appendix B
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128 and verifier != new_code_verifier()


def test_builtin_endpoints_from_providers_data() -> None:
    gmail = builtin_endpoints("gmail")
    assert gmail is not None and gmail.authorize_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert gmail.scopes == ("https://mail.google.com/",) and not gmail.supports_device and gmail.supports_revocation
    assert ("access_type", "offline") in gmail.authorize_params
    outlook = builtin_endpoints("outlook.com")
    assert outlook is not None and outlook.supports_device and "offline_access" in outlook.scopes
    yandex = builtin_endpoints("yandex")
    assert yandex is not None and yandex.supports_device and yandex.device_style == "yandex"
    assert builtin_endpoints("mail.ru") is not None and builtin_endpoints("yahoo") is not None
    assert builtin_endpoints("rambler") is None and builtin_endpoints("nope") is None
    for code in ("gmail", "mail.ru", "yandex", "yahoo", "outlook.com", "office365"):
        ep = builtin_endpoints(code)
        assert ep is not None
        ep.validate()


def test_endpoints_must_be_https_except_loopback() -> None:
    check_endpoint_url("https://login.example.com/token")
    check_endpoint_url("http://127.0.0.1:8080/token")
    check_endpoint_url("http://localhost/token")
    for bad in ("http://login.example.com/token", "ftp://x/", "https://user:pw@x.example/t", "token"):
        with pytest.raises(ValueError):
            check_endpoint_url(bad)


def test_authorization_url_carries_pkce_state_scope_and_hint() -> None:
    ep = Endpoints(token_url="https://p.example/token", authorize_url="https://p.example/auth?tenant=x", scopes=("a", "b"))
    url = authorization_url(ep, ClientConfig("cid", "secret"), redirect_uri="https://bot.example/cb", state="st", verifier="v" * 43, login_hint="me@x.org")
    q = parse_qs(urlsplit(url).query)
    assert q["tenant"] == ["x"] and q["response_type"] == ["code"] and q["client_id"] == ["cid"]
    assert q["scope"] == ["a b"] and q["state"] == ["st"] and q["code_challenge_method"] == ["S256"]
    assert q["code_challenge"] == [code_challenge("v" * 43)] and q["login_hint"] == ["me@x.org"]
    assert "secret" not in url


def test_secrets_not_in_repr() -> None:
    from mail.oauth2 import TokenSet

    tokens = TokenSet("at-hush1", "rt-hush2", time.time() + 60)
    assert "hush" not in repr(tokens) and "hush" not in repr(ClientConfig("id", "cs-hush3"))
    assert TokenSet.from_json(tokens.to_json()).refresh_token == "rt-hush2"


# ---- against the local authorization server --------------------------------------------------
async def test_code_flow_with_pkce_refresh_rotation_and_revocation(oauth: OAuthServer, mail_user: MailUser) -> None:
    registered = oauth.add_client(redirect_uris=[REDIRECT])
    client = ClientConfig(registered.client_id, registered.client_secret)
    verifier = new_code_verifier()
    code = await code_for(oauth, mail_user, client, verifier)
    async with OAuthClient(endpoints(oauth), client) as http:
        tokens = await http.exchange_code(code, redirect_uri=REDIRECT, verifier=verifier)
        assert tokens.refresh_token and tokens.expires_at and tokens.expires_at > time.time() + 3000
        assert oauth.is_active(tokens.access_token)
        # a code is single-use
        with pytest.raises(OAuthError) as err:
            await http.exchange_code(code, redirect_uri=REDIRECT, verifier=verifier)
        assert err.value.invalid_grant
        # refresh rotates the refresh token; the old one is dead afterwards
        fresh = await http.refresh(tokens.refresh_token)
        assert fresh.access_token != tokens.access_token and fresh.refresh_token != tokens.refresh_token
        with pytest.raises(OAuthError) as err:
            await http.refresh(tokens.refresh_token)
        assert err.value.invalid_grant
        # revocation kills the grant
        assert fresh.refresh_token is not None
        await http.revoke(fresh.refresh_token)
        assert not oauth.is_active(fresh.access_token)
        with pytest.raises(OAuthError) as err:
            await http.refresh(fresh.refresh_token)
        assert err.value.invalid_grant


async def test_missing_or_wrong_pkce_verifier_is_refused(oauth: OAuthServer, mail_user: MailUser) -> None:
    registered = oauth.add_client(redirect_uris=[REDIRECT])
    client = ClientConfig(registered.client_id, registered.client_secret)
    async with OAuthClient(endpoints(oauth), client) as http:
        code = await code_for(oauth, mail_user, client, new_code_verifier())
        with pytest.raises(OAuthError) as err:
            await http.exchange_code(code, redirect_uri=REDIRECT, verifier=None)
        assert err.value.error == "invalid_request"
        code = await code_for(oauth, mail_user, client, new_code_verifier())
        with pytest.raises(OAuthError) as err:
            await http.exchange_code(code, redirect_uri=REDIRECT, verifier=new_code_verifier())
        assert err.value.invalid_grant


async def test_device_flow_pending_then_tokens(oauth: OAuthServer, mail_user: MailUser) -> None:
    registered = oauth.add_client(device=True)
    client = ClientConfig(registered.client_id, registered.client_secret)
    async with OAuthClient(endpoints(oauth), client) as http:
        device = await http.start_device()
        assert device.user_code and device.verification_uri.startswith(oauth.page_base_url + "/")
        assert device.verification_uri.startswith("https://") and (device.verification_uri_complete or "").startswith("https://")
        with pytest.raises(DevicePending):
            await http.poll_device(device)
        page = await oauth.browser().enter_device_code(
            device.verification_uri, device.user_code, mail_user.address, mail_user.password
        )
        assert page.status == 200 and "Signed in" in page.text
        await asyncio.sleep(device.interval)
        tokens = await http.poll_device(device)
        assert oauth.is_active(tokens.access_token) and tokens.refresh_token


@pytest.mark.parametrize("where", ["remote", "loopback"])
async def test_device_link_that_is_not_https_is_refused(oauth: OAuthServer, where: str) -> None:
    """The link is shown to the person, whose browser is not on the bot's loopback: https only,
    refused as an OAuthError (which the chat explains), never a stray ValueError."""
    registered = oauth.add_client(device=True)
    oauth.device_page_url = "http://idp.example.test/device" if where == "remote" else f"{oauth.base_url}/device"
    try:
        async with OAuthClient(endpoints(oauth), ClientConfig(registered.client_id, registered.client_secret)) as http:
            with pytest.raises(OAuthError) as err:
                await http.start_device()
    finally:
        oauth.device_page_url = None
    assert err.value.error == "insecure_link"


async def test_device_flow_denied(oauth: OAuthServer, mail_user: MailUser) -> None:
    registered = oauth.add_client(device=True)
    client = ClientConfig(registered.client_id, registered.client_secret)
    async with OAuthClient(endpoints(oauth), client) as http:
        device = await http.start_device()
        await oauth.browser().enter_device_code(
            device.verification_uri, device.user_code, mail_user.address, mail_user.password, allow=False
        )
        with pytest.raises(OAuthError) as err:
            await http.poll_device(device)
        assert err.value.error == "access_denied"


async def test_wrong_client_secret_and_unreachable_endpoint(oauth: OAuthServer) -> None:
    registered = oauth.add_client(redirect_uris=[REDIRECT])
    async with OAuthClient(endpoints(oauth), ClientConfig(registered.client_id, "wrong")) as http:
        with pytest.raises(OAuthError) as err:
            await http.refresh("rt-whatever")
        assert err.value.error == "invalid_client"
    dead = Endpoints(token_url="http://127.0.0.1:9/token")
    async with OAuthClient(dead, ClientConfig("x"), timeout=2) as http:
        with pytest.raises(OAuthError) as err:
            await http.refresh("rt")
        assert err.value.error == "network"


# ---- token logins (OAUTHBEARER) to Dovecot and the SMTP server -------------------------------
async def dovecot_logins(stack: MailStack, address: str, offset: int, count: int) -> list[str]:
    """Dovecot's "Login" / "auth failed" log lines for `address` written after `offset`
    (imap-login writes them a moment after it answered): `count` of them, or all after 3 s."""
    pattern = re.compile(rf"^.*(?:Login|auth failed).*user=<{re.escape(address)}>, method=\S+.*$", re.MULTILINE)
    deadline = time.monotonic() + 3
    while True:
        with open(stack.log_file, "rb") as f:
            f.seek(offset)
            found = pattern.findall(f.read().decode(errors="replace"))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def log_size(stack: MailStack) -> int:
    return stack.log_file.stat().st_size


async def test_dovecot_and_smtp_accept_tokens_from_the_local_server(
    oauth: OAuthServer, mail_stack: MailStack, mail_user: MailUser
) -> None:
    token = oauth.issue_token(mail_user.address)
    creds = Credentials(mail_user.address, oauth2_token=token)
    ctx = mail_stack.client_ssl_context()
    offset = log_size(mail_stack)
    for server in (imap_server(mail_stack), ServerSettings("localhost", mail_stack.imap_starttls_port, Security.STARTTLS)):
        client = await open_imap(server, creds, ssl_context=ctx, guard=guard(), timeout=5)
        try:
            assert (await client.select("INBOX")).result == "OK"
            # the capabilities Dovecot announced with its OK replace the pre-login ones
            assert client.has_capability("SPECIAL-USE") and client.has_capability("UIDPLUS")
        finally:
            await close_imap(client)
    logins = await dovecot_logins(mail_stack, mail_user.address, offset, 2)
    assert len(logins) == 2 and all("Login: " in line and "method=OAUTHBEARER," in line for line in logins), logins
    for port, security in ((mail_stack.smtp_ssl_port, Security.SSL), (mail_stack.smtp_starttls_port, Security.STARTTLS)):
        smtp = await open_smtp(ServerSettings("localhost", port, security), creds, ssl_context=ctx, guard=guard(), timeout=5)
        try:
            letter = email.message.EmailMessage()
            letter["From"] = letter["To"] = mail_user.address
            letter["Subject"] = f"over {security.value}"
            letter.set_content("sent with an OAuth2 token")
            await smtp.send_message(letter)
        finally:
            await close_smtp(smtp)
        sub = mail_stack.submitted[-1]
        assert sub.login == mail_user.address and b"over " + security.value.encode() in sub.data
        assert sub.mechanism == "OAUTHBEARER"


async def test_dovecot_and_smtp_refuse_dead_or_foreign_tokens(
    oauth: OAuthServer, mail_stack: MailStack, mail_user: MailUser
) -> None:
    ctx = mail_stack.client_ssl_context()
    other = oauth.issue_token("someone-else@example.org")
    expired = oauth.issue_token(mail_user.address)
    oauth.expire_access_tokens(mail_user.address)
    revoked = oauth.issue_token(mail_user.address)
    oauth.revoke_user(mail_user.address)
    offset = log_size(mail_stack)
    tokens = ("not-a-token", other, expired, revoked)
    for token in tokens:
        creds = Credentials(mail_user.address, oauth2_token=token)
        started = time.monotonic()
        with pytest.raises(MailCheckError) as err:
            await open_imap(imap_server(mail_stack), creds, ssl_context=ctx, guard=guard(), timeout=30)
        assert err.value.kind is FailureKind.AUTH_FAILED
        # ~0.05 s; a hang ends at the 30 s timeout
        assert time.monotonic() - started < 5, "a refused token must not hang until the timeout"
        # Dovecot's NO and its error challenge (RFC 7628 3.2.2), never the token
        assert "AUTHENTICATIONFAILED" in err.value.detail and '"status":"invalid_token"' in err.value.detail
        assert token not in str(err.value)
        started = time.monotonic()
        with pytest.raises(MailCheckError) as err:
            await open_smtp(
                ServerSettings("localhost", mail_stack.smtp_ssl_port, Security.SSL), creds, ssl_context=ctx, guard=guard(), timeout=30
            )
        assert err.value.kind is FailureKind.AUTH_FAILED
        assert time.monotonic() - started < 5, "a refused token must not hang until the timeout"  # as above
        assert err.value.detail.startswith("535 ") and "invalid_token" in err.value.detail
        assert token not in str(err.value)
    failures = await dovecot_logins(mail_stack, mail_user.address, offset, len(tokens))
    assert len(failures) == len(tokens), failures
    assert all("auth failed" in line and "method=OAUTHBEARER," in line for line in failures), failures


# ---- Yandex's dialect (scripted server speaking it as documented) -----------------------------
async def test_yandex_device_flow_and_revocation_dialect() -> None:
    """Yandex: device code answer with `verification_url`, polling with grant_type=device_code and
    `code`, revocation at revoke_token with `access_token` (not RFC 8628/7009 names)."""
    from aiohttp import web

    seen: list[dict[str, str]] = []
    polls = 0

    async def device(request: web.Request) -> web.Response:
        seen.append(dict(await request.post()))
        return web.json_response({"device_code": "dc-1", "user_code": "ABCD1234", "verification_url": "https://ya.ru/device",
                                  "interval": 1, "expires_in": 300})

    async def token(request: web.Request) -> web.Response:
        nonlocal polls
        form = dict(await request.post())
        seen.append(form)
        polls += 1
        if polls == 1:
            return web.json_response({"error": "authorization_pending"}, status=400)
        return web.json_response({"access_token": "y-at", "refresh_token": "y-rt", "expires_in": "31536000", "token_type": "bearer"})

    async def revoke(request: web.Request) -> web.Response:
        seen.append(dict(await request.post()))
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/device/code", device)
    app.router.add_post("/token", token)
    app.router.add_post("/revoke_token", revoke)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    yandex = builtin_endpoints("yandex")
    assert yandex is not None
    ep = yandex.with_overrides(token_url=f"{base}/token", device_url=f"{base}/device/code", revoke_url=f"{base}/revoke_token")
    try:
        async with OAuthClient(ep, ClientConfig("yid", "ysecret")) as http:
            flow = await http.start_device()
            assert flow.verification_uri == "https://ya.ru/device" and flow.user_code == "ABCD1234"
            with pytest.raises(DevicePending):
                await http.poll_device(flow)
            tokens = await http.poll_device(flow)
            assert tokens.access_token == "y-at" and tokens.expires_at and tokens.expires_at > time.time() + 10**7
            await http.revoke(tokens.access_token, hint="access_token")
    finally:
        await runner.cleanup()
    assert seen[0] == {"client_id": "yid", "client_secret": "ysecret"}  # Yandex takes no scope here
    assert seen[1]["grant_type"] == "device_code" and seen[1]["code"] == "dc-1" and "device_code" not in seen[1]
    assert seen[3] == {"access_token": "y-at", "client_id": "yid", "client_secret": "ysecret"}
