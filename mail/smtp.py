"""SMTP submission connections: guarded connect, implicit TLS or STARTTLS, AUTH.

aiosmtplib gets a socket that `HostGuard` connected to a checked address, plus the host name
for certificate verification. STARTTLS is done explicitly after the first EHLO and before
any AUTH: a server that doesn't offer it fails with TLS_FAILED and never sees the password.

An OAuth2 token logs in with OAUTHBEARER (RFC 7628) when EHLO lists it, else XOAUTH2; both
go through aiosmtplib's public `execute_command` (the SASL messages come from `mail.sasl`),
so the 334 error challenge a refused token gets is answered (0x01 for OAUTHBEARER, an empty
line for XOAUTH2), its JSON shown with the final refusal, and nothing waits for a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import aiosmtplib

from mail import sasl
from mail.netguard import HostGuard, as_mail_error, classify_smtp_auth
from mail.types import Credentials, FailureKind, MailCheckError, Protocol, Security, ServerSettings
from mail.validate import parse_host

SMTP = Protocol.SMTP
QUIT_TIMEOUT = 2.0


def _ehlo_name(sock: socket.socket) -> str:
    """An address literal of our side (RFC 5321 4.1.3): no slow getfqdn() lookup."""
    try:
        address = sock.getsockname()[0]
    except OSError:
        return "[127.0.0.1]"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()


async def _starttls(client: aiosmtplib.SMTP) -> None:
    await client.ehlo()
    if not client.supports_extension("starttls"):
        raise MailCheckError(
            SMTP,
            FailureKind.TLS_FAILED,
            "the server does not offer STARTTLS; the password is not sent unencrypted",
        )
    response = await client.starttls()
    if response.code != 220:  # pragma: no cover - aiosmtplib raises on refusals
        raise MailCheckError(
            SMTP, FailureKind.TLS_FAILED, f"{response.code} {response.message}", server_said=True
        )


async def _oauth2_login(
    client: aiosmtplib.SMTP, server: ServerSettings, login: str, token: str, methods: list[str]
) -> None:
    mechanism = sasl.choose(methods)
    if mechanism is None:
        raise MailCheckError(
            SMTP,
            FailureKind.AUTH_FAILED,
            "the server does not accept OAuth2 (neither OAUTHBEARER nor XOAUTH2)",
        )
    try:
        encoded = sasl.encoded_response(mechanism, login, token, server.host, server.port)
    except ValueError as exc:
        raise MailCheckError(SMTP, FailureKind.AUTH_FAILED, str(exc)) from exc
    response = await client.execute_command(b"AUTH", mechanism.encode(), encoded.encode())
    challenge = ""
    if response.code == 334:
        # a refused token: the error (base64 JSON) comes as a challenge; answer it to get
        # the final reply
        challenge = sasl.describe_challenge(response.message, token)
        response = await client.execute_command(sasl.error_answer(mechanism).encode())
        if response.code == 334:  # still challenging: cancel (RFC 4954)
            response = await client.execute_command(b"*")
    if response.code == 235:
        return
    reply = sasl.scrub(f"{response.code} {response.message}".strip(), token)
    detail = f"{reply} ({challenge})" if challenge else reply
    raise MailCheckError(
        SMTP,
        classify_smtp_auth(response.code, sasl.scrub(response.message, token)),
        detail,
        server_said=True,
    )


async def _authenticate(
    client: aiosmtplib.SMTP, server: ServerSettings, creds: Credentials
) -> None:
    await client.ehlo()  # again after STARTTLS: the extension list must come over TLS
    if not client.supports_extension("auth"):
        raise MailCheckError(SMTP, FailureKind.PROTOCOL, "the server does not offer SMTP AUTH")
    methods = [m.lower() for m in client.server_auth_methods]
    if creds.oauth2_token:
        await _oauth2_login(client, server, creds.login, creds.oauth2_token, methods)
        return
    if creds.password is None:
        raise MailCheckError(SMTP, FailureKind.AUTH_FAILED, "no password or token")
    if "plain" in methods:
        await client.auth_plain(creds.login, creds.password)
    elif "login" in methods:
        await client.auth_login(creds.login, creds.password)
    elif "cram-md5" in methods:
        await client.auth_crammd5(creds.login, creds.password)
    else:
        raise MailCheckError(
            SMTP, FailureKind.PROTOCOL, f"no password login offered (AUTH {' '.join(methods)})"
        )


async def open_smtp(
    server: ServerSettings,
    creds: Credentials,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> aiosmtplib.SMTP:
    """A connected SMTP client: EHLO, TLS (implicit or STARTTLS), AUTH done.
    Raises MailCheckError."""
    return await _open(server, creds, ssl_context, guard, timeout)


async def connect_smtp(
    server: ServerSettings,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> aiosmtplib.SMTP:
    """Connected and TLS-protected, no AUTH (used by server probing)."""
    return await _open(server, None, ssl_context, guard, timeout)


async def _open(
    server: ServerSettings,
    creds: Credentials | None,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float,  # noqa: ASYNC109
) -> aiosmtplib.SMTP:
    client: aiosmtplib.SMTP | None = None
    try:
        async with asyncio.timeout(timeout):
            sock = await guard.open_socket(server.host, server.port, SMTP, timeout)
            try:
                client = aiosmtplib.SMTP(
                    hostname=parse_host(server.host) or server.host,
                    sock=sock,
                    use_tls=server.security is Security.SSL,
                    start_tls=False,
                    tls_context=ssl_context,
                    timeout=timeout,
                    local_hostname=_ehlo_name(sock),
                )
            except BaseException:
                sock.close()
                raise
            # aiosmtplib/asyncio own the socket now and close it with the transport
            await client.connect()
            if server.security is Security.STARTTLS:
                await _starttls(client)
            if creds is not None:
                await _authenticate(client, server, creds)
    except BaseException as exc:
        if client is not None:
            client.close()
        if isinstance(exc, Exception):
            raise smtp_error(exc) from None
        raise
    return client


def smtp_error(exc: BaseException) -> MailCheckError:
    """Map an aiosmtplib / network exception to a MailCheckError."""
    if isinstance(exc, MailCheckError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return MailCheckError(
            SMTP, classify_smtp_auth(exc.code, exc.message), _reply(exc), server_said=True
        )
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return MailCheckError(SMTP, FailureKind.PROTOCOL, _reply(exc), server_said=True)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return MailCheckError(SMTP, FailureKind.TIMEOUT, str(exc))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        mapped = as_mail_error(SMTP, exc, _reply(exc))
        if mapped.kind is FailureKind.PROTOCOL and "starttls" in exc.message.lower():
            return MailCheckError(SMTP, FailureKind.TLS_FAILED, _reply(exc), server_said=True)
        if mapped.detail == _reply(exc):  # the server's reply, not a local failure
            mapped.server_said = True
        return mapped
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected) and exc.__cause__ is None:
        return MailCheckError(
            SMTP, FailureKind.PROTOCOL, str(exc) or "the server closed the connection"
        )
    return as_mail_error(SMTP, exc)


async def close_smtp(client: Any) -> None:
    """QUIT with a short timeout, then always close the connection."""
    if client is None:
        return
    try:
        if client.is_connected:
            await asyncio.wait_for(client.quit(), QUIT_TIMEOUT)
    except Exception:  # noqa: BLE001, S110 - best effort
        pass
    finally:
        client.close()


async def check_smtp(
    server: ServerSettings,
    creds: Credentials,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> None:
    """EHLO + TLS + AUTH, then QUIT. Raises MailCheckError."""
    client = await open_smtp(server, creds, ssl_context=ssl_context, guard=guard, timeout=timeout)
    await close_smtp(client)
