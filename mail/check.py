"""The connection check run before an account is saved: log in to IMAP and SMTP for real."""

from __future__ import annotations

import asyncio
import ssl

from mail.imap import close_imap, open_imap, select_inbox
from mail.netguard import (
    HostGuard,
    as_mail_error,
    classify_auth_text,
    classify_imap_login,
    classify_smtp_auth,
)
from mail.smtp import check_smtp
from mail.types import Credentials, MailCheckError, MailServers, Protocol, ServerSettings

__all__ = [
    "check_account",
    "check_imap",
    "check_smtp",
    "classify_auth_text",
    "classify_imap_login",
    "classify_smtp_auth",
]


async def check_imap(
    server: ServerSettings,
    creds: Credentials,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> None:
    """Connect, log in, SELECT INBOX, log out. Raises MailCheckError."""
    client = await open_imap(server, creds, ssl_context=ssl_context, guard=guard, timeout=timeout)
    try:
        await select_inbox(client, timeout)
    finally:
        await close_imap(client)


async def check_account(
    servers: MailServers,
    creds: Credentials,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> None:
    """IMAP (connect + login + SELECT INBOX) and SMTP (EHLO + TLS + AUTH), concurrently.

    Raises MailCheckError: the IMAP one if both fail, with the SMTP one in `.others`.
    """
    results = await asyncio.gather(
        check_imap(servers.imap, creds, ssl_context=ssl_context, guard=guard, timeout=timeout),
        check_smtp(servers.smtp, creds, ssl_context=ssl_context, guard=guard, timeout=timeout),
        return_exceptions=True,
    )
    failures: list[MailCheckError] = []
    for protocol, result in zip((Protocol.IMAP, Protocol.SMTP), results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, MailCheckError):
            failures.append(result)
        elif isinstance(result, Exception):
            failures.append(as_mail_error(protocol, result))
        elif isinstance(result, BaseException):
            raise result
    if failures:  # the IMAP one first, carrying the SMTP one: both are told at once
        first = failures[0]
        first.others = tuple(failures[1:])
        raise first
