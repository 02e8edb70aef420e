"""Administration use cases (no Telegram code): standard services on/off, company servers
(add, edit, remove, test without credentials), feature flags, and the status counts.

* Disabling a service only hides it from the wizard's picker (``ServiceRepo.list_enabled``
  and ``MailboxService.get_service`` look at ``enabled``); accounts already connected through
  it keep their own copy of the server settings and keep being watched.
* Company servers are ``Service`` rows of kind ``company``, listed first in the picker
  (``sort_order`` 0; standard services start at 10). Their code (``company-<slug>``) is what
  ``/oauth_client`` takes. A server that accounts still use can't be removed, only hidden.
* Feature flags: configuration wins over the value kept in ``feature_flags``
  (see services/oauth.py); both are reported so the admin sees why a switch has no effect.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mail.imap import close_imap, connect_imap
from mail.smtp import close_smtp, connect_smtp, smtp_error
from mail.types import FailureKind, MailCheckError, Protocol, Security, ServerSettings
from mail.validate import email_domain, parse_email, parse_host, parse_port
from services.deps import MailDeps, OAuthSettings
from services.oauth import FLAG as OAUTH_FLAG
from services.oauth import OAuthService
from storage.models import FeatureFlag, Mailbox, MailboxState, Service, ServiceKind, User
from storage.repositories import ServiceRepo

log = logging.getLogger(__name__)

COMPANY_PREFIX = "company-"
COMPANY_SORT = 0  # before the standard services (10, 20, ...) and Other (10 000)
NAME_MAX = 128
DOMAINS_MAX = 20
ACCOUNTS_SHOWN = 30
ERRORS_SHOWN = 5
FLAGS = (OAUTH_FLAG,)

DEFAULT_PORTS = {
    (Protocol.IMAP, Security.SSL): 993,
    (Protocol.IMAP, Security.STARTTLS): 143,
    (Protocol.SMTP, Security.SSL): 465,
    (Protocol.SMTP, Security.STARTTLS): 587,
}
STARTTLS_PORTS = {143, 587, 25, 2525}
_SECURITY_WORDS = {
    "ssl": Security.SSL,
    "tls": Security.SSL,
    "ssl/tls": Security.SSL,
    "implicit": Security.SSL,
    "starttls": Security.STARTTLS,
}


class AdminError(Exception):
    pass


class NotFound(AdminError):
    pass


class InUse(AdminError):
    """The company server still has accounts: hide it instead of removing it."""

    def __init__(self, accounts: int) -> None:
        super().__init__(f"{accounts} accounts use this server")
        self.accounts = accounts


# ---- parsing what the admin types ----------------------------------------------------------
def parse_name(text: str | None) -> str | None:
    value = " ".join((text or "").split())
    if not value or len(value) > NAME_MAX or any(ord(c) < 32 for c in value):
        return None
    return value


def parse_domains(text: str | None) -> list[str] | None:
    """"acme.com, acme.ru" -> ["acme.com", "acme.ru"] (lower case, no duplicates), or None."""
    parts = [p for p in re.split(r"[\s,;]+", (text or "").strip().lower()) if p]
    if not parts or len(parts) > DOMAINS_MAX:
        return None
    result: list[str] = []
    for part in parts:
        part = part.removeprefix("@")
        address = parse_email(f"postmaster@{part}")
        if address is None:
            return None
        domain = email_domain(address)
        if domain not in result:
            result.append(domain)
    return result


def parse_server(text: str | None, protocol: Protocol) -> ServerSettings | None:
    """"host[:port] [ssl|starttls]" (or "host port security"). A missing port follows the
    security (993/143, 465/587); a missing security follows the port (143, 587, 25 are
    STARTTLS, anything else implicit TLS)."""
    tokens = (text or "").replace(",", " ").split()
    if not tokens or len(tokens) > 3:
        return None
    host_part, rest = tokens[0], tokens[1:]
    port: int | None = None
    security: Security | None = None
    if host_part.count(":") == 1:
        host_part, _, port_text = host_part.partition(":")
        port = parse_port(port_text)
        if port is None:
            return None
    for token in rest:
        word = token.lower()
        if word in _SECURITY_WORDS and security is None:
            security = _SECURITY_WORDS[word]
        elif port is None and parse_port(token) is not None:
            port = parse_port(token)
        else:
            return None
    host = parse_host(host_part)
    if host is None:
        return None
    if security is None:
        security = Security.STARTTLS if port in STARTTLS_PORTS else Security.SSL
    if port is None:
        port = DEFAULT_PORTS[(protocol, security)]
    return ServerSettings(host, port, security)


def server_text(server: ServerSettings) -> str:
    """The form parse_server reads back."""
    return f"{server.host}:{server.port} {server.security.value}"


# ---- results -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceRow:
    service: Service
    accounts: int  # connected, reconnecting or broken (drafts left out)


@dataclass(frozen=True, slots=True)
class CompanyInput:
    name: str
    domains: list[str]
    imap: ServerSettings
    smtp: ServerSettings


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What a connection to one server port showed (no credentials are sent)."""

    protocol: Protocol
    server: ServerSettings
    ok: bool
    kind: FailureKind | None = None
    detail: str = ""
    tls_version: str = ""
    greeting: str = ""
    server_said: bool = False  # detail is the server's reply (else a local failure, not to be quoted as its words)


@dataclass(frozen=True, slots=True)
class FlagView:
    name: str
    effective: bool
    configured: bool  # configuration sets it: the chat can't change it
    stored: bool | None  # the admins' value in the database (None: never set)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: Service
    connected: int
    reconnecting: int
    broken: int

    @property
    def total(self) -> int:
        return self.connected + self.reconnecting + self.broken


@dataclass(frozen=True, slots=True)
class ErrorRow:
    email: str
    service: Service | None
    state: str
    error: str
    since: datetime | None


@dataclass(frozen=True, slots=True)
class Status:
    users: int
    active_users: int
    connected: int
    reconnecting: int
    broken: int
    per_service: list[ServiceStatus]
    last_errors: list[ErrorRow]

    @property
    def blocked_users(self) -> int:
        return self.users - self.active_users


def _slug(name: str) -> str:
    ascii_name = name.lower().encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")
    return slug[:40] or "server"


def _tls_version(client: Any) -> str:
    for holder in (getattr(client, "protocol", None), client):
        transport = getattr(holder, "transport", None)
        if transport is None:
            continue
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            return str(ssl_object.version() or "")
    return ""


async def probe(
    server: ServerSettings,
    protocol: Protocol,
    *,
    ssl_context: ssl.SSLContext,
    guard: Any,
    timeout: float,  # noqa: ASYNC109
) -> ProbeReport:
    """Connect to the port, set up TLS (implicit or STARTTLS, certificate verified) and wait
    for the server's greeting (IMAP: ``* OK`` and its capabilities; SMTP: 220 and EHLO).
    Never logs in."""
    client: Any = None
    try:
        if protocol is Protocol.IMAP:
            client = await connect_imap(server, ssl_context=ssl_context, guard=guard, timeout=timeout)
            caps = getattr(getattr(client, "protocol", None), "capabilities", None) or ()
            greeting = "IMAP4rev1" if "IMAP4REV1" in {str(c).upper() for c in caps} else "IMAP"
        else:
            client = await connect_smtp(server, ssl_context=ssl_context, guard=guard, timeout=timeout)
            if not client.supports_esmtp:  # implicit TLS: no EHLO yet (STARTTLS already did one)
                try:
                    await asyncio.wait_for(client.ehlo(), timeout)
                except Exception as exc:
                    raise smtp_error(exc) from None
            greeting = "ESMTP" if client.supports_esmtp else "SMTP"
        version = _tls_version(client)
    except MailCheckError as exc:
        return ProbeReport(protocol, server, False, exc.kind, (exc.detail or "")[:300], server_said=exc.server_said)
    finally:
        if client is not None:
            if protocol is Protocol.IMAP:
                await close_imap(client)
            else:
                await close_smtp(client)
    return ProbeReport(protocol, server, True, tls_version=version, greeting=greeting)


class AdminService:
    def __init__(self, session: AsyncSession, deps: MailDeps, settings: OAuthSettings | None) -> None:
        self.session = session
        self.deps = deps
        self.settings = settings
        self.services = ServiceRepo(session)

    # ---- services ------------------------------------------------------------------------
    async def _account_counts(self) -> dict[int, int]:
        stmt = (
            select(Mailbox.service_id, func.count())
            .where(Mailbox.state != MailboxState.DRAFT.value)
            .group_by(Mailbox.service_id)
        )
        return {int(sid): int(n) for sid, n in (await self.session.execute(stmt)).all()}

    async def _rows(self, kind: ServiceKind) -> list[ServiceRow]:
        counts = await self._account_counts()
        return [
            ServiceRow(s, counts.get(s.id, 0)) for s in await self.services.list_all() if s.kind == kind.value
        ]

    async def standard_services(self) -> list[ServiceRow]:
        return await self._rows(ServiceKind.STANDARD)

    async def service(self, service_id: int, kind: ServiceKind | None = None) -> Service:
        service = await self.services.get(service_id)
        if service is None or (kind is not None and service.kind != kind.value):
            raise NotFound(str(service_id))
        return service

    async def set_enabled(self, service_id: int, enabled: bool) -> Service:
        """Show or hide a standard service or company server in the wizard."""
        service = await self.service(service_id)
        if service.kind == ServiceKind.OTHER.value:
            raise NotFound(str(service_id))
        service.enabled = enabled
        await self.session.flush()
        log.info("service %s %s in the wizard", service.code, "shown" if enabled else "hidden")
        return service

    async def accounts(self, service_id: int, limit: int = ACCOUNTS_SHOWN) -> tuple[int, list[Mailbox]]:
        """(how many, the first ``limit`` by address) accounts connected through a service."""
        base = select(Mailbox).where(
            Mailbox.service_id == service_id, Mailbox.state != MailboxState.DRAFT.value
        )
        total = (await self.session.execute(select(func.count()).select_from(base.subquery()))).scalar_one()
        rows = (await self.session.execute(base.order_by(Mailbox.email).limit(limit))).scalars().all()
        return int(total), list(rows)

    # ---- company servers -----------------------------------------------------------------
    async def companies(self) -> list[ServiceRow]:
        return await self._rows(ServiceKind.COMPANY)

    async def _free_code(self, name: str) -> str:
        base = COMPANY_PREFIX + _slug(name)
        code, n = base, 1
        while await self.services.by_code(code) is not None:
            n += 1
            code = f"{base}-{n}"
        return code

    async def add_company(self, data: CompanyInput) -> Service:
        service = Service(
            code=await self._free_code(data.name),
            kind=ServiceKind.COMPANY.value,
            name_en=data.name,
            name_ru=data.name,
            domains=",".join(data.domains),
            enabled=True,
            sort_order=COMPANY_SORT,
        )
        self._apply_server(service, Protocol.IMAP, data.imap)
        self._apply_server(service, Protocol.SMTP, data.smtp)
        self.session.add(service)
        await self.session.flush()
        log.info("company server %s added (%s)", service.code, service.domains)
        return service

    @staticmethod
    def _apply_server(service: Service, protocol: Protocol, server: ServerSettings) -> None:
        if protocol is Protocol.IMAP:
            service.imap_host, service.imap_port, service.imap_security = server.host, server.port, server.security.value
        else:
            service.smtp_host, service.smtp_port, service.smtp_security = server.host, server.port, server.security.value

    async def rename_company(self, service_id: int, name: str) -> Service:
        service = await self.service(service_id, ServiceKind.COMPANY)
        service.name_en = service.name_ru = name
        await self.session.flush()
        return service

    async def set_domains(self, service_id: int, domains: list[str]) -> Service:
        service = await self.service(service_id, ServiceKind.COMPANY)
        service.domains = ",".join(domains)
        await self.session.flush()
        return service

    async def set_server(self, service_id: int, protocol: Protocol, server: ServerSettings) -> Service:
        """New settings for accounts connected from now on; existing accounts keep theirs
        (each user changes them in Reconnect)."""
        service = await self.service(service_id, ServiceKind.COMPANY)
        self._apply_server(service, protocol, server)
        await self.session.flush()
        return service

    async def remove_company(self, service_id: int) -> None:
        service = await self.service(service_id, ServiceKind.COMPANY)
        in_use = (
            await self.session.execute(
                select(func.count()).select_from(Mailbox).where(Mailbox.service_id == service_id)
            )
        ).scalar_one()
        if in_use:
            raise InUse(int(in_use))
        await self.session.delete(service)
        await self.session.flush()
        log.info("company server %s removed", service.code)

    async def test_company(self, service_id: int) -> list[ProbeReport]:
        service = await self.service(service_id, ServiceKind.COMPANY)
        reports = []
        for protocol in (Protocol.IMAP, Protocol.SMTP):
            server = company_server(service, protocol)
            if server is None:
                continue
            reports.append(
                await probe(
                    server,
                    protocol,
                    ssl_context=self.deps.ssl_context,
                    guard=self.deps.guard,
                    timeout=self.deps.timeout,
                )
            )
        return reports

    # ---- feature flags -------------------------------------------------------------------
    def _oauth(self) -> OAuthService:
        return OAuthService(self.session, self.deps, self.settings)

    async def flags(self) -> list[FlagView]:
        return [await self.flag(name) for name in FLAGS]

    async def flag(self, name: str) -> FlagView:
        if name != OAUTH_FLAG:
            raise NotFound(name)
        row = await self.session.get(FeatureFlag, name)
        configured = bool(self.settings is not None and self.settings.oauth_flag_configured)
        return FlagView(
            name=name,
            effective=await self._oauth().flag_enabled(),
            configured=configured,
            stored=None if row is None else bool(row.enabled),
        )

    async def set_flag(self, name: str, enabled: bool, by: int) -> FlagView:
        if name != OAUTH_FLAG:
            raise NotFound(name)
        await self._oauth().set_flag(enabled, by=by)
        log.info("admin %s set %s to %s", by, name, enabled)
        return await self.flag(name)

    # ---- status --------------------------------------------------------------------------
    async def status(self) -> Status:
        users = (await self.session.execute(select(func.count()).select_from(User))).scalar_one()
        active = (
            await self.session.execute(select(func.count()).select_from(User).where(User.is_active.is_(True)))
        ).scalar_one()
        stmt = (
            select(Mailbox.service_id, Mailbox.state, func.count())
            .where(Mailbox.state != MailboxState.DRAFT.value)
            .group_by(Mailbox.service_id, Mailbox.state)
        )
        by_service: dict[int, dict[str, int]] = {}
        for sid, state, n in (await self.session.execute(stmt)).all():
            by_service.setdefault(int(sid), {})[str(state)] = int(n)
        per_service: list[ServiceStatus] = []
        services = {s.id: s for s in await self.services.list_all()}
        for sid, states in by_service.items():
            service = services.get(sid)
            if service is None:
                continue
            per_service.append(
                ServiceStatus(
                    service,
                    states.get(MailboxState.CONNECTED.value, 0),
                    states.get(MailboxState.RECONNECTING.value, 0),
                    states.get(MailboxState.BROKEN.value, 0),
                )
            )
        per_service.sort(key=lambda row: (row.service.sort_order, row.service.id))
        errors_stmt = (
            select(Mailbox)
            .where(
                Mailbox.state.in_([MailboxState.RECONNECTING.value, MailboxState.BROKEN.value]),
                Mailbox.last_error.is_not(None),
            )
            .order_by(Mailbox.state_since.desc(), Mailbox.id.desc())
            .limit(ERRORS_SHOWN)
        )
        last_errors = [
            ErrorRow(m.email, services.get(m.service_id), m.state, m.last_error or "", m.state_since)
            for m in (await self.session.execute(errors_stmt)).scalars().all()
        ]
        return Status(
            users=int(users),
            active_users=int(active),
            connected=sum(r.connected for r in per_service),
            reconnecting=sum(r.reconnecting for r in per_service),
            broken=sum(r.broken for r in per_service),
            per_service=per_service,
            last_errors=last_errors,
        )


def company_server(service: Service, protocol: Protocol) -> ServerSettings | None:
    if protocol is Protocol.IMAP:
        host, port, security = service.imap_host, service.imap_port, service.imap_security
    else:
        host, port, security = service.smtp_host, service.smtp_port, service.smtp_security
    if not host or not port:
        return None
    return ServerSettings(host, port, Security(security or "ssl"))


async def company_for_address(session: AsyncSession, email: str) -> Service | None:
    """The enabled company server whose mail domain the address is in (the wizard offers it
    to someone who picked Other)."""
    domain = email_domain(email)
    stmt = select(Service).where(
        Service.kind == ServiceKind.COMPANY.value, Service.enabled.is_(True)
    ).order_by(Service.sort_order, Service.id)
    for service in (await session.execute(stmt)).scalars():
        if domain in service.domain_list:
            return service
    return None
