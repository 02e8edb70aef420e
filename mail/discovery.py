"""Propose IMAP/SMTP settings for an address, the way Thunderbird does.

Order: 1 built-in table (domain) -> 2 autoconfig.<domain> (https, then http) -> 3
https://<domain>/.well-known/autoconfig/... -> 4 MX host -> built-in table -> 5 probing the
usual host names. A proposal is only a guess: the wizard shows it and the user confirms it
before any password is sent. No credentials are ever used here.

All I/O goes through a `DiscoveryEnv` so tests can point it at local servers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import xml.etree.ElementTree as ET  # noqa: S405 - DOCTYPE/ENTITY rejected before parsing
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import dns.asyncresolver
import dns.exception
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from mail.imap import close_imap, connect_imap
from mail.netguard import HostGuard
from mail.providers import provider_for_domain, provider_for_mx
from mail.smtp import close_smtp, connect_smtp
from mail.types import MailCheckError, MailServers, Security, ServerSettings
from mail.types import Protocol as MailProtocol
from mail.validate import email_domain, email_local_part, parse_email, parse_host, parse_port

log = logging.getLogger(__name__)

MAX_XML_BYTES = 100 * 1024
MAX_MX_HOSTS = 3
MAX_REDIRECTS = 3
PROBE_TIMEOUT = 4.0


@dataclass
class Proposal:
    servers: MailServers
    source: str  # "builtin" | "autoconfig" | "wellknown" | "mx" | "probe"
    # login the source suggests (autoconfig %EMAILLOCALPART% -> local part); None = address
    username: str | None = None
    provider_id: str | None = None


class DiscoveryEnv(Protocol):
    async def http_get(self, url: str, timeout: float) -> bytes | None: ...  # noqa: ASYNC109

    async def mx_hosts(self, domain: str, timeout: float) -> list[str]: ...  # noqa: ASYNC109

    async def probe(self, server: ServerSettings, timeout: float) -> bool: ...  # noqa: ASYNC109


# --------------------------------------------------------------------------- autoconfig XML
class AutoconfigError(ValueError):
    pass


def _placeholders(text: str, address: str) -> str:
    return (
        text.replace("%EMAILADDRESS%", address)
        .replace("%EMAILLOCALPART%", email_local_part(address))
        .replace("%EMAILDOMAIN%", email_domain(address))
    )


def _server_from(el: ET.Element, address: str) -> tuple[ServerSettings, str | None] | None:
    host = parse_host(_placeholders((el.findtext("hostname") or "").strip(), address))
    port = parse_port((el.findtext("port") or "").strip())
    socket_type = (el.findtext("socketType") or "").strip().upper()
    security = {"SSL": Security.SSL, "TLS": Security.SSL, "STARTTLS": Security.STARTTLS}.get(
        socket_type
    )
    if host is None or port is None or security is None:
        return None  # plain / unknown socket types are never proposed
    username = el.findtext("username")
    login = _placeholders(username.strip(), address) if username and username.strip() else None
    return ServerSettings(host, port, security), login


def parse_autoconfig(data: bytes, address: str) -> tuple[MailServers, str | None] | None:
    """Parse the Thunderbird autoconfig (ISPDB) format: the first IMAP incomingServer and the
    first SMTP outgoingServer with SSL or STARTTLS. None if there isn't a usable pair.
    Raises AutoconfigError on oversized or unsafe XML (DOCTYPE / ENTITY)."""
    if len(data) > MAX_XML_BYTES:
        raise AutoconfigError("autoconfig document too large")
    upper = data.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise AutoconfigError("DOCTYPE/ENTITY not allowed in autoconfig")
    try:
        root = ET.fromstring(data)  # noqa: S314 - size-capped, no DTD
    except ET.ParseError as exc:
        raise AutoconfigError(f"bad XML: {exc}") from exc
    imap: tuple[ServerSettings, str | None] | None = None
    smtp: tuple[ServerSettings, str | None] | None = None
    for provider in root.iter("emailProvider"):
        for el in provider.iter("incomingServer"):
            if imap is None and (el.get("type") or "").lower() == "imap":
                imap = _server_from(el, address)
        for el in provider.iter("outgoingServer"):
            if smtp is None and (el.get("type") or "").lower() == "smtp":
                smtp = _server_from(el, address)
    if imap is None or smtp is None:
        return None
    return MailServers(imap[0], smtp[0]), imap[1]


# --------------------------------------------------------------------------- steps
def _username_or_none(login: str | None, address: str) -> str | None:
    return None if not login or login.lower() == address.lower() else login


async def _from_url(
    env: DiscoveryEnv, url: str, address: str, seconds: float, source: str
) -> Proposal | None:
    try:
        data = await asyncio.wait_for(env.http_get(url, seconds), seconds)
    except Exception as exc:  # noqa: BLE001 - a failed step just moves on
        log.debug("autoconfig %s: %s", url, exc)
        return None
    if not data:
        return None
    try:
        parsed = parse_autoconfig(data, address)
    except AutoconfigError as exc:
        log.info("autoconfig %s refused: %s", url, exc)
        return None
    if parsed is None:
        return None
    return Proposal(parsed[0], source, _username_or_none(parsed[1], address))


async def _from_mx(env: DiscoveryEnv, domain: str, seconds: float) -> Proposal | None:
    try:
        hosts = await asyncio.wait_for(env.mx_hosts(domain, seconds), seconds)
    except Exception as exc:  # noqa: BLE001
        log.debug("MX lookup %s: %s", domain, exc)
        return None
    for host in hosts[:MAX_MX_HOSTS]:
        provider = provider_for_mx(host)
        if provider is not None:
            return Proposal(provider.servers, "mx", provider_id=provider.id)
    return None


def probe_candidates(domain: str) -> tuple[list[ServerSettings], list[ServerSettings]]:
    imap = [
        ServerSettings(f"imap.{domain}", 993, Security.SSL),
        ServerSettings(f"imap.{domain}", 143, Security.STARTTLS),
        ServerSettings(f"mail.{domain}", 993, Security.SSL),
        ServerSettings(f"mail.{domain}", 143, Security.STARTTLS),
    ]
    smtp = [
        ServerSettings(f"smtp.{domain}", 465, Security.SSL),
        ServerSettings(f"smtp.{domain}", 587, Security.STARTTLS),
        ServerSettings(f"mail.{domain}", 465, Security.SSL),
        ServerSettings(f"mail.{domain}", 587, Security.STARTTLS),
    ]
    return imap, smtp


async def _from_probe(env: DiscoveryEnv, domain: str, seconds: float) -> Proposal | None:
    imap, smtp = probe_candidates(domain)
    candidates = imap + smtp

    async def one(server: ServerSettings) -> bool:
        try:
            return bool(await asyncio.wait_for(env.probe(server, seconds), seconds))
        except Exception:  # noqa: BLE001
            return False

    results = await asyncio.gather(*(one(s) for s in candidates))
    ok = {s for s, good in zip(candidates, results, strict=True) if good}
    found_imap = next((s for s in imap if s in ok), None)
    if found_imap is None:
        return None
    found_smtp = next((s for s in smtp if s in ok), None)
    if found_smtp is None:
        # the IMAP host answered: its submission port is the likeliest guess (user confirms)
        found_smtp = ServerSettings(found_imap.host, 587, Security.STARTTLS)
    return Proposal(MailServers(found_imap, found_smtp), "probe")


async def discover(email: str, env: DiscoveryEnv, *, timeout: float = 5.0) -> Proposal | None:  # noqa: ASYNC109
    """A proposal for the address's servers, or None. Each step gets `timeout` seconds."""
    address = parse_email(email)
    if address is None:
        return None
    domain = email_domain(address)
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None

    provider = provider_for_domain(ascii_domain)
    if provider is not None:
        return Proposal(provider.servers, "builtin", provider_id=provider.id)

    q = quote(address, safe="@")
    for url, source in (
        (f"https://autoconfig.{ascii_domain}/mail/config-v1.1.xml?emailaddress={q}", "autoconfig"),
        (f"http://autoconfig.{ascii_domain}/mail/config-v1.1.xml?emailaddress={q}", "autoconfig"),
        (f"https://{ascii_domain}/.well-known/autoconfig/mail/config-v1.1.xml", "wellknown"),
    ):
        found = await _from_url(env, url, address, timeout, source)
        if found is not None:
            return found

    found = await _from_mx(env, ascii_domain, timeout)
    if found is not None:
        return found
    return await _from_probe(env, ascii_domain, timeout)


# --------------------------------------------------------------------------- real env
async def probe_server(
    server: ServerSettings,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = PROBE_TIMEOUT,  # noqa: ASYNC109
    protocol: str | None = None,
) -> bool:
    """True if `server` speaks IMAP (or SMTP) with working TLS (implicit or STARTTLS).
    The protocol is taken from the port unless given ("imap" / "smtp")."""
    kind = protocol or ("smtp" if server.port in (25, 465, 587, 2525) else "imap")
    try:
        if kind == "imap":
            client: Any = await connect_imap(
                server, ssl_context=ssl_context, guard=guard, timeout=timeout
            )
            await close_imap(client)
        else:
            client = await connect_smtp(
                server, ssl_context=ssl_context, guard=guard, timeout=timeout
            )
            await close_smtp(client)
    except MailCheckError:
        return False
    return True


class RealDiscoveryEnv:
    """aiohttp for autoconfig (every host it connects to goes through HostGuard, redirects
    included; 100 KB cap), dnspython for MX, guarded TLS probes."""

    def __init__(
        self,
        guard: HostGuard,
        ssl_context: ssl.SSLContext,
        *,
        max_bytes: int = MAX_XML_BYTES,
        probe_timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self.guard = guard
        self.ssl_context = ssl_context
        self.max_bytes = max_bytes
        self.probe_timeout = probe_timeout

    async def http_get(self, url: str, timeout: float) -> bytes | None:  # noqa: ASYNC109
        """GET with at most MAX_REDIRECTS redirects, each target checked by HostGuard.

        Host names are resolved by `_GuardResolver` (aiohttp then connects to the checked
        address); IP literals never reach a resolver in aiohttp, so every URL's host is also
        checked here before the request. Redirects are followed by hand for the same reason.
        """
        connector = aiohttp.TCPConnector(resolver=_GuardResolver(self.guard), ssl=self.ssl_context)
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=client_timeout
            ) as session:
                for _ in range(MAX_REDIRECTS + 1):
                    target = URL(url)
                    if target.scheme not in ("http", "https") or not target.host:
                        return None
                    await self.guard.resolve(target.host, target.port or 0, MailProtocol.IMAP)
                    async with session.get(
                        target,
                        allow_redirects=False,
                        headers={"Accept": "application/xml, text/xml"},
                    ) as resp:
                        if resp.status in (301, 302, 303, 307, 308):
                            location = resp.headers.get("Location")
                            if not location:
                                return None
                            url = str(target.join(URL(location)))
                            continue
                        if resp.status != 200:
                            return None
                        return await self._read_capped(resp)
                return None
        except (aiohttp.ClientError, TimeoutError, MailCheckError, OSError, ValueError) as exc:
            log.debug("GET %s: %s", url, exc)
            return None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes | None:
        if (resp.content_length or 0) > self.max_bytes:
            return None
        data = bytearray()
        async for chunk in resp.content.iter_chunked(16384):
            data.extend(chunk)
            if len(data) > self.max_bytes:
                return None
        return bytes(data)

    async def mx_hosts(self, domain: str, timeout: float) -> list[str]:  # noqa: ASYNC109
        try:
            answer = await dns.asyncresolver.resolve(domain, "MX", lifetime=timeout)
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("MX %s: %s", domain, exc)
            return []
        records = sorted(answer, key=lambda r: int(getattr(r, "preference", 0)))
        hosts = [str(getattr(r, "exchange", "")).rstrip(".").lower() for r in records]
        return [h for h in hosts if h]

    async def probe(self, server: ServerSettings, timeout: float) -> bool:  # noqa: ASYNC109
        return await probe_server(
            server,
            ssl_context=self.ssl_context,
            guard=self.guard,
            timeout=min(timeout, self.probe_timeout),
        )


class _GuardResolver(AbstractResolver):
    """aiohttp resolver that only returns addresses HostGuard accepts."""

    def __init__(self, guard: HostGuard) -> None:
        self.guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self.guard.resolve(host, port, MailProtocol.IMAP)
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for a in addresses
        ]

    async def close(self) -> None:
        return None
