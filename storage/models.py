"""Database models. Kept dialect-neutral: the same schema runs on SQLite and PostgreSQL."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ServiceKind(str, enum.Enum):
    STANDARD = "standard"
    COMPANY = "company"
    OTHER = "other"


class MailboxState(str, enum.Enum):
    DRAFT = "draft"  # credentials checked, wizard not finished yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    BROKEN = "broken"


class AuthKind(str, enum.Enum):
    PASSWORD = "password"  # noqa: S105 - an auth kind, not a secret
    OAUTH2 = "oauth2"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    language: Mapped[str | None] = mapped_column(String(8))
    first_name: Mapped[str | None] = mapped_column(String(256))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    mailbox: Mapped[Mailbox | None] = relationship(back_populates="user", uselist=False)


class Service(Base):
    """A choice in the service picker: a standard provider, a company server, or Other."""

    __tablename__ = "services"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name_en: Mapped[str] = mapped_column(String(128))
    name_ru: Mapped[str] = mapped_column(String(128))
    domains: Mapped[str] = mapped_column(Text, default="")  # comma-separated, lower case
    imap_host: Mapped[str | None] = mapped_column(String(255))
    imap_port: Mapped[int | None] = mapped_column(Integer)
    imap_security: Mapped[str | None] = mapped_column(String(16))
    smtp_host: Mapped[str | None] = mapped_column(String(255))
    smtp_port: Mapped[int | None] = mapped_column(Integer)
    smtp_security: Mapped[str | None] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    oauth2_client_id: Mapped[str | None] = mapped_column(String(512))
    oauth2_client_secret_enc: Mapped[str | None] = mapped_column(Text)
    # OAuth2 endpoints set by the admin (company servers, Other; or overriding a standard
    # service's built-in ones); scopes space-separated
    oauth2_authorize_url: Mapped[str | None] = mapped_column(String(1000))
    oauth2_token_url: Mapped[str | None] = mapped_column(String(1000))
    oauth2_device_url: Mapped[str | None] = mapped_column(String(1000))
    oauth2_revoke_url: Mapped[str | None] = mapped_column(String(1000))
    oauth2_scopes: Mapped[str | None] = mapped_column(Text)

    def name(self, lang: str) -> str:
        return self.name_ru if lang == "ru" else self.name_en

    @property
    def domain_list(self) -> list[str]:
        return [d for d in self.domains.split(",") if d]


class Mailbox(Base):
    """The one mailbox a Telegram user has connected (or is connecting)."""

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # unique: a Telegram user has at most ONE mailbox, enforced by the database
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="RESTRICT"))
    email: Mapped[str] = mapped_column(String(320))
    login: Mapped[str] = mapped_column(String(320))
    auth_kind: Mapped[str] = mapped_column(String(16), default=AuthKind.PASSWORD.value)
    secret_enc: Mapped[str] = mapped_column(Text)
    imap_host: Mapped[str] = mapped_column(String(255))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_security: Mapped[str] = mapped_column(String(16))
    smtp_host: Mapped[str] = mapped_column(String(255))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_security: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(Text, default="")
    notify: Mapped[bool] = mapped_column(Boolean, default=True)
    notify_sound: Mapped[bool] = mapped_column(Boolean, default=True)
    use_in_processes: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=MailboxState.DRAFT.value)
    last_error: Mapped[str | None] = mapped_column(Text)
    state_since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    highest_uid: Mapped[int | None] = mapped_column(BigInteger)
    # a long transient outage was reported to the user (so it is said once, and "back" once)
    outage_notified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    connected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # which bot instance watches it: MailboxLease (its own narrow table, see there)
    # bumped when the watcher must start over (new credentials, Reconnect): the lease holder,
    # whichever instance it is, restarts its watcher when it sees a new value
    watch_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    user: Mapped[User] = relationship(back_populates="mailbox")
    service: Mapped[Service] = relationship(lazy="joined")


class MailboxLease(Base):
    """Which bot instance watches a mailbox (services/fleet.py), so exactly one instance of a
    fleet holds the IMAP session; owner NULL = nobody. A row appears when the mailbox is first
    claimed and goes with the mailbox.

    A lease has no end of its own: it is valid while its owner is alive, i.e. while the
    owner's `instances` row has a heartbeat younger than the lease lifetime. So keeping 3,334
    leases (an instance's share in a fleet of three at 10,000) costs one row update every 5 s,
    the heartbeat, not 3,334: when every lease carried its own end, the renewals of three
    instances rewrote 10,000 rows every 5 s, and the alerts of the whole fleet waited behind
    that burst of the database's work.

    A table of its own rather than a column of `mailboxes`: a claim locks and rewrites the
    lease rows it takes, never the mailboxes' wide rows a new letter's record updates."""

    __tablename__ = "mailbox_leases"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)


class Letter(Base):
    """An imported letter: headers, a snippet and an attachment flag (bodies stay on the server).
    `folder` is "INBOX" for received mail and the provider's Sent folder for mail the bot sent."""

    __tablename__ = "letters"
    __table_args__ = (
        UniqueConstraint("mailbox_id", "folder", "uidvalidity", "uid", name="uq_letters_mailbox_folder_uid"),
        Index("ix_letters_alert_queue", "alerted", "mailbox_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(
        ForeignKey("mailboxes.id", ondelete="CASCADE"), index=True
    )
    folder: Mapped[str] = mapped_column(String(255), default="INBOX")
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[str | None] = mapped_column(String(998))
    from_name: Mapped[str] = mapped_column(String(998), default="")
    from_addr: Mapped[str] = mapped_column(String(998), default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snippet: Mapped[str] = mapped_column(Text, default="")
    has_attachments: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the new-mail alert for this letter went out (or was not wanted); letters of the initial
    # import are born alerted, the watcher's are not until the notifier confirms
    alerted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # the alert's life (AlertState): pending -> sending (claimed by `alert_owner` in its own
    # committed transaction right before the request leaves) -> sent | pending again (it
    # certainly did not go out) | uncertain (it may have: never resent) | rejected | skipped.
    # `alerted` is true once the state is final.
    alert_state: Mapped[str] = mapped_column(String(16), default="sent", server_default="sent")
    alert_owner: Mapped[str | None] = mapped_column(String(64))
    alert_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    alert_error: Mapped[str | None] = mapped_column(String(300))
    # a one-time login/confirmation code found in the subject or the first part of the text
    # (mail.codes), shown in the alert with a copy button
    code: Mapped[str | None] = mapped_column(String(32))


class AlertState(str, enum.Enum):
    PENDING = "pending"  # to be sent (again: an earlier attempt certainly did not go out)
    SENDING = "sending"  # claimed; the request is (or was, if its owner died) on its way
    SENT = "sent"
    UNCERTAIN = "uncertain"  # the request may have arrived (crash, timeout): never resent
    REJECTED = "rejected"  # Telegram refused it for good (4xx), or too many attempts
    SKIPPED = "skipped"  # not wanted: alerts off, the user blocked the bot, or a mute rule
    HELD = "held"  # quiet hours: kept for the digest at the window's end (not final)


class Instance(Base):
    """A running bot process of the fleet, with its heartbeat (services/fleet.py). Mailboxes
    are balanced across the instances seen within a lease's lifetime."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ItemLink(Base):
    """A letter linked to a business item. The snapshot keeps the context when the letter (or
    the whole mailbox) is deleted: `letter_id` becomes NULL, the snapshot stays."""

    __tablename__ = "item_links"
    __table_args__ = (UniqueConstraint("item_type", "item_id", "letter_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_type: Mapped[str] = mapped_column(String(64))
    item_id: Mapped[str] = mapped_column(String(128))
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letters.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    from_name: Mapped[str] = mapped_column(String(998), default="")
    from_addr: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(String(998), default="")
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    snippet: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OAuthState(Base):
    """One OAuth2 sign-in in progress. Only a hash of `state` is kept; the PKCE verifier is
    encrypted. Single-use (`used_at`), bound to the Telegram user, expires after 10 minutes."""

    __tablename__ = "oauth_states"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"))
    flow: Mapped[str] = mapped_column(String(16))  # "code" | "device"
    purpose: Mapped[str] = mapped_column(String(16), default="connect")  # "connect" | "reconnect"
    mailbox_id: Mapped[int | None] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"))
    wizard: Mapped[str | None] = mapped_column(String(32))  # the chat wizard's nonce at start
    email: Mapped[str] = mapped_column(String(320))
    login: Mapped[str] = mapped_column(String(320))
    code_verifier_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FeatureFlag(Base):
    """A feature switched on or off by an admin (configuration, when set, wins)."""

    __tablename__ = "feature_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BroadcastState(str, enum.Enum):
    DRAFT = "draft"  # written, previewed, not confirmed
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryStatus(str, enum.Enum):
    PENDING = "pending"
    SENDING = "sending"  # handed to Telegram; a crash here is resolved without a second copy
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"


class Broadcast(Base):
    """An outage notice from an admin, to everyone or to the users of one service. Its
    deliveries are a durable queue: a restart resumes where it stopped."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin_id: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(80), default="all")  # "all" | "service:<code>"
    state: Mapped[str] = mapped_column(String(16), default=BroadcastState.DRAFT.value)
    total: Mapped[int] = mapped_column(Integer, default=0)
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the instance sending it and until when its lease holds (renewed while it runs); another
    # instance takes the broadcast over only once the lease has run out
    runner_id: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BroadcastDelivery(Base):
    __tablename__ = "broadcast_deliveries"
    __table_args__ = (
        UniqueConstraint("broadcast_id", "user_id"),
        Index("ix_broadcast_deliveries_queue", "broadcast_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    broadcast_id: Mapped[int] = mapped_column(ForeignKey("broadcasts.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdempotencyState(str, enum.Enum):
    IN_PROGRESS = "in_progress"  # claimed; the send is running (or the process died during it)
    COMPLETED = "completed"  # the answer is stored and replayed


class IdempotencyKey(Base):
    """An `Idempotency-Key` of the business-process API, scoped to the API token (only its
    SHA-256 is kept) and kept for a day. The unique (token_hash, key) pair is what makes two
    concurrent requests with the same key unable to both send."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("token_hash", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical request
    state: Mapped[str] = mapped_column(String(16), default=IdempotencyState.IN_PROGRESS.value)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)  # the JSON answer, as sent
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---- attention: rules, quiet hours, grouping (services/attention.py, services/rules.py) ----
class AlertRule(Base):
    """A user's rule for new-mail alerts: mute, or VIP (always with sound), by sender address,
    by domain (subdomains too) or by a word in the subject. One rule per (user, kind, value)."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("user_id", "kind", "value", name="uq_alert_rules_user_kind_value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "sender" | "domain" | "subject"
    value: Mapped[str] = mapped_column(String(320))  # lower case
    action: Mapped[str] = mapped_column(String(16))  # "mute" | "vip"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AttentionPrefs(Base):
    """A user's quiet hours and alert grouping. No row: today's behaviour (no quiet hours,
    grouping from services.attention.DEFAULT_BURST letters)."""

    __tablename__ = "attention_prefs"

    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA name or "UTC+03:00"
    quiet_start: Mapped[int | None] = mapped_column(Integer)  # minutes after local midnight
    quiet_end: Mapped[int | None] = mapped_column(Integer)
    quiet_mode: Mapped[str] = mapped_column(String(16), default="silent", server_default="silent")  # | "hold"
    vip_breaks_quiet: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    burst_threshold: Mapped[int] = mapped_column(Integer, default=6, server_default="6")  # 0 = off
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LetterPlace(str, enum.Enum):
    """Where a letter is, as far as the bot knows (services/letter_actions.py)."""

    INBOX = "inbox"
    ARCHIVE = "archive"
    TRASH = "trash"
    JUNK = "junk"
    GONE = "gone"  # deleted or moved elsewhere, not by the bot


class LetterMark(Base):
    """What the user did to a received letter from the chat, and what the server says of it:
    its flags, where it was moved (folder and UID there, for Undo, until `undo_until`), and the
    alert message whose buttons show that state. One row per letter acted on or alerted."""

    __tablename__ = "letter_marks"

    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id", ondelete="CASCADE"), primary_key=True)
    seen: Mapped[bool | None] = mapped_column(Boolean)
    flagged: Mapped[bool | None] = mapped_column(Boolean)
    place: Mapped[str] = mapped_column(String(16), default=LetterPlace.INBOX.value)
    folder: Mapped[str | None] = mapped_column(String(255))
    folder_uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    folder_uid: Mapped[int | None] = mapped_column(BigInteger)
    undo_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    alert_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    alert_message_id: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MailboxFolders(Base):
    """A mailbox's Archive, Trash and Junk folders as found on its server (mail/folders.py),
    kept so that alerts offer only the buttons that can work without asking the server."""

    __tablename__ = "mailbox_folders"

    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    archive: Mapped[str | None] = mapped_column(String(255))
    trash: Mapped[str | None] = mapped_column(String(255))
    junk: Mapped[str | None] = mapped_column(String(255))
    gmail: Mapped[bool] = mapped_column(Boolean, default=False)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
