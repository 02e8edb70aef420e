"""The mail layer against the real test stack (Dovecot + aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import logging
import quopri
import time
from email.message import EmailMessage

import pytest

from mail.check import check_account
from mail.imap import close_imap, open_imap
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
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.scripted_servers import closed_port, silent_server

GUARD = HostGuard(allow_private=True)


def servers(stack: MailStack, security: Security, host: str | None = None) -> MailServers:
    host = host or stack.host
    if security is Security.SSL:
        return MailServers(
            ServerSettings(host, stack.imap_ssl_port, Security.SSL),
            ServerSettings(host, stack.smtp_ssl_port, Security.SSL),
        )
    return MailServers(
        ServerSettings(host, stack.imap_starttls_port, Security.STARTTLS),
        ServerSettings(host, stack.smtp_starttls_port, Security.STARTTLS),
    )


@pytest.fixture(scope="module")
def ctx(mail_stack: MailStack):
    return make_ssl_context(str(mail_stack.ca_file))


def creds(user: MailUser, password: str | None = None) -> Credentials:
    return Credentials(user.address, password=password if password is not None else user.password)


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_check_account_ok(mail_stack, mail_user, ctx, security) -> None:
    await check_account(
        servers(mail_stack, security), creds(mail_user), ssl_context=ctx, guard=GUARD, timeout=10
    )


@pytest.mark.parametrize("host", ["localhost", "LocalHost."])
async def test_check_account_by_host_name(mail_stack, mail_user, ctx, host) -> None:
    # the certificate is verified against the name the user typed (normalised)
    await check_account(
        servers(mail_stack, Security.STARTTLS, host=host),
        creds(mail_user),
        ssl_context=ctx,
        guard=GUARD,
        timeout=10,
    )


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_wrong_password_is_auth_failed_for_imap(mail_stack, mail_user, ctx, security) -> None:
    with pytest.raises(MailCheckError) as err:
        await check_account(
            servers(mail_stack, security),
            creds(mail_user, "wrong-password"),
            ssl_context=ctx,
            guard=GUARD,
        )
    assert err.value.protocol is Protocol.IMAP
    assert err.value.kind is FailureKind.AUTH_FAILED
    assert "AUTHENTICATIONFAILED" in err.value.detail


async def test_wrong_password_smtp_alone(mail_stack, mail_user, ctx) -> None:
    with pytest.raises(MailCheckError) as err:
        await check_smtp(
            servers(mail_stack, Security.STARTTLS).smtp,
            creds(mail_user, "nope"),
            ssl_context=ctx,
            guard=GUARD,
        )
    assert err.value.protocol is Protocol.SMTP
    assert err.value.kind is FailureKind.AUTH_FAILED
    assert err.value.detail.startswith("535")


async def test_imap_ok_smtp_fails_reports_smtp(mail_stack, mail_user, ctx) -> None:
    good = servers(mail_stack, Security.SSL)
    bad = MailServers(good.imap, ServerSettings(mail_stack.host, closed_port(), Security.SSL))
    with pytest.raises(MailCheckError) as err:
        await check_account(bad, creds(mail_user), ssl_context=ctx, guard=GUARD)
    assert err.value.protocol is Protocol.SMTP
    assert err.value.kind is FailureKind.CONNECTION_REFUSED


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_guard_refuses_private_addresses(mail_stack, mail_user, ctx, host) -> None:
    with pytest.raises(MailCheckError) as err:
        await check_account(
            servers(mail_stack, Security.SSL, host=host),
            creds(mail_user),
            ssl_context=ctx,
            guard=HostGuard(allow_private=False),
        )
    assert err.value.kind is FailureKind.PRIVATE_ADDRESS
    assert err.value.protocol is Protocol.IMAP


async def test_connection_refused(mail_user, ctx) -> None:
    port = closed_port()
    s = MailServers(
        ServerSettings("127.0.0.1", port, Security.SSL),
        ServerSettings("127.0.0.1", port, Security.SSL),
    )
    with pytest.raises(MailCheckError) as err:
        await check_account(s, creds(mail_user), ssl_context=ctx, guard=GUARD, timeout=5)
    assert err.value.kind is FailureKind.CONNECTION_REFUSED


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_untrusted_ca(mail_stack, mail_user, security) -> None:
    with pytest.raises(MailCheckError) as err:
        await check_account(
            servers(mail_stack, security),
            creds(mail_user),
            ssl_context=make_ssl_context(),
            guard=GUARD,
        )
    assert err.value.kind is FailureKind.TLS_UNTRUSTED
    assert err.value.protocol is Protocol.IMAP


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_tls_checks_the_typed_name_not_the_address(
    mail_stack, mail_user, ctx, security
) -> None:
    # "mail.example.org" resolves (in this guard) to 127.0.0.1, where the certificate is
    # valid only for localhost/127.0.0.1: the connection goes to the checked address, and
    # TLS still verifies the name the user typed.
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    guard = HostGuard(allow_private=True, resolver=resolver)
    s = servers(mail_stack, security)
    imap = ServerSettings("mail.example.org", s.imap.port, security)
    with pytest.raises(MailCheckError) as err:
        await open_imap(imap, creds(mail_user), ssl_context=ctx, guard=guard, timeout=5)
    assert err.value.kind is FailureKind.TLS_UNTRUSTED
    assert "mail.example.org" in err.value.detail or "match" in err.value.detail


async def test_ssl_to_starttls_port_is_tls_failed(mail_stack, mail_user, ctx) -> None:
    imap = ServerSettings(mail_stack.host, mail_stack.imap_starttls_port, Security.SSL)
    with pytest.raises(MailCheckError) as err:
        await open_imap(imap, creds(mail_user), ssl_context=ctx, guard=GUARD, timeout=5)
    assert err.value.kind is FailureKind.TLS_FAILED


async def test_timeout_on_silent_server(mail_user, ctx) -> None:
    async with silent_server() as port:
        s = MailServers(
            ServerSettings("127.0.0.1", port, Security.STARTTLS),
            ServerSettings("127.0.0.1", port, Security.SSL),
        )
        started = time.monotonic()
        with pytest.raises(MailCheckError) as err:
            await check_account(s, creds(mail_user), ssl_context=ctx, guard=GUARD, timeout=1.0)
        elapsed = time.monotonic() - started
    assert err.value.kind is FailureKind.TIMEOUT
    assert elapsed < 5  # the 1 s given; the 15 s default, were it ignored


async def test_unknown_host(mail_user, ctx) -> None:
    s = MailServers(
        ServerSettings("nonexistent.invalid", 993, Security.SSL),
        ServerSettings("nonexistent.invalid", 465, Security.SSL),
    )
    with pytest.raises(MailCheckError) as err:
        await check_account(s, creds(mail_user), ssl_context=ctx, guard=HostGuard(), timeout=5)
    assert err.value.kind is FailureKind.HOST_NOT_FOUND
    assert err.value.protocol is Protocol.IMAP


async def test_stopped_imap_server(mail_stack, mail_user, ctx) -> None:
    await mail_stack.stop_imap()
    try:
        with pytest.raises(MailCheckError) as err:
            await check_account(
                servers(mail_stack, Security.SSL), creds(mail_user), ssl_context=ctx, guard=GUARD
            )
        assert err.value.kind is FailureKind.CONNECTION_REFUSED
        assert err.value.protocol is Protocol.IMAP
    finally:
        await mail_stack.start_imap()
    await check_account(
        servers(mail_stack, Security.SSL), creds(mail_user), ssl_context=ctx, guard=GUARD
    )


async def test_password_never_logged(mail_stack, mail_user, ctx, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = mail_user.password
    for security in (Security.SSL, Security.STARTTLS):
        await check_account(
            servers(mail_stack, security), creds(mail_user), ssl_context=ctx, guard=GUARD
        )
        with pytest.raises(MailCheckError):
            await check_account(
                servers(mail_stack, security),
                creds(mail_user, secret + "x"),
                ssl_context=ctx,
                guard=GUARD,
            )
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    await close_imap(client)
    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert secret not in text
    assert logging.getLogger("aioimaplib").getEffectiveLevel() >= logging.INFO


async def test_non_ascii_password(mail_stack, ctx) -> None:
    address = "unicode-pw@example.org"
    password = "пароль-Straße-密码"
    mail_stack.add_user(address, password)
    await check_account(
        servers(mail_stack, Security.SSL),
        Credentials(address, password=password),
        ssl_context=ctx,
        guard=GUARD,
    )


async def test_password_with_quotes_and_backslash(mail_stack, ctx) -> None:
    address = "quoted-pw@example.org"
    password = 'a"b\\c d'
    mail_stack.add_user(address, password)
    await check_account(
        servers(mail_stack, Security.STARTTLS),
        Credentials(address, password=password),
        ssl_context=ctx,
        guard=GUARD,
    )


async def test_open_imap_gives_usable_client_with_keepalive(mail_stack, mail_user, ctx) -> None:
    import socket

    client = await open_imap(
        servers(mail_stack, Security.STARTTLS).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        sock = client.protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert client.protocol.transport.get_extra_info("sslcontext") is not None
        assert client.has_capability("IDLE")
        response = await client.select("INBOX")
        assert response.result == "OK"
    finally:
        await close_imap(client)
    assert client.closed.done() or client.protocol.transport.is_closing()


async def test_close_imap_on_dead_connection_is_quick(mail_stack, mail_user, ctx, monkeypatch) -> None:
    # a LOGOUT tried on the dead connection would wait out this timeout (2 s in production)
    monkeypatch.setattr("mail.imap.LOGOUT_TIMEOUT", 30.0)
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    client.protocol.transport.abort()
    await asyncio.sleep(0)
    started = time.monotonic()
    await close_imap(client)
    assert time.monotonic() - started < 5  # ~0 s


def _letter(i: int, user: MailUser) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Sender {i} <sender{i}@example.org>"
    msg["To"] = user.address
    msg["Subject"] = f"Letter number {i}"
    msg["Date"] = f"Mon, 01 Jan 2024 10:{i % 60:02d}:00 +0000"
    msg["Message-ID"] = f"<letter{i}@example.org>"
    if i % 4 == 0:
        msg.set_content(f"Plain body of letter {i}. " + "filler " * 50)
    elif i % 4 == 1:
        msg.set_content(f"Alternative plain {i}")
        msg.add_alternative(
            f"<html><body><p>Alternative <b>html</b> {i}</p></body></html>", subtype="html"
        )
    elif i % 4 == 2:
        msg.set_content(f"Body with attachment {i}")
        msg.add_attachment(
            b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename=f"doc{i}.pdf"
        )
    else:  # mixed(alternative(plain, html), pdf): the text is section 1.1
        msg.set_content(f"Nested plain {i}")
        msg.add_alternative(f"<p>Nested html {i}</p>", subtype="html")
        msg.add_attachment(
            b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename=f"n{i}.pdf"
        )
    return msg


def _expect(letter, i: int) -> None:
    if i % 4 == 0:
        assert letter.snippet.startswith(f"Plain body of letter {i}. filler")
        assert len(letter.snippet) <= 201
        assert not letter.has_attachments
    elif i % 4 == 1:
        assert letter.snippet == f"Alternative plain {i}"
        assert not letter.has_attachments
    elif i % 4 == 2:
        assert letter.snippet == f"Body with attachment {i}"
        assert letter.has_attachments
    else:
        assert letter.snippet == f"Nested plain {i}"
        assert letter.has_attachments


async def test_import_recent_60_letters(mail_stack, mail_user, ctx) -> None:
    from mail.importer import import_recent

    for i in range(60):
        await mail_stack.deliver(mail_user.address, _letter(i, mail_user))
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        started = time.monotonic()
        result = await import_recent(client, limit=50)
        elapsed = time.monotonic() - started
    finally:
        await close_imap(client)
    assert len(result.letters) == 50
    assert result.round_trips <= 4
    # ~0.2 s: nothing waits (a pause, a command near its 30 s timeout); how fast the import
    # is, is measured in bench/connect_import.py, and the round trips are counted above
    assert elapsed < 10
    assert result.uidvalidity > 0
    assert result.uidnext == 61
    assert result.highest_uid == 60
    uids = [x.uid for x in result.letters]
    assert uids == sorted(uids, reverse=True)
    assert uids[0] == 60 and uids[-1] == 11
    for letter in result.letters:
        i = letter.uid - 1
        assert letter.subject == f"Letter number {i}"
        assert letter.from_name == f"Sender {i}"
        assert letter.from_addr == f"sender{i}@example.org"
        assert letter.to == mail_user.address
        assert letter.message_id == f"<letter{i}@example.org>"
        assert letter.date is not None and letter.date.minute == i % 60
        assert letter.size > 0
        _expect(letter, i)


def _odd_layout(i: int) -> bytes:
    """Layouts whose text part sits in sections other than 1 / 1.1 (prefix fallback)."""
    head = f"From: x{i}@example.org\r\nSubject: layout {i}\r\nMIME-Version: 1.0\r\n"
    if i == 0:  # picture first, text second: section 2
        return (
            head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText in section two\r\n--b--\r\n"
        ).encode()
    if i == 1:  # related(alternative(plain, html), image): section 1.1
        return (
            head + 'Content-Type: multipart/related; boundary="r"\r\n\r\n'
            '--r\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
            "--a\r\nContent-Type: text/plain\r\n\r\nRelated plain\r\n"
            "--a\r\nContent-Type: text/html\r\n\r\n<p>Related html</p>\r\n--a--\r\n"
            "--r\r\nContent-Type: image/png\r\nContent-ID: <i>\r\n\r\nxx\r\n--r--\r\n"
        ).encode()
    # mixed(mixed(alternative(plain, html))): section 1.1.1
    return (
        head + 'Content-Type: multipart/mixed; boundary="o"\r\n\r\n'
        '--o\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
        '--m\r\nContent-Type: multipart/alternative; boundary="a"\r\n\r\n'
        "--a\r\nContent-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode("Глубоко вложенный текст".encode("koi8_r")).decode()
        + "\r\n--a--\r\n--m--\r\n--o--\r\n"
    ).encode()


async def test_import_many_layouts_bounded_round_trips(mail_stack, mail_user, ctx) -> None:
    from mail.importer import import_recent

    for i in range(8):
        await mail_stack.deliver(mail_user.address, _letter(i, mail_user))
    for i in range(3):
        await mail_stack.deliver(mail_user.address, _odd_layout(i))
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        result = await import_recent(client)
    finally:
        await close_imap(client)
    assert result.round_trips == 5  # SELECT, headers, 2 section groups, 1 shared prefix fetch
    by_uid = {x.uid: x for x in result.letters}
    for uid in range(1, 9):
        _expect(by_uid[uid], uid - 1)
    assert by_uid[9].snippet == "Text in section two" and by_uid[9].has_attachments
    assert by_uid[10].snippet == "Related plain" and not by_uid[10].has_attachments
    assert by_uid[11].snippet == "Глубоко вложенный текст"


async def test_import_limit_smaller_than_mailbox(mail_stack, mail_user, ctx) -> None:
    from mail.importer import import_recent

    for i in range(5):
        await mail_stack.deliver(mail_user.address, _letter(i, mail_user))
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        result = await import_recent(client, limit=2)
    finally:
        await close_imap(client)
    assert [x.uid for x in result.letters] == [5, 4]
    assert result.highest_uid == 5


async def test_import_empty_mailbox(mail_stack, mail_user, ctx) -> None:
    from mail.importer import import_recent

    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        result = await import_recent(client)
    finally:
        await close_imap(client)
    assert result.letters == []
    assert result.uidvalidity > 0
    assert result.round_trips == 1
    assert result.highest_uid == 0


def _ugly_letters() -> list[bytes]:
    koi8 = "Привет из KOI8".encode("koi8_r")
    cp1251_subject = (
        "=?windows-1251?B?" + base64.b64encode("Тема в cp1251".encode("cp1251")).decode() + "?="
    )
    big_subject = "S" * 50_000
    return [
        # 1 koi8-r body, RFC 2047 koi8-r subject
        b"From: =?koi8-r?B?"
        + base64.b64encode("Иван".encode("koi8_r"))
        + b"?= <ivan@example.org>\r\n"
        b"Subject: =?koi8-r?Q?=F0=D2=C9=D7=C5=D4?=\r\nDate: Tue, 02 Jan 2024 09:00:00 +0300\r\n"
        b"Content-Type: text/plain; charset=koi8-r\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + koi8
        + b"\r\n",
        # 2 windows-1251 body and subject
        b"From: a@example.org\r\nSubject: " + cp1251_subject.encode() + b"\r\n"
        b"Content-Type: text/plain; charset=windows-1251\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + quopri.encodestring("Текст письма".encode("cp1251"))
        + b"\r\n",
        # 3 broken base64
        b"From: b@example.org\r\nSubject: broken base64\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n0J/RgNC40LLQtdGC!!!###\r\nnot base64 at all ***\r\n",
        # 4 HTML only
        b"From: c@example.org\r\nSubject: html only\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>body{color:red}</style><script>alert(1)</script></head>"
        b"<body><h1>Hello&nbsp;there</h1><p>Second&amp;para</p></body></html>\r\n",
        # 5 50 KB subject
        b"From: d@example.org\r\nSubject: "
        + big_subject.encode()
        + b"\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
        # 6 no From, no Date, unknown charset
        b"Subject: =?x-made-up?Q?abc?=\r\nContent-Type: text/plain; charset=x-made-up\r\n\r\nhello \xff world\r\n",
        # 7 raw 8-bit UTF-8 header, unknown encoding word in From
        "From: Пётр <p@example.org>\r\nSubject: Тема без кодирования\r\n\r\nтело\r\n".encode(),
    ]


async def test_import_ugly_letters(mail_stack, mail_user, ctx) -> None:
    from mail.importer import import_recent

    for raw in _ugly_letters():
        await mail_stack.deliver(mail_user.address, raw)
    client = await open_imap(
        servers(mail_stack, Security.SSL).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        result = await import_recent(client)
    finally:
        await close_imap(client)
    by_uid = {x.uid: x for x in result.letters}
    assert len(by_uid) == 7
    assert by_uid[1].subject == "Привет"
    assert by_uid[1].from_name == "Иван"
    assert by_uid[1].snippet == "Привет из KOI8"
    assert by_uid[2].subject == "Тема в cp1251"
    assert by_uid[2].snippet == "Текст письма"
    assert by_uid[3].subject == "broken base64"  # snippet: whatever could be decoded, no raise
    assert by_uid[4].snippet == "Hello there Second&para"
    assert len(by_uid[5].subject) <= 998
    assert by_uid[5].subject.startswith("SSSS")
    assert by_uid[6].from_addr == "" and by_uid[6].date is not None  # INTERNALDATE fallback
    assert "hello" in by_uid[6].snippet
    assert by_uid[7].from_name == "Пётр"
    assert by_uid[7].subject == "Тема без кодирования"


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
async def test_opened_client_can_idle(mail_stack, mail_user, ctx, security) -> None:
    """The watcher's contract: open_imap's client does SELECT + IDLE push as aioimaplib does."""
    client = await open_imap(
        servers(mail_stack, security).imap, creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    try:
        assert (await client.select("INBOX")).result == "OK"
        idle = await client.idle_start(timeout=30)
        await mail_stack.deliver(mail_user.address, _letter(1, mail_user))
        push = await client.wait_server_push(timeout=5)
        assert any(b"EXISTS" in line for line in push if isinstance(line, bytes))
        client.idle_done()
        await asyncio.wait_for(idle, 5)
    finally:
        await close_imap(client)


async def test_library_debug_log_is_forced_off(mail_stack, mail_user, ctx, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("aioimaplib").setLevel(logging.DEBUG)  # someone turns it on
    await check_account(
        servers(mail_stack, Security.STARTTLS), creds(mail_user), ssl_context=ctx, guard=GUARD
    )
    assert mail_user.password not in caplog.text
    assert logging.getLogger("aioimaplib").level >= logging.INFO
