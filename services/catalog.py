"""The service picker's list: standard providers (from the project's data file), company
servers an admin added, and Other."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from mail.providers import load_providers, provider_by_id
from mail.types import MailServers, Security, ServerSettings
from storage.models import Service, ServiceKind
from storage.repositories import ServiceRepo

log = logging.getLogger(__name__)
OTHER_CODE = "other"


def _server(raw: Mapping[str, Any]) -> ServerSettings:
    return ServerSettings(str(raw["host"]), int(raw["port"]), Security(str(raw["security"]).lower()))


def _apply_override(servers: MailServers, override: Mapping[str, Any] | None) -> MailServers:
    if not override:
        return servers
    imap = _server(override["imap"]) if "imap" in override else servers.imap
    smtp = _server(override["smtp"]) if "smtp" in override else servers.smtp
    return MailServers(imap, smtp)


async def seed_services(session: AsyncSession, overrides: Mapping[str, Any] | None = None) -> None:
    """Create or refresh the standard services and Other. An admin's enabled/disabled choice
    is kept; server settings follow the data file (plus MAIL_PROVIDER_OVERRIDES)."""
    repo = ServiceRepo(session)
    overrides = overrides or {}
    for order, provider in enumerate(load_providers(), start=1):
        servers = _apply_override(provider.servers, overrides.get(provider.id))
        existing = await repo.by_code(provider.id)
        fields: dict[str, Any] = {
            "kind": ServiceKind.STANDARD.value,
            "name_en": provider.name_en,
            "name_ru": provider.name_ru,
            "domains": ",".join(provider.domains),
            "imap_host": servers.imap.host,
            "imap_port": servers.imap.port,
            "imap_security": servers.imap.security.value,
            "smtp_host": servers.smtp.host,
            "smtp_port": servers.smtp.port,
            "smtp_security": servers.smtp.security.value,
            "sort_order": order * 10,
        }
        if existing is None:
            fields["enabled"] = True
        await repo.upsert(provider.id, **fields)
    if await repo.by_code(OTHER_CODE) is None:
        await repo.upsert(
            OTHER_CODE,
            kind=ServiceKind.OTHER.value,
            name_en="Other",
            name_ru="Другой",
            domains="",
            enabled=True,
            sort_order=10_000,
        )


def service_servers(service: Service) -> MailServers | None:
    """Server settings a service prescribes (None for Other)."""
    if not (service.imap_host and service.imap_port and service.smtp_host and service.smtp_port):
        return None
    return MailServers(
        ServerSettings(service.imap_host, service.imap_port, Security(service.imap_security or "ssl")),
        ServerSettings(service.smtp_host, service.smtp_port, Security(service.smtp_security or "ssl")),
    )


async def picker(session: AsyncSession) -> Sequence[Service]:
    return await ServiceRepo(session).list_enabled()


def service_hint(service: Service, lang: str) -> tuple[str, str]:
    """(advice before the password, where to switch IMAP on) for a standard service."""
    if service.kind != ServiceKind.STANDARD.value:
        return "", ""
    provider = provider_by_id(service.code)
    if provider is None:
        return "", ""
    path = provider.imap_enable_path(lang) if provider.imap_must_be_enabled else None
    return provider.hint(lang), path or ""
