"""Plain data types shared by the mail layer and its callers (no I/O here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Security(str, enum.Enum):
    """How a connection is encrypted. Plain, unencrypted login is never offered."""

    SSL = "ssl"  # implicit TLS on connect (993 / 465)
    STARTTLS = "starttls"  # plain connect, then upgrade (143 / 587)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    security: Security


@dataclass(frozen=True, slots=True)
class MailServers:
    imap: ServerSettings
    smtp: ServerSettings


@dataclass(frozen=True, slots=True)
class Credentials:
    """Login plus exactly one secret: a password or an OAuth2 access token."""

    login: str
    password: str | None = None
    oauth2_token: str | None = None

    def __repr__(self) -> str:  # never leak the secret through repr/logging
        return f"Credentials(login={self.login!r}, secret=***)"


class FailureKind(str, enum.Enum):
    """Why a connection check failed, in terms the user can act on."""

    AUTH_FAILED = "auth_failed"  # wrong login or password
    IMAP_DISABLED = "imap_disabled"  # provider says IMAP is off for this account
    APP_PASSWORD_REQUIRED = "app_password_required"  # noqa: S105 - provider wants an app password
    HOST_NOT_FOUND = "host_not_found"
    CONNECTION_REFUSED = "connection_refused"
    TLS_UNTRUSTED = "tls_untrusted"  # certificate not trusted / hostname mismatch
    TLS_FAILED = "tls_failed"  # TLS handshake failed otherwise, or STARTTLS not offered
    TIMEOUT = "timeout"
    PRIVATE_ADDRESS = "private_address"  # host resolves to loopback/private/link-local
    PROTOCOL = "protocol"  # server spoke something unexpected


class Protocol(str, enum.Enum):
    IMAP = "imap"
    SMTP = "smtp"


class MailCheckError(Exception):
    """A connection/login check failed. `detail` says what happened (may be empty): the
    server's own words when `server_said` (a reply it sent), otherwise our own description of a
    local failure (DNS, TCP, TLS, a timeout), which is never shown as the server's words.
    `others`: the failures of the other protocol checked at the same time (IMAP and SMTP are
    checked together: the user hears about both at once)."""

    def __init__(
        self,
        protocol: Protocol,
        kind: FailureKind,
        detail: str = "",
        *,
        server_said: bool = False,
        others: tuple[MailCheckError, ...] = (),
    ) -> None:
        super().__init__(f"{protocol.value}: {kind.value}: {detail}")
        self.protocol = protocol
        self.kind = kind
        self.detail = detail
        self.server_said = server_said
        self.others = others


@dataclass(slots=True)
class LetterSummary:
    """What the import keeps of one letter: headers, a text snippet, attachment flag."""

    uid: int
    message_id: str | None
    from_name: str
    from_addr: str
    to: str
    subject: str
    date: datetime | None
    snippet: str
    has_attachments: bool
    size: int = 0
    code: str | None = None  # a one-time login/confirmation code found in it (mail.codes)


@dataclass(slots=True)
class ImportResult:
    uidvalidity: int
    uidnext: int | None
    highest_uid: int
    letters: list[LetterSummary] = field(default_factory=list)
    round_trips: int = 0
