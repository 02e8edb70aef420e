"""The standard mail services (Gmail, Mail.ru, Yandex, ...) from the project's data file.

`mail/data/providers.json` is a trimmed copy of the shared fact table; each entry keeps its
sources. Loading is cached: the table never changes while the process runs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mail.types import MailServers, Security, ServerSettings

DATA_PACKAGE = "mail.data"
DATA_FILE = "providers.json"


@dataclass(frozen=True)
class Provider:
    id: str
    name_en: str
    name_ru: str
    domains: tuple[str, ...]
    mx_domains: tuple[str, ...]
    servers: MailServers
    imap_must_be_enabled: bool | None
    app_password_required: bool | None
    app_password_url: str | None
    hint_en: str
    hint_ru: str
    imap_enable_path_en: str | None
    imap_enable_path_ru: str | None
    oauth2: dict[str, Any] | None
    # extras (defaults keep the documented positional order intact)
    imap_enable_url: str | None = None
    app_password_prerequisite: str | None = None
    imap_alternatives: tuple[ServerSettings, ...] = ()
    smtp_alternatives: tuple[ServerSettings, ...] = ()
    username: str = "full_address"
    sources: tuple[str, ...] = ()

    def name(self, lang: str) -> str:
        return self.name_ru if _is_ru(lang) else self.name_en

    def hint(self, lang: str) -> str:
        return self.hint_ru if _is_ru(lang) else self.hint_en

    def imap_enable_path(self, lang: str) -> str | None:
        return self.imap_enable_path_ru if _is_ru(lang) else self.imap_enable_path_en


def _is_ru(lang: str | None) -> bool:
    return bool(lang) and str(lang).lower().startswith("ru")


def _server(raw: dict[str, Any]) -> ServerSettings:
    return ServerSettings(
        str(raw["host"]), int(raw["port"]), Security(str(raw["security"]).lower())
    )


def _provider(raw: dict[str, Any]) -> Provider:
    names = raw.get("display_name") or {}
    hint = raw.get("hint") or {}
    where = raw.get("imap_enable_where") or {}
    pw = raw.get("password_auth") or {}
    return Provider(
        id=str(raw["id"]),
        name_en=str(names.get("en") or raw["id"]),
        name_ru=str(names.get("ru") or names.get("en") or raw["id"]),
        domains=tuple(str(d).lower() for d in raw.get("domains") or ()),
        mx_domains=tuple(str(d).lower() for d in raw.get("mx_domains") or ()),
        servers=MailServers(_server(raw["imap"]), _server(raw["smtp"])),
        imap_must_be_enabled=raw.get("imap_must_be_enabled"),
        app_password_required=pw.get("app_password_required"),
        app_password_url=pw.get("app_password_url"),
        hint_en=str(hint.get("en") or ""),
        hint_ru=str(hint.get("ru") or hint.get("en") or ""),
        imap_enable_path_en=where.get("path_en"),
        imap_enable_path_ru=where.get("path_ru"),
        oauth2=raw.get("oauth2"),
        imap_enable_url=where.get("url"),
        app_password_prerequisite=pw.get("prerequisite"),
        imap_alternatives=tuple(_server(a) for a in raw.get("imap_alternatives") or ()),
        smtp_alternatives=tuple(_server(a) for a in raw.get("smtp_alternatives") or ()),
        username=str(raw.get("username") or "full_address"),
        sources=tuple(str(s) for s in raw.get("source") or ()),
    )


@functools.cache
def _load() -> tuple[Provider, ...]:
    text = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_text(encoding="utf-8")
    return tuple(_provider(p) for p in json.loads(text)["providers"])


def load_providers() -> list[Provider]:
    """The standard services in display order: gmail, mail.ru, yandex, rambler, yahoo,
    outlook.com, office365."""
    return list(_load())


@functools.cache
def _by_id() -> dict[str, Provider]:
    return {p.id: p for p in _load()}


@functools.cache
def _by_domain() -> dict[str, Provider]:
    table: dict[str, Provider] = {}
    for p in _load():
        for d in p.domains:
            table.setdefault(d, p)
    return table


def provider_by_id(pid: str) -> Provider | None:
    return _by_id().get(pid)


def _norm_domain(domain: str) -> str:
    d = (domain or "").strip().rstrip(".").lower()
    if "@" in d:
        d = d.rsplit("@", 1)[1]
    try:
        return d.encode("idna").decode("ascii") if d and not d.isascii() else d
    except UnicodeError:
        return d


def provider_for_domain(domain: str) -> Provider | None:
    """The standard service whose mail domains include `domain` (an address works too)."""
    return _by_domain().get(_norm_domain(domain))


def provider_for_mx(mx_host: str) -> Provider | None:
    """The standard service an MX host belongs to: the longest `mx_domains` suffix match
    (aspmx.l.google.com -> gmail, x.mail.protection.outlook.com -> office365), else the MX
    host's registrable domain looked up as a mail domain (mx.yandex.net -> yandex,
    mxs.mail.ru -> mail.ru)."""
    host = _norm_domain(mx_host)
    if not host:
        return None
    best: tuple[int, Provider] | None = None
    for p in _load():
        for md in p.mx_domains:
            if (host == md or host.endswith("." + md)) and (best is None or len(md) > best[0]):
                best = (len(md), p)
    if best is not None:
        return best[1]
    return provider_for_domain(registrable_domain(host))


# Second-level labels under which registrations happen one level deeper (co.uk, com.au, ...).
_SECOND_LEVEL = {"co", "com", "net", "org", "gov", "edu", "ac", "ne", "or", "go", "gob", "nic"}


def registrable_domain(host: str) -> str:
    """A best-effort registrable domain ("eTLD+1") without the public suffix list."""
    labels = [x for x in _norm_domain(host).split(".") if x]
    if len(labels) <= 2:
        return ".".join(labels)
    if labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])
