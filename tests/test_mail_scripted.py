"""Provider replies and protocol faults, injected by tiny scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time

import pytest
import trustme

from mail.check import check_account
from mail.imap import open_imap
from mail.netguard import HostGuard
from mail.smtp import check_smtp
from mail.tls import make_ssl_context
from mail.types import (
    Credentials,
    FailureKind,
    MailCheckError,
    MailServers,
    Protocol,
    Security,
    ServerSettings,
)
from tests.harness.scripted_servers import (
    IMAP_TEXTS,
    OAUTHBEARER_ERROR,
    SMTP_TEXTS,
    XOAUTH2_ERROR,
    ScriptedImapServer,
    ScriptedSmtpServer,
    closed_port,
    silent_server,
)

GUARD = HostGuard(allow_private=True)
PASSWORD = "S3cret-passw0rd"
CREDS = Credentials("user@example.org", password=PASSWORD)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="module")
def client_ctx(ca: trustme.CA, tmp_path_factory) -> ssl.SSLContext:
    path = tmp_path_factory.mktemp("scripted-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return make_ssl_context(str(path))


async def _imap_error(
    server: ScriptedImapServer, ctx, security=Security.SSL, creds=CREDS
) -> MailCheckError:
    await server.start()
    try:
        with pytest.raises(MailCheckError) as err:
            await open_imap(
                ServerSettings("127.0.0.1", server.port, security),
                creds,
                ssl_context=ctx,
                guard=GUARD,
                timeout=5,
            )
        return err.value
    finally:
        await server.close()


async def _smtp_error(
    server: ScriptedSmtpServer, ctx, security=Security.SSL, creds=CREDS, timeout: float = 5
) -> MailCheckError:
    await server.start()
    try:
        with pytest.raises(MailCheckError) as err:
            await check_smtp(
                ServerSettings("127.0.0.1", server.port, security),
                creds,
                ssl_context=ctx,
                guard=GUARD,
                timeout=timeout,
            )
        return err.value
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("yandex", FailureKind.IMAP_DISABLED),
        ("gmail_app_password", FailureKind.APP_PASSWORD_REQUIRED),
        ("gmail_bad_password", FailureKind.AUTH_FAILED),
        ("gmail_imap_disabled", FailureKind.IMAP_DISABLED),
        ("mailru_app_password", FailureKind.APP_PASSWORD_REQUIRED),
        ("outlook", FailureKind.AUTH_FAILED),
        ("outlook_not_connected", FailureKind.IMAP_DISABLED),
        ("generic", FailureKind.AUTH_FAILED),
        ("unavailable_disabled", FailureKind.IMAP_DISABLED),
        ("rambler", FailureKind.IMAP_DISABLED),
    ],
)
async def test_imap_provider_texts(server_ctx, client_ctx, text, kind) -> None:
    reply = IMAP_TEXTS[text]
    err = await _imap_error(ScriptedImapServer(tls=server_ctx, login_reply=reply), client_ctx)
    assert err.protocol is Protocol.IMAP
    assert err.kind is kind, err
    assert reply.split(" ", 1)[1] in err.detail  # the server's own words


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("gmail_app_password", FailureKind.APP_PASSWORD_REQUIRED),
        ("gmail_bad_password", FailureKind.AUTH_FAILED),
        ("mailru_app_password", FailureKind.APP_PASSWORD_REQUIRED),
        ("outlook_basic_disabled", FailureKind.APP_PASSWORD_REQUIRED),
        ("outlook_bad_password", FailureKind.AUTH_FAILED),
        ("office365_smtp_auth_disabled", FailureKind.IMAP_DISABLED),
        ("generic", FailureKind.AUTH_FAILED),
    ],
)
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_smtp_provider_texts(server_ctx, client_ctx, text, kind, security) -> None:
    code, lines = SMTP_TEXTS[text]
    if security is Security.SSL:
        server = ScriptedSmtpServer(tls=server_ctx, auth_reply=(code, lines))
    else:
        server = ScriptedSmtpServer(starttls=server_ctx, auth_reply=(code, lines))
    error = await _smtp_error(server, client_ctx, security=security)
    assert error.protocol is Protocol.SMTP
    assert error.kind is kind
    assert error.detail.startswith(str(code))
    assert lines[0].split(" ", 1)[1][:20] in error.detail


async def test_imap_starttls_not_offered_never_sends_password(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(starttls=server_ctx, advertise_starttls=False)
    err = await _imap_error(server, client_ctx, security=Security.STARTTLS)
    assert err.kind is FailureKind.TLS_FAILED
    assert not server.saw_login
    assert not server.saw(PASSWORD.encode())


async def test_imap_starttls_with_capability_in_greeting(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(
        starttls=server_ctx, greeting="* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready"
    )
    await server.start()
    try:
        client = await open_imap(
            ServerSettings("localhost", server.port, Security.STARTTLS),
            CREDS,
            ssl_context=client_ctx,
            guard=GUARD,
        )
        client.protocol.transport.close()
    finally:
        await server.close()
    # no CAPABILITY before STARTTLS (it was in the greeting), one after it (over TLS)
    commands = [line.split(b" ")[1].upper() for line in server.received if b" " in line]
    assert commands[:2] == [b"STARTTLS", b"CAPABILITY"]
    assert b"LOGIN" in commands


async def test_imap_starttls_ok_then_login(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(starttls=server_ctx, login_reply=IMAP_TEXTS["gmail_app_password"])
    err = await _imap_error(server, client_ctx, security=Security.STARTTLS)
    assert err.kind is FailureKind.APP_PASSWORD_REQUIRED
    assert server.saw_login  # LOGIN did happen, but only after TLS
    index = [i for i, line in enumerate(server.received) if b"STARTTLS" in line.upper()]
    login = [i for i, line in enumerate(server.received) if b" LOGIN " in line.upper()]
    assert index and login and index[0] < login[0]


async def test_smtp_starttls_not_offered_never_sends_password(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(starttls=server_ctx, advertise_starttls=False)
    error = await _smtp_error(server, client_ctx, security=Security.STARTTLS)
    assert error.kind is FailureKind.TLS_FAILED
    assert not server.saw_auth


async def test_imap_plain_server_on_ssl_setting_is_tls_failed(client_ctx) -> None:
    err = await _imap_error(ScriptedImapServer(), client_ctx, security=Security.SSL)
    assert err.kind is FailureKind.TLS_FAILED


async def test_imap_greeting_bye(server_ctx, client_ctx) -> None:
    err = await _imap_error(
        ScriptedImapServer(tls=server_ctx, greeting="* BYE Too many connections"), client_ctx
    )
    assert err.kind is FailureKind.PROTOCOL
    assert "Too many connections" in err.detail


async def test_imap_bye_after_login_refusal_is_fast(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(
        tls=server_ctx, login_reply=IMAP_TEXTS["generic"], bye_after_login="Too many invalid logins"
    )
    started = time.monotonic()
    err = await _imap_error(server, client_ctx)
    assert err.kind is FailureKind.AUTH_FAILED
    assert time.monotonic() - started < 2


async def test_imap_xoauth2_rejected_does_not_hang(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(
        tls=server_ctx,
        xoauth2_challenge=XOAUTH2_ERROR,
        login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
    )
    started = time.monotonic()
    err = await _imap_error(
        server, client_ctx, creds=Credentials("user@gmail.com", oauth2_token="ya29.expired")
    )
    assert time.monotonic() - started < 2
    assert err.kind is FailureKind.AUTH_FAILED
    assert '"status":"401"' in err.detail
    assert server.received[-1] == b""  # the empty answer to the error challenge


async def test_imap_xoauth2_accepted(server_ctx, client_ctx) -> None:
    server = ScriptedImapServer(tls=server_ctx, login_reply="OK Success")
    await server.start()
    try:
        client = await open_imap(
            ServerSettings("127.0.0.1", server.port, Security.SSL),
            Credentials("user@gmail.com", oauth2_token="ya29.good"),
            ssl_context=client_ctx,
            guard=GUARD,
        )
        client.protocol.transport.close()
    finally:
        await server.close()
    assert any(b" AUTHENTICATE XOAUTH2 " in line.upper() for line in server.received)
    assert server.sasl == [("XOAUTH2", b"user=user@gmail.com\x01auth=Bearer ya29.good\x01\x01")]


def oauthbearer_message(login: str, token: str, port: int, host: str = "127.0.0.1") -> bytes:
    return f"n,a={login},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()


async def _imap_token_login(server: ScriptedImapServer, ctx, token: str = "ya29.good") -> None:
    await server.start()
    try:
        client = await open_imap(
            ServerSettings("127.0.0.1", server.port, Security.SSL),
            Credentials("user@gmail.com", oauth2_token=token),
            ssl_context=ctx,
            guard=GUARD,
            timeout=5,
        )
        client.protocol.transport.close()
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("capabilities", "mechanism", "initial_response"),
    [
        ("IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER SASL-IR", "OAUTHBEARER", True),
        ("IMAP4rev1 AUTH=PLAIN AUTH=OAUTHBEARER AUTH=XOAUTH2", "OAUTHBEARER", False),
        ("IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2", "XOAUTH2", False),
    ],
)
async def test_imap_token_login_picks_oauthbearer_and_follows_sasl_ir(
    server_ctx, client_ctx, capabilities, mechanism, initial_response
) -> None:
    """OAUTHBEARER whenever the server lists it, XOAUTH2 otherwise; the client response on the
    AUTHENTICATE line with SASL-IR, else after the server's `+`."""
    server = ScriptedImapServer(tls=server_ctx, capabilities=capabilities, login_reply="OK Success")
    await _imap_token_login(server, client_ctx)
    auth = [line for line in server.received if b" AUTHENTICATE " in line.upper()]
    assert len(auth) == 1
    words = auth[0].split(b" ")
    assert words[2] == mechanism.encode()
    if mechanism == "OAUTHBEARER":
        expected = oauthbearer_message("user@gmail.com", "ya29.good", server.port)
    else:
        expected = b"user=user@gmail.com\x01auth=Bearer ya29.good\x01\x01"
    assert server.sasl == [(mechanism, expected)]
    if initial_response:
        assert len(words) == 4 and base64.b64decode(words[3]) == expected
    else:
        assert len(words) == 3  # then the response on a line of its own, after "+ "
        following = server.received[server.received.index(auth[0]) + 1]
        assert base64.b64decode(following) == expected


@pytest.mark.parametrize("sasl_ir", [True, False])
async def test_imap_oauthbearer_rejected_does_not_hang(server_ctx, client_ctx, sasl_ir) -> None:
    server = ScriptedImapServer(
        tls=server_ctx,
        capabilities="IMAP4rev1 AUTH=XOAUTH2 AUTH=OAUTHBEARER" + (" SASL-IR" if sasl_ir else ""),
        oauthbearer_challenge=OAUTHBEARER_ERROR,
        login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
    )
    started = time.monotonic()
    err = await _imap_error(
        server, client_ctx, creds=Credentials("user@gmail.com", oauth2_token="ya29.expired")
    )
    assert time.monotonic() - started < 2
    assert err.kind is FailureKind.AUTH_FAILED
    assert "Invalid credentials" in err.detail and '"status":"invalid_token"' in err.detail
    assert "ya29.expired" not in str(err)
    # RFC 7628 3.2.3: the error challenge is answered with 0x01 (the scripted server would
    # have said BAD to anything else)
    assert server.received[-1] == b"AQ=="
    assert [m for m, _ in server.sasl] == ["OAUTHBEARER"]


async def test_smtp_oauthbearer_accepted(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(tls=server_ctx, extensions=("AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER",))
    await server.start()
    try:
        await check_smtp(
            ServerSettings("127.0.0.1", server.port, Security.SSL),
            Credentials("user@gmail.com", oauth2_token="ya29.good"),
            ssl_context=client_ctx,
            guard=GUARD,
            timeout=5,
        )
    finally:
        await server.close()
    assert server.sasl == [
        ("OAUTHBEARER", oauthbearer_message("user@gmail.com", "ya29.good", server.port))
    ]
    assert [line.split(b" ")[:2] for line in server.received if line.startswith(b"AUTH")] == [
        [b"AUTH", b"OAUTHBEARER"]
    ]


async def test_smtp_oauthbearer_rejected(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(
        tls=server_ctx,
        extensions=("AUTH XOAUTH2 OAUTHBEARER",),
        oauthbearer_challenge=OAUTHBEARER_ERROR,
        auth_reply=(535, ["5.7.8 Username and Password not accepted."]),
    )
    await server.start()
    started = time.monotonic()
    try:
        with pytest.raises(MailCheckError) as err:
            await check_smtp(
                ServerSettings("127.0.0.1", server.port, Security.SSL),
                Credentials("user@gmail.com", oauth2_token="ya29.expired"),
                ssl_context=client_ctx,
                guard=GUARD,
                timeout=5,
            )
    finally:
        await server.close()
    assert time.monotonic() - started < 2
    assert err.value.kind is FailureKind.AUTH_FAILED
    assert err.value.detail.startswith("535 5.7.8 Username and Password not accepted.")
    assert '"status":"invalid_token"' in err.value.detail and "ya29.expired" not in str(err.value)
    assert server.received[-1] == b"AQ=="  # RFC 7628 3.2.3 (anything else gets a 501 here)


async def test_smtp_token_login_needs_a_token_mechanism(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(tls=server_ctx, extensions=("AUTH PLAIN LOGIN",))
    error = await _smtp_error(server, client_ctx, creds=Credentials("user@gmail.com", oauth2_token="ya29.good"))
    assert error.kind is FailureKind.AUTH_FAILED
    assert "OAUTHBEARER" in error.detail and "XOAUTH2" in error.detail
    assert not server.saw_auth


async def test_smtp_xoauth2_rejected(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(
        tls=server_ctx,
        xoauth2_challenge=XOAUTH2_ERROR,
        auth_reply=(535, ["5.7.8 Username and Password not accepted."]),
    )
    error = await _smtp_error(server, client_ctx, creds=Credentials("user@gmail.com", oauth2_token="ya29.expired"))
    assert error.kind is FailureKind.AUTH_FAILED
    assert '"status":"401"' in error.detail
    assert server.received[-1] == b""  # the empty answer to the error challenge
    assert [m for m, _ in server.sasl] == ["XOAUTH2"]


async def test_smtp_greeting_refusal(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(tls=server_ctx, greeting="554 5.7.1 No service for you")
    error = await _smtp_error(server, client_ctx)
    assert error.kind is FailureKind.PROTOCOL
    assert "No service" in error.detail


async def test_smtp_no_auth_offered(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(tls=server_ctx, extensions=("8BITMIME",))
    error = await _smtp_error(server, client_ctx)
    assert error.kind is FailureKind.PROTOCOL


async def test_smtp_auth_login_only(server_ctx, client_ctx) -> None:
    server = ScriptedSmtpServer(tls=server_ctx, extensions=("AUTH LOGIN",))
    await server.start()
    try:
        await check_smtp(
            ServerSettings("127.0.0.1", server.port, Security.SSL),
            CREDS,
            ssl_context=client_ctx,
            guard=GUARD,
        )
    finally:
        await server.close()
    assert any(line.upper().startswith(b"AUTH LOGIN") for line in server.received)


async def test_check_account_reports_imap_first(server_ctx, client_ctx) -> None:
    imap = ScriptedImapServer(tls=server_ctx, login_reply=IMAP_TEXTS["yandex"])
    smtp = ScriptedSmtpServer(tls=server_ctx, auth_reply=SMTP_TEXTS["generic"])
    await imap.start()
    await smtp.start()
    try:
        with pytest.raises(MailCheckError) as err:
            await check_account(
                MailServers(
                    ServerSettings("127.0.0.1", imap.port, Security.SSL),
                    ServerSettings("127.0.0.1", smtp.port, Security.SSL),
                ),
                CREDS,
                ssl_context=client_ctx,
                guard=GUARD,
            )
    finally:
        await imap.close()
        await smtp.close()
    assert err.value.protocol is Protocol.IMAP
    assert err.value.kind is FailureKind.IMAP_DISABLED
    assert smtp.saw_auth  # both ran (concurrently)


async def test_check_account_runs_concurrently(client_ctx) -> None:
    async with silent_server() as port:
        s = MailServers(
            ServerSettings("127.0.0.1", port, Security.SSL),
            ServerSettings("127.0.0.1", port, Security.SSL),
        )
        started = time.monotonic()
        with pytest.raises(MailCheckError) as err:
            await check_account(s, CREDS, ssl_context=client_ctx, guard=GUARD, timeout=4.0)
        assert time.monotonic() - started < 6  # 4 s; one after the other: 8 s
    assert err.value.kind is FailureKind.TIMEOUT
    assert err.value.protocol is Protocol.IMAP


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_smtp_timeout(client_ctx, security) -> None:
    async with silent_server() as port:
        started = time.monotonic()
        with pytest.raises(MailCheckError) as err:
            await check_smtp(
                ServerSettings("127.0.0.1", port, security),
                CREDS,
                ssl_context=client_ctx,
                guard=GUARD,
                timeout=4.0,
            )
        assert time.monotonic() - started < 6  # 4 s; a second timeout after it: 8 s
    assert err.value.kind is FailureKind.TIMEOUT


async def test_smtp_connection_refused(client_ctx) -> None:
    with pytest.raises(MailCheckError) as err:
        await check_smtp(
            ServerSettings("127.0.0.1", closed_port(), Security.SSL),
            CREDS,
            ssl_context=client_ctx,
            guard=GUARD,
        )
    assert err.value.kind is FailureKind.CONNECTION_REFUSED


async def test_guard_connects_to_checked_address_only(server_ctx, client_ctx) -> None:
    """DNS rebinding: the resolver is asked once; the connection uses that answer."""
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.0.0.1"]

    server = ScriptedImapServer(tls=server_ctx)
    await server.start()
    try:
        client = await open_imap(
            ServerSettings("localhost", server.port, Security.SSL),
            CREDS,
            ssl_context=client_ctx,
            guard=HostGuard(allow_private=True, resolver=resolver),
        )
        client.protocol.transport.close()
    finally:
        await server.close()
    assert calls == ["localhost"]


async def test_cancellation_closes_everything(client_ctx) -> None:
    async with silent_server() as port:
        task = asyncio.create_task(
            open_imap(
                ServerSettings("127.0.0.1", port, Security.STARTTLS),
                CREDS,
                ssl_context=client_ctx,
                guard=GUARD,
            )
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_xoauth2_token_never_logged(server_ctx, client_ctx, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    token = "ya29.SECRET-token-value"
    server = ScriptedImapServer(
        tls=server_ctx,
        xoauth2_challenge=XOAUTH2_ERROR,
        login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
    )
    await _imap_error(server, client_ctx, creds=Credentials("user@gmail.com", oauth2_token=token))
    smtp = ScriptedSmtpServer(
        tls=server_ctx, xoauth2_challenge=XOAUTH2_ERROR, auth_reply=(535, ["5.7.8 no"])
    )
    await smtp.start()
    try:
        with pytest.raises(MailCheckError):
            await check_smtp(
                ServerSettings("127.0.0.1", smtp.port, Security.SSL),
                Credentials("user@gmail.com", oauth2_token=token),
                ssl_context=client_ctx,
                guard=GUARD,
            )
    finally:
        await smtp.close()
    for secret in (
        token,
        base64.b64encode(f"user=user@gmail.com\1auth=Bearer {token}\1\1".encode()).decode(),
    ):
        assert secret not in caplog.text


async def test_oauthbearer_token_never_logged(server_ctx, client_ctx, caplog) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    token = "ya29.SECRET-token-value"
    creds = Credentials("user@gmail.com", oauth2_token=token)
    ports = []
    for caps in ("IMAP4rev1 AUTH=OAUTHBEARER SASL-IR", "IMAP4rev1 AUTH=OAUTHBEARER"):
        server = ScriptedImapServer(
            tls=server_ctx,
            capabilities=caps,
            oauthbearer_challenge=OAUTHBEARER_ERROR,
            login_reply="NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
        )
        err = await _imap_error(server, client_ctx, creds=creds)
        ports.append(server.port)
        assert server.sasl[0][0] == "OAUTHBEARER" and token not in str(err)
    smtp = ScriptedSmtpServer(
        tls=server_ctx,
        extensions=("AUTH PLAIN OAUTHBEARER",),
        oauthbearer_challenge=OAUTHBEARER_ERROR,
        auth_reply=(535, ["5.7.8 no"]),
    )
    await smtp.start()
    try:
        with pytest.raises(MailCheckError) as err:
            await check_smtp(
                ServerSettings("127.0.0.1", smtp.port, Security.SSL),
                creds,
                ssl_context=client_ctx,
                guard=GUARD,
            )
    finally:
        await smtp.close()
    ports.append(smtp.port)
    assert smtp.sasl[0][0] == "OAUTHBEARER" and token not in str(err.value)
    secrets = [token]
    secrets += [
        base64.b64encode(oauthbearer_message("user@gmail.com", token, port)).decode()
        for port in ports
    ]
    for secret in secrets:
        assert secret not in caplog.text
