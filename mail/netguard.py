"""Where the bot may connect to, and how network failures are reported.

A user types a host name; the bot must not be turned into a probe of its own network
(loopback, private ranges, cloud metadata at 169.254.169.254, ...). `HostGuard.resolve`
refuses such addresses, and `HostGuard.open_socket` connects to exactly the address that was
checked (no second DNS lookup, so DNS rebinding can't slip past). TLS on top of that socket
still verifies the host name the user typed.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from mail.tls import tls_detail, tls_failure_kind
from mail.types import FailureKind, MailCheckError, Protocol
from mail.validate import ip_literal, parse_host

Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

# TCP keepalive: notice a dead peer (NAT dropped the flow) within ~2 minutes of silence.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 15
KEEPALIVE_COUNT = 4
MAX_ADDRESSES = 4


def is_forbidden_address(ip: IPAddress) -> bool:
    """True for anything that isn't a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_forbidden_address(ip.ipv4_mapped)
        if ip in _NAT64:
            return is_forbidden_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _NAT64_LOCAL:
            return True
        if ip.sixtofour is not None and is_forbidden_address(ip.sixtofour):
            return True
        if ip.teredo is not None and is_forbidden_address(ip.teredo[1]):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


async def _default_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


def enable_keepalive(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        opt = getattr(socket, name, None)
        if opt is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
            except OSError:  # pragma: no cover - platform specific
                pass


class HostGuard:
    def __init__(self, allow_private: bool = False, resolver: Resolver | None = None) -> None:
        self.allow_private = allow_private
        self._resolver: Resolver = resolver or _default_resolver

    async def resolve(self, host: str, port: int, protocol: Protocol) -> list[str]:
        """The addresses to connect to (deduplicated, resolver order).

        MailCheckError(HOST_NOT_FOUND) for a malformed or unresolvable name,
        MailCheckError(PRIVATE_ADDRESS) if ANY address is not public (unless allow_private).
        """
        name = parse_host(host) if isinstance(host, str) else None
        if name is None:
            raise MailCheckError(
                protocol, FailureKind.HOST_NOT_FOUND, f"invalid host name: {host!r}"
            )
        literal = ip_literal(name)
        if literal is not None:
            raw = [str(literal)]
        else:
            try:
                raw = await self._resolver(name, port)
            except (OSError, UnicodeError, ValueError) as exc:
                raise MailCheckError(
                    protocol, FailureKind.HOST_NOT_FOUND, f"{name}: {exc}"
                ) from exc
        addresses: list[str] = []
        for item in raw:
            text = str(item).split("%", 1)[0]  # drop an IPv6 zone
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if str(ip) not in addresses:
                addresses.append(str(ip))
            if not self.allow_private and is_forbidden_address(ip):
                raise MailCheckError(
                    protocol, FailureKind.PRIVATE_ADDRESS, f"{name} resolves to {ip}"
                )
        if not addresses:
            raise MailCheckError(protocol, FailureKind.HOST_NOT_FOUND, f"{name}: no address")
        return addresses

    async def open_socket(
        self,
        host: str,
        port: int,
        protocol: Protocol,
        timeout: float,  # noqa: ASYNC109
    ) -> socket.socket:
        """A connected non-blocking TCP socket (keepalive on) to a checked address of host."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            addresses = await asyncio.wait_for(self.resolve(host, port, protocol), timeout)
        except TimeoutError:
            raise MailCheckError(
                protocol, FailureKind.HOST_NOT_FOUND, f"{host}: DNS lookup timed out"
            ) from None
        async with asyncio.timeout_at(deadline):
            return await connect_first(addresses[:MAX_ADDRESSES], port, protocol)


async def connect_first(addresses: list[str], port: int, protocol: Protocol) -> socket.socket:
    loop = asyncio.get_running_loop()
    last: BaseException | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            enable_keepalive(sock)
            await loop.sock_connect(sock, (address, port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise as_mail_error(protocol, last) from last


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__
    return out


_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}


def as_mail_error(
    protocol: Protocol, exc: BaseException, default_detail: str = ""
) -> MailCheckError:
    """Map a network / TLS / timeout exception (or anything it was raised from) to a
    MailCheckError the user can act on."""
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, MailCheckError):
            return e
        if isinstance(e, ssl.SSLError):
            return MailCheckError(protocol, tls_failure_kind(e), tls_detail(e))
        if isinstance(e, socket.gaierror):
            return MailCheckError(protocol, FailureKind.HOST_NOT_FOUND, str(e))
        if isinstance(e, ConnectionRefusedError):
            return MailCheckError(protocol, FailureKind.CONNECTION_REFUSED, str(e))
        if isinstance(e, TimeoutError):
            return MailCheckError(protocol, FailureKind.TIMEOUT, str(e) or "timed out")
        if isinstance(e, OSError) and e.errno in _UNREACHABLE:
            return MailCheckError(protocol, FailureKind.CONNECTION_REFUSED, str(e))
    for e in chain:
        if isinstance(e, (ConnectionError, EOFError, asyncio.IncompleteReadError)):
            return MailCheckError(
                protocol, FailureKind.PROTOCOL, default_detail or "connection closed by the server"
            )
    return MailCheckError(
        protocol, FailureKind.PROTOCOL, default_detail or str(exc) or type(exc).__name__
    )


# --------------------------------------------------------------------------- server replies
# Phrases of real provider replies, lower-case. Sources: Gmail (IMAP "[ALERT]
# Application-specific password required", SMTP "534-5.7.9 ... InvalidSecondFactor"), Mail.ru
# ("NEOBHODIM parol prilozheniya ... / Application password is REQUIRED"), Yandex
# ("[AUTHENTICATIONFAILED] LOGIN invalid credentials or IMAP is disabled"), Microsoft
# ("535 5.7.139 Authentication unsuccessful, basic authentication is disabled",
# "SmtpClientAuthentication is disabled for the Tenant", "User is authenticated but not
# connected"), Rambler (access for mail programs switched off).
APP_PASSWORD_PHRASES = (
    "application-specific password",
    "application specific password",
    "application password",
    "app password",
    "app-specific password",
    "parol prilozheniya",
    "пароль приложения",
    "паролем приложения",
    "пароля приложения",
    "invalidsecondfactor",
    "please log in via your web browser",
    "web login required",
    "weblogin",
    "basic authentication is disabled",
    "basic authentication is not supported",
    "basic auth is disabled",
    "basicauthblocked",
)
DISABLED_PHRASES = (
    "imap is disabled",
    "imap access is disabled",
    "imap access disabled",
    "imap disabled",
    "imap is not enabled",
    "imap access is not enabled",
    "not enabled for imap",
    "imap not enabled",
    "access for mail programs",
    "access via mail clients",
    "access for mail clients",
    "mail client access",
    "mail programs",
    "почтовых программ",
    "почтовых клиентов",
    "почтовые программы",
    "доступ по imap",
    "imap выключен",
    "imap отключ",
    "authenticated but not connected",
    "smtpclientauthentication is disabled",
    "smtp auth is disabled",
    "smtp authentication is disabled",
    "smtp client authentication is disabled",
)
_DISABLED_RE = re.compile(r"\b(imap|smtp)\b[^.\]]{0,60}\b(disabled|switched off|turned off)\b")


def classify_auth_text(text: str) -> FailureKind | None:
    """APP_PASSWORD_REQUIRED / IMAP_DISABLED / TLS_FAILED when a login refusal says so,
    None when it is a plain refusal (the caller decides: usually AUTH_FAILED)."""
    t = (text or "").lower()
    if any(p in t for p in APP_PASSWORD_PHRASES):
        return FailureKind.APP_PASSWORD_REQUIRED
    if any(p in t for p in DISABLED_PHRASES) or _DISABLED_RE.search(t):
        return FailureKind.IMAP_DISABLED
    if "[privacyrequired]" in t or "must issue a starttls" in t or "encryption required" in t:
        return FailureKind.TLS_FAILED
    return None


def classify_imap_login(result: str, text: str) -> FailureKind:
    """Kind of a refused IMAP LOGIN/AUTHENTICATE (result "NO" or "BAD", text = server words)."""
    kind = classify_auth_text(text)
    if kind is not None:
        return kind
    t = text.lower()
    if result.upper() == "NO" or "authenticationfailed" in t or "authorizationfailed" in t:
        return FailureKind.AUTH_FAILED
    if any(
        w in t for w in ("invalid credentials", "authentication failed", "login failed", "password")
    ):
        return FailureKind.AUTH_FAILED
    return FailureKind.PROTOCOL


def classify_smtp_auth(code: int, text: str) -> FailureKind:
    """Kind of a refused SMTP AUTH (reply code + text)."""
    kind = classify_auth_text(text)
    if kind is not None:
        return kind
    t = text.lower()
    if code == 534 or "5.7.9" in t or "5.7.14" in t:
        return FailureKind.APP_PASSWORD_REQUIRED
    if code in (530, 538) and ("starttls" in t or "tls" in t or "encrypt" in t):
        return FailureKind.TLS_FAILED
    if code == 535 or 500 <= code < 600:
        return FailureKind.AUTH_FAILED
    return FailureKind.PROTOCOL


def imap_status_text(response: Any) -> str:
    """The server's words in an IMAP response: its last non-blank line (at most 300 chars)."""
    lines = [
        bytes(x).decode("utf-8", "replace").strip() if isinstance(x, bytes | bytearray) else ""
        for x in getattr(response, "lines", None) or []
    ]
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def require_ok(response: Any, what: str) -> Any:
    """The IMAP command's response if it is OK; else MailCheckError with the server's words,
    classified like a login refusal when they say why (IMAP switched off, app password
    needed, TLS required) and PROTOCOL otherwise. The one "was it OK" check of mail/."""
    result = getattr(response, "result", None)
    if result == "OK":
        return response
    said = imap_status_text(response)
    detail = said or f"answered {result or 'nothing'}"
    kind = classify_auth_text(detail) or FailureKind.PROTOCOL
    # "the server said" only when these are the server's words
    raise MailCheckError(Protocol.IMAP, kind, f"{what}: {detail}", server_said=bool(said))
