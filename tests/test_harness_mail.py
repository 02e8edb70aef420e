"""Proof that the mail harness works: real Dovecot IMAP/LMTP and the aiosmtpd submission server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import os
import secrets
import stat
import time
import uuid
from email.message import EmailMessage

import aioimaplib
import aiosmtplib
import pytest

from tests.harness.mailstack import MailStack, MailUser


def new_user(stack: MailStack) -> MailUser:
    user = MailUser(f"r{uuid.uuid4().hex[:8]}@example.org", secrets.token_urlsafe(12))
    stack.add_user(user.address, user.password)
    return user


def make_letter(sender: str, to: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="example.org")
    msg.set_content(f"Body of {subject}\n")
    return msg


async def imap_connect(stack: MailStack, port: int | None = None) -> aioimaplib.IMAP4_SSL:
    client = aioimaplib.IMAP4_SSL(
        host=stack.host,
        port=port or stack.imap_ssl_port,
        ssl_context=stack.client_ssl_context(),
        timeout=5,
    )
    await client.wait_hello_from_server()
    return client


async def imap_login(stack: MailStack, address: str, password: str) -> tuple[aioimaplib.IMAP4_SSL, str]:
    client = await imap_connect(stack)
    response = await client.login(address, password)
    return client, response.result


async def inbox_subjects(stack: MailStack, user: MailUser) -> list[str]:
    client, result = await imap_login(stack, user.address, user.password)
    assert result == "OK"
    try:
        await client.select("INBOX")
        response = await client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert response.result == "OK"
        subjects = []
        for line in response.lines:
            if isinstance(line, bytearray | bytes) and line.lower().startswith(b"subject:"):
                subjects.append(line.split(b":", 1)[1].strip().decode())
        return subjects
    finally:
        await client.logout()


async def read_tagged(reader: asyncio.StreamReader, tag: bytes) -> list[bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line:
            raise EOFError(b"".join(lines))
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines


# ------------------------------------------------------------------------------------ IMAP


async def test_login_over_implicit_tls(mail_stack: MailStack, mail_user: MailUser) -> None:
    client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
    assert result == "OK"
    assert client.get_state() == "AUTH"
    await client.logout()


async def test_login_is_case_insensitive_on_address(mail_stack: MailStack, mail_user: MailUser) -> None:
    client, result = await imap_login(mail_stack, mail_user.address.upper(), mail_user.password)
    assert result == "OK"
    await client.logout()


async def test_wrong_password_gives_authenticationfailed(mail_stack: MailStack, mail_user: MailUser) -> None:
    client = await imap_connect(mail_stack)
    response = await client.login(mail_user.address, "nope")
    assert response.result == "NO"
    assert any(b"[AUTHENTICATIONFAILED]" in bytes(line) for line in response.lines), response.lines
    await client.logout()


async def test_failed_login_does_not_delay_other_users(mail_stack: MailStack) -> None:
    victim, other = new_user(mail_stack), new_user(mail_stack)
    for _ in range(2):
        client, result = await imap_login(mail_stack, victim.address, "bad password")
        assert result == "NO"
        await client.logout()
    started = time.monotonic()
    client, result = await imap_login(mail_stack, other.address, other.password)
    elapsed = time.monotonic() - started
    assert result == "OK"
    # a login takes ~0.02 s; after these two failures anvil's auth penalty would hold it ~4 s
    assert elapsed < 2.0, f"login after a failure took {elapsed:.2f}s (anvil auth penalty?)"
    await client.logout()
    # the failing user itself is not penalised either
    started = time.monotonic()
    client, result = await imap_login(mail_stack, victim.address, victim.password)
    assert result == "OK"
    assert time.monotonic() - started < 2.0  # as above
    await client.logout()


async def test_delivered_message_appears_in_inbox(mail_stack: MailStack, mail_user: MailUser) -> None:
    subject = f"Hello {uuid.uuid4().hex[:6]}"
    await mail_stack.deliver(mail_user.address, make_letter("a@example.org", mail_user.address, subject))
    await mail_stack.deliver(mail_user.address, b"Subject: raw bytes\nFrom: b@example.org\n\nhi\n")

    client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
    assert result == "OK"
    response = await client.select("INBOX")
    assert response.result == "OK"
    assert any(bytes(line).endswith(b"2 EXISTS") for line in response.lines), response.lines

    response = await client.fetch("1", "(UID RFC822)")
    assert response.result == "OK"
    raw = bytes(response.lines[1])
    letter = email.message_from_bytes(raw, policy=email.policy.default)
    assert letter["Subject"] == subject
    assert letter.get_content().strip() == f"Body of {subject}"
    assert b"UID 1 " in bytes(response.lines[0]) or b"UID 1)" in bytes(response.lines[0])
    await client.logout()

    assert mail_stack.mailbox_uids(mail_user.address) == [1, 2]
    assert await inbox_subjects(mail_stack, mail_user) == [subject, "raw bytes"]


async def test_deliver_to_unknown_user_fails(mail_stack: MailStack) -> None:
    with pytest.raises(Exception, match="550|doesn't exist|Unknown"):
        await mail_stack.deliver("nobody-here@example.org", b"Subject: x\n\nx\n")


async def test_special_use_folders_exist(mail_stack: MailStack, mail_user: MailUser) -> None:
    client, _ = await imap_login(mail_stack, mail_user.address, mail_user.password)
    response = await client.list('""', "*")
    names = b"".join(bytes(line) for line in response.lines)
    for flag in (b"\\Sent", b"\\Drafts", b"\\Trash", b"\\Junk"):
        assert flag in names
    await client.logout()


async def test_idle_gets_exists_push(mail_stack: MailStack, mail_user: MailUser) -> None:
    client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
    assert result == "OK"
    await client.select("INBOX")
    idle = await client.idle_start(timeout=10)
    try:
        started = time.monotonic()
        await mail_stack.deliver(mail_user.address, make_letter("a@example.org", mail_user.address, "push"))
        pushed: list[bytes] = []
        # the push comes ~0.5 s after the delivery; without it (inotify and the 1 s
        # mailbox_idle_check_interval both not working) Dovecot would look every 30 s
        while not any(b"EXISTS" in line for line in pushed):
            remaining = 10 - (time.monotonic() - started)
            assert remaining > 0, f"no EXISTS push within 10 s, got {pushed}"
            batch = await client.wait_server_push(timeout=remaining)
            pushed.extend(bytes(x) for x in (batch if isinstance(batch, list) else [batch]))
        assert any(line.strip() == b"1 EXISTS" for line in pushed), pushed
    finally:
        client.idle_done()
        await asyncio.wait_for(idle, 5)
    await client.logout()


async def test_starttls_port_refuses_login_before_tls(mail_stack: MailStack, mail_user: MailUser) -> None:
    reader, writer = await asyncio.open_connection(mail_stack.host, mail_stack.imap_starttls_port)
    try:
        greeting = await asyncio.wait_for(reader.readline(), 5)
        assert greeting.startswith(b"* OK")

        writer.write(b"a1 CAPABILITY\r\n")
        lines = await read_tagged(reader, b"a1")
        caps = b"".join(lines).upper()
        assert lines[-1].startswith(b"a1 OK")
        assert b"STARTTLS" in caps
        assert b"LOGINDISABLED" in caps

        writer.write(f"a2 LOGIN {mail_user.address} {mail_user.password}\r\n".encode())
        lines = await read_tagged(reader, b"a2")
        assert lines[-1].startswith((b"a2 NO", b"a2 BAD")), lines

        writer.write(b"a3 STARTTLS\r\n")
        lines = await read_tagged(reader, b"a3")
        assert lines[-1].startswith(b"a3 OK"), lines
        await writer.start_tls(mail_stack.client_ssl_context(), server_hostname="localhost")

        writer.write(b"a4 CAPABILITY\r\n")
        caps = b"".join(await read_tagged(reader, b"a4")).upper()
        assert b"LOGINDISABLED" not in caps
        assert b"AUTH=PLAIN" in caps

        writer.write(f'a5 LOGIN "{mail_user.address}" "{mail_user.password}"\r\n'.encode())
        lines = await read_tagged(reader, b"a5")
        assert lines[-1].startswith(b"a5 OK"), lines

        writer.write(b"a6 LOGOUT\r\n")
        await read_tagged(reader, b"a6")
    finally:
        writer.close()


# ------------------------------------------------------------------------------------ SMTP


@pytest.mark.parametrize("listener", ["ssl", "starttls"])
async def test_smtp_submission_lands_in_recipient_inbox(
    mail_stack: MailStack, mail_user: MailUser, listener: str
) -> None:
    recipient = new_user(mail_stack)
    subject = f"via {listener} {uuid.uuid4().hex[:6]}"
    letter = make_letter(mail_user.address, recipient.address, subject)
    tls = {"use_tls": True} if listener == "ssl" else {"start_tls": True}
    port = mail_stack.smtp_ssl_port if listener == "ssl" else mail_stack.smtp_starttls_port
    errors, reply = await aiosmtplib.send(
        letter,
        hostname=mail_stack.host,
        port=port,
        username=mail_user.address,
        password=mail_user.password,
        tls_context=mail_stack.client_ssl_context(),
        timeout=10,
        **tls,
    )
    assert errors == {}
    assert reply.startswith("OK") or "queued" in reply

    # relayed synchronously over LMTP: it is in the mailbox as soon as SMTP said 250
    assert await inbox_subjects(mail_stack, recipient) == [subject]
    record = mail_stack.submitted[-1]
    assert record.login == mail_user.address
    assert record.listener == listener
    assert record.rcpt_tos == (recipient.address,)


async def test_smtp_starttls_listener_requires_tls_before_auth(
    mail_stack: MailStack, mail_user: MailUser
) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=mail_stack.host, port=mail_stack.smtp_starttls_port, start_tls=False, timeout=5
    )
    await smtp.connect()
    try:
        await smtp.ehlo()
        assert smtp.supports_extension("starttls")
        code, _ = await smtp.execute_command(b"AUTH", b"PLAIN")
        assert code == 530
        await smtp.starttls(tls_context=mail_stack.client_ssl_context())
        await smtp.ehlo()
        assert {"plain", "login"} <= set(smtp.server_auth_methods)
        response = await smtp.login(mail_user.address, mail_user.password)
        assert response.code == 235
    finally:
        await smtp.quit()


async def test_smtp_requires_auth_and_known_recipient(mail_stack: MailStack, mail_user: MailUser) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=mail_stack.host,
        port=mail_stack.smtp_ssl_port,
        use_tls=True,
        tls_context=mail_stack.client_ssl_context(),
        timeout=5,
    )
    await smtp.connect()
    try:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as exc:
            await smtp.mail(mail_user.address)
        assert exc.value.code == 530
        await smtp.login(mail_user.address, mail_user.password)
        await smtp.mail(mail_user.address)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await smtp.rcpt("nobody-here@example.org")
        assert refused.value.code == 550
    finally:
        await smtp.quit()


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN"])
async def test_smtp_bad_password_gives_535(
    mail_stack: MailStack, mail_user: MailUser, method: str
) -> None:
    smtp = aiosmtplib.SMTP(
        hostname=mail_stack.host,
        port=mail_stack.smtp_ssl_port,
        use_tls=True,
        tls_context=mail_stack.client_ssl_context(),
        timeout=5,
    )
    await smtp.connect()
    try:
        await smtp.ehlo()
        login = smtp.auth_plain if method == "PLAIN" else smtp.auth_login
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc:
            await login(mail_user.address, "wrong")
        assert exc.value.code == 535
        response = await login(mail_user.address, mail_user.password)
        assert response.code == 235
    finally:
        await smtp.quit()


# ------------------------------------------------------------------------------- control


async def smtp_login_code(stack: MailStack, address: str, password: str) -> int:
    smtp = aiosmtplib.SMTP(
        hostname=stack.host, port=stack.smtp_ssl_port, use_tls=True,
        tls_context=stack.client_ssl_context(), timeout=5,
    )
    await smtp.connect()
    try:
        return (await smtp.login(address, password)).code
    except aiosmtplib.SMTPAuthenticationError as exc:
        return exc.code
    finally:
        await smtp.quit()


async def test_set_password_takes_effect_at_once(mail_stack: MailStack, mail_user: MailUser) -> None:
    # the first login makes Dovecot read the current passwd-file
    client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
    assert result == "OK"
    await client.logout()

    # two same-length changes within one second must both be seen
    for new_password in ("first-new-pw", "secnd-new-pw"):
        old_password = mail_user.password
        mail_stack.set_password(mail_user.address, new_password)
        mail_user = MailUser(mail_user.address, new_password)

        client, result = await imap_login(mail_stack, mail_user.address, old_password)
        assert result == "NO"
        await client.logout()
        client, result = await imap_login(mail_stack, mail_user.address, new_password)
        assert result == "OK"
        await client.logout()

        assert await smtp_login_code(mail_stack, mail_user.address, old_password) == 535
        assert await smtp_login_code(mail_stack, mail_user.address, new_password) == 235


async def test_stop_and_start_imap_on_same_port(
    mail_stack: MailStack, mail_user: MailUser, caplog: pytest.LogCaptureFixture
) -> None:
    port = mail_stack.imap_ssl_port
    await mail_stack.deliver(mail_user.address, b"Subject: before restart\n\nx\n")
    await mail_stack.stop_imap()
    try:
        for p in (mail_stack.imap_ssl_port, mail_stack.imap_starttls_port, mail_stack.lmtp_port):
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(mail_stack.host, p)
        with pytest.raises(OSError):
            await imap_connect(mail_stack)
        # SMTP stays up (it is a separate server) but cannot relay while Dovecot is down
        assert await smtp_login_code(mail_stack, mail_user.address, mail_user.password) == 235
    finally:
        started = time.monotonic()
        await mail_stack.start_imap()
        start_time = time.monotonic() - started
    assert mail_stack.imap_ssl_port == port
    # stopped by SIGTERM (~1 s), not by the SIGKILL that follows 5 s without a stop
    assert "did not stop" not in caplog.text
    # ~0.1 s; a stale anvil-auth-penalty socket would make it 5 s
    assert start_time < 2.5, start_time
    client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
    assert result == "OK"
    await client.logout()
    # mail survived the restart
    assert await inbox_subjects(mail_stack, mail_user) == ["before restart"]


async def test_two_stacks_coexist_and_stop_cleans_up(mail_stack: MailStack, tmp_path) -> None:
    other = await MailStack.start(tmp_path / "second")
    try:
        ports = {other.imap_ssl_port, other.imap_starttls_port, other.lmtp_port,
                 other.smtp_ssl_port, other.smtp_starttls_port}
        assert len(ports) == 5
        assert not ports & {mail_stack.imap_ssl_port, mail_stack.imap_starttls_port,
                            mail_stack.lmtp_port, mail_stack.smtp_ssl_port,
                            mail_stack.smtp_starttls_port}
        user = new_user(other)
        await other.deliver(user.address, b"Subject: second stack\n\nx\n")
        assert await inbox_subjects(other, user) == ["second stack"]
        # users are per stack
        assert not mail_stack.has_user(user.address)
        master = other._proc.pid
    finally:
        await other.stop()
    for p in ports:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(other.host, p)
    with pytest.raises(ProcessLookupError):
        os.kill(master, 0)


async def test_stack_survives_another_pytest_resetting_its_temp_root(
    mail_stack: MailStack, mail_user, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Another pytest run on the machine makes pytest's per-user temp folder 0700 again; the
    stack's maildirs live in a directory of their own, so Dovecot keeps working."""
    assert not mail_stack.workdir.is_relative_to(tmp_path_factory.getbasetemp().parent)
    user_root = tmp_path_factory.getbasetemp().parent
    mode = stat.S_IMODE(user_root.stat().st_mode)
    os.chmod(user_root, 0o700)  # what a concurrent pytest session does at its start
    try:
        await mail_stack.deliver(mail_user.address, b"Subject: after reset\n\nx\n")
        client, result = await imap_login(mail_stack, mail_user.address, mail_user.password)
        assert result == "OK"
        await client.logout()
        assert await inbox_subjects(mail_stack, mail_user) == ["after reset"]
    finally:
        os.chmod(user_root, mode)
