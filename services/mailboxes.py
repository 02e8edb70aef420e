"""Use cases around a user's mailbox: connect (check, draft, finish with import), settings.

Chat handlers, the HTTP API and the watcher all call this layer; it holds no Telegram code.
The password only ever exists in memory while it is checked, and encrypted in the database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mail.check import check_account
from mail.discovery import Proposal, discover
from mail.folders import SpecialFolders, discover_folders
from mail.imap import MailIMAP, close_imap, open_imap
from mail.importer import import_recent
from mail.oauth2 import TokenSet
from mail.outbox import encode_mutf7
from mail.reader import (
    AttachmentGone,
    AttachmentTooLarge,
    FullLetter,
    fetch_attachment,
    fetch_letter,
)
from mail.types import Credentials, MailCheckError, MailServers, Security, ServerSettings
from services.deps import MailDeps
from services.hooks import after_commit, checkpoint
from services.letters import letter_row
from services.oauth import OAuthService
from storage.folders import save_folders
from storage.models import (
    AuthKind,
    ItemLink,
    Letter,
    LetterMark,
    LetterPlace,
    Mailbox,
    MailboxState,
    Service,
)
from storage.repositories import LetterRepo, MailboxRepo, ServiceRepo

log = logging.getLogger(__name__)

SIGNATURE_MAX = 1000
MAX_ROW_ID = 2**31 - 1  # Integer primary keys (letters.id)



@dataclass(frozen=True)
class LetterPage:
    """One page of a letter list. `others`: how many letters the other list (Inbox or Sent) has."""

    mailbox: Mailbox
    letters: list[Letter]
    total: int
    page: int
    sent: bool
    others: int


def _clamp_page(page: int, total: int, per_page: int) -> int:
    pages = max(1, -(-total // per_page))
    return min(max(page, 0), pages - 1)

class NotYourMailbox(Exception):
    """The mailbox id does not belong to the user who asked (forged or stale callback)."""


class AlreadyConnected(Exception):
    """The user already has a connected mailbox: one per Telegram account."""


class NoDraft(Exception):
    """The wizard lost its draft (cancelled elsewhere, or an old button)."""


class LetterNotFound(Exception):
    """Not this user's letter, or no longer in the mailbox."""


class AttachmentTooBig(Exception):
    def __init__(self, filename: str, size: int, limit: int) -> None:
        super().__init__(filename)
        self.filename, self.size, self.limit = filename, size, limit


@dataclass(frozen=True, slots=True)
class AccountInput:
    """What the wizard collected, except the secret."""

    service_id: int
    email: str
    login: str
    servers: MailServers


@dataclass(frozen=True, slots=True)
class Preferences:
    signature: str
    notify: bool
    notify_sound: bool
    use_in_processes: bool


@dataclass(frozen=True, slots=True)
class ConnectResult:
    mailbox: Mailbox
    imported: int


def servers_of(mailbox: Mailbox) -> MailServers:
    return MailServers(
        ServerSettings(mailbox.imap_host, mailbox.imap_port, Security(mailbox.imap_security)),
        ServerSettings(mailbox.smtp_host, mailbox.smtp_port, Security(mailbox.smtp_security)),
    )


class MailboxService:
    def __init__(self, session: AsyncSession, deps: MailDeps) -> None:
        self.session = session
        self.deps = deps
        self.mailboxes = MailboxRepo(session)
        self.letters = LetterRepo(session)
        self.services = ServiceRepo(session)

    # ---- reading ---------------------------------------------------------------------------
    async def get_service(self, service_id: int) -> Service | None:
        service = await self.services.get(service_id)
        return service if service is not None and service.enabled else None

    async def current(self, user_id: int) -> Mailbox | None:
        """The user's mailbox, drafts excluded."""
        mailbox = await self.mailboxes.for_user(user_id)
        if mailbox is None or mailbox.state == MailboxState.DRAFT.value:
            return None
        return mailbox

    async def owned(self, user_id: int, mailbox_id: int) -> Mailbox:
        mailbox = await self.mailboxes.get(mailbox_id)
        if mailbox is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
            raise NotYourMailbox(mailbox_id)
        return mailbox

    async def propose_servers(self, email: str) -> Proposal | None:
        return await discover(email, self.deps.discovery_env, timeout=min(self.deps.timeout, 5.0))

    # ---- connecting ------------------------------------------------------------------------
    async def ensure_can_connect(self, user_id: int) -> None:
        if await self.current(user_id) is not None:
            raise AlreadyConnected(user_id)

    async def store_secret(self, user_id: int, data: AccountInput, password: str) -> Mailbox:
        """Keep the just-typed password encrypted in a draft, so a failed check can be fixed
        field by field without typing the password again."""
        await self.ensure_can_connect(user_id)
        draft = await self.mailboxes.for_user(user_id) or Mailbox(user_id=user_id, state=MailboxState.DRAFT.value)
        self._apply(draft, data)
        draft.secret_enc = self.deps.secrets.encrypt(password)
        draft.auth_kind = AuthKind.PASSWORD.value
        return await self.mailboxes.add(draft)

    async def store_tokens(self, user_id: int, data: AccountInput, tokens: TokenSet) -> Mailbox:
        """Like store_secret, with an OAuth2 sign-in's tokens instead of a password."""
        await self.ensure_can_connect(user_id)
        draft = await self.mailboxes.for_user(user_id) or Mailbox(user_id=user_id, state=MailboxState.DRAFT.value)
        self._apply(draft, data)
        OAuthService(self.session, self.deps).store_tokens(draft, tokens)
        return await self.mailboxes.add(draft)

    async def check_draft(self, user_id: int, data: AccountInput) -> Mailbox:
        """Log in to IMAP and SMTP with the draft's secret and the wizard's (maybe edited)
        fields. Raises MailCheckError; the draft keeps the error for the user to fix."""
        draft = await self._draft(user_id)
        self._apply(draft, data)
        try:
            await check_account(
                data.servers,
                await self.credentials(draft),
                ssl_context=self.deps.ssl_context,
                guard=self.deps.guard,
                timeout=self.deps.timeout,
            )
        except MailCheckError as exc:
            draft.last_error = f"{exc.protocol.value}:{exc.kind.value}"
            await self.session.flush()
            raise
        draft.last_error = None
        await self.session.flush()
        return draft

    async def finish(self, user_id: int, data: AccountInput, prefs: Preferences) -> ConnectResult:
        """Save the account: preferences, state connected, import the latest letters."""
        draft = await self._draft(user_id)
        self._apply(draft, data)
        draft.signature = prefs.signature[:SIGNATURE_MAX]
        draft.notify = prefs.notify
        draft.notify_sound = prefs.notify_sound
        draft.use_in_processes = prefs.use_in_processes
        imported = await self._import(draft)
        now = datetime.now(UTC)
        draft.state = MailboxState.CONNECTED.value
        draft.state_since = now
        draft.connected_at = now
        draft.last_error = None
        await self.session.flush()
        mailbox_id = draft.id
        after_commit(self.session, lambda: self.deps.watchers.start(mailbox_id))
        log.info("mailbox %s connected for user %s, %s letters imported", draft.id, user_id, imported)
        return ConnectResult(draft, imported)

    async def discard_draft(self, user_id: int) -> None:
        draft = await self.mailboxes.for_user(user_id)
        if draft is not None and draft.state == MailboxState.DRAFT.value:
            await self.mailboxes.delete(draft)

    # ---- settings --------------------------------------------------------------------------
    async def set_signature(self, user_id: int, mailbox_id: int, signature: str) -> Mailbox:
        if len(signature) > SIGNATURE_MAX:
            raise ValueError("signature too long")
        mailbox = await self.owned(user_id, mailbox_id)
        mailbox.signature = signature
        await self.session.flush()
        return mailbox

    async def toggle(self, user_id: int, mailbox_id: int, field: str) -> Mailbox:
        if field not in {"notify", "notify_sound", "use_in_processes"}:
            raise ValueError(field)
        mailbox = await self.owned(user_id, mailbox_id)
        setattr(mailbox, field, not getattr(mailbox, field))
        await self.session.flush()
        return mailbox

    # ---- reconnect and delete ----------------------------------------------------------------
    async def reconnect(
        self,
        user_id: int,
        mailbox_id: int,
        *,
        login: str | None = None,
        servers: MailServers | None = None,
        password: str | None = None,
    ) -> Mailbox:
        """Re-check IMAP and SMTP with the (possibly changed) settings; on success save them,
        mark the account connected and restart its watcher, which catches up on what arrived
        meanwhile. On failure nothing is changed and MailCheckError is raised."""
        mailbox = await self.owned(user_id, mailbox_id)
        creds = await self.credentials(mailbox)
        if password is not None:
            creds = Credentials(login or mailbox.login, password=password)
        elif login is not None:
            creds = Credentials(login, password=creds.password, oauth2_token=creds.oauth2_token)
        target = servers or servers_of(mailbox)
        await check_account(
            target, creds, ssl_context=self.deps.ssl_context, guard=self.deps.guard, timeout=self.deps.timeout
        )
        if login is not None:
            mailbox.login = login
        if servers is not None:
            mailbox.imap_host, mailbox.imap_port = servers.imap.host, servers.imap.port
            mailbox.imap_security = servers.imap.security.value
            mailbox.smtp_host, mailbox.smtp_port = servers.smtp.host, servers.smtp.port
            mailbox.smtp_security = servers.smtp.security.value
        if password is not None:
            mailbox.secret_enc = self.deps.secrets.encrypt(password)
            mailbox.auth_kind = AuthKind.PASSWORD.value
        mailbox.state = MailboxState.CONNECTED.value
        mailbox.state_since = datetime.now(UTC)
        mailbox.last_error = None
        mailbox.outage_notified = False
        await self.session.flush()
        after_commit(self.session, lambda: self.deps.watchers.restart(mailbox_id))
        return mailbox

    async def delete_account(self, user_id: int, mailbox_id: int) -> None:
        """Stop watching, then delete the account, its secret and every imported letter.
        Item links keep their snapshots and lose the link to the letter."""
        mailbox = await self.owned(user_id, mailbox_id)
        await self.deps.watchers.stop(mailbox.id)
        if mailbox.auth_kind == AuthKind.OAUTH2.value:
            await OAuthService(self.session, self.deps).revoke(mailbox)  # where the provider can (commits first)
        letters_of_mailbox = select(Letter.id).where(Letter.mailbox_id == mailbox.id)
        await self.session.execute(
            update(ItemLink).where(ItemLink.letter_id.in_(letters_of_mailbox)).values(letter_id=None)
        )
        await self.mailboxes.delete(mailbox)
        log.info("mailbox %s of user %s deleted", mailbox_id, user_id)

    # ---- reading ---------------------------------------------------------------------------
    async def letter_page(self, user_id: int, page: int, per_page: int = 8, *, sent: bool = False) -> LetterPage:
        """A page of the imported INBOX letters or (sent) of the letters business processes
        sent from this address, newest first; `others` counts the other list."""
        mailbox = await self.current(user_id)
        if mailbox is None:
            raise NotYourMailbox(0)
        inbox_total = await self.letters.count(mailbox.id)
        sent_total = await self.letters.count_sent(mailbox.id)
        total, others = (sent_total, inbox_total) if sent else (inbox_total, sent_total)
        page = _clamp_page(page, total, per_page)
        latest = self.letters.latest_sent if sent else self.letters.latest
        letters = list(await latest(mailbox.id, limit=per_page, offset=page * per_page))
        return LetterPage(mailbox, letters, total, page, sent=sent, others=others)

    async def letter_of_alert(self, user_id: int, message_id: int) -> int | None:
        """Which of the user's letters an alert message (its Telegram message id) was about."""
        if not 0 < message_id <= 2**63 - 1:
            return None
        return await self.letters.by_alert_message(user_id, message_id)

    async def owned_letter(self, user_id: int, letter_id: int) -> tuple[Mailbox, Letter]:
        if not 0 < letter_id <= MAX_ROW_ID:  # forged callback data: PostgreSQL would refuse the value
            raise LetterNotFound(letter_id)
        letter = await self.letters.get(letter_id)
        if letter is None:
            raise LetterNotFound(letter_id)
        mailbox = await self.mailboxes.get(letter.mailbox_id)
        if mailbox is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
            raise LetterNotFound(letter_id)
        return mailbox, letter

    async def read_letter(self, user_id: int, letter_id: int) -> FullLetter:
        """The whole letter, fetched from the server (bodies are not kept in the database)."""
        mailbox, letter = await self.owned_letter(user_id, letter_id)
        folder, uid = await self._place(letter)
        inbox = folder == "INBOX"
        if inbox and mailbox.uidvalidity is not None and letter.uidvalidity != mailbox.uidvalidity:
            raise LetterNotFound(letter_id)
        client = await self._open(mailbox)
        try:  # a sent letter lives in the Sent folder (services/outgoing.py)
            full = await fetch_letter(client, uid, mailbox=encode_mutf7(folder))
        finally:
            await close_imap(client)
        if full is None:
            raise LetterNotFound(letter_id)
        return full

    async def attachment(self, user_id: int, letter_id: int, part: str) -> tuple[str, bytes]:
        mailbox, letter = await self.owned_letter(user_id, letter_id)
        folder, uid = await self._place(letter)
        client = await self._open(mailbox)
        try:
            info, data = await fetch_attachment(
                client, uid, part, max_bytes=self.deps.attachment_limit, mailbox=encode_mutf7(folder)
            )
        except AttachmentTooLarge as exc:
            raise AttachmentTooBig(exc.info.filename, exc.info.size, self.deps.attachment_limit) from exc
        except AttachmentGone as exc:
            raise LetterNotFound(letter_id) from exc
        finally:
            await close_imap(client)
        return info.filename, data

    async def _find_folders(self, client: MailIMAP) -> SpecialFolders | None:
        """Archive, Trash and Junk, found in the import's session (one LIST); None when the
        server refuses (the first alert looks again)."""
        try:
            return await discover_folders(client, timeout=self.deps.timeout)
        except MailCheckError as exc:
            log.info("folders not found at import (%s)", exc.kind.value)
            return None

    async def _place(self, letter: Letter) -> tuple[str, int]:
        """Where the letter is read from: its folder, or where it was archived, deleted or
        reported as spam to from the chat (services/letter_actions.py keeps that)."""
        mark = await self.session.get(LetterMark, letter.id)
        if mark is not None and mark.place != LetterPlace.INBOX.value and mark.folder and mark.folder_uid:
            return mark.folder, int(mark.folder_uid)
        return letter.folder, letter.uid

    async def _open(self, mailbox: Mailbox) -> MailIMAP:
        return await open_imap(
            servers_of(mailbox).imap,
            await self.credentials(mailbox),
            ssl_context=self.deps.ssl_context,
            guard=self.deps.guard,
            timeout=self.deps.timeout,
        )

    # ---- internals -------------------------------------------------------------------------
    async def _draft(self, user_id: int) -> Mailbox:
        draft = await self.mailboxes.for_user(user_id)
        if draft is None or draft.state != MailboxState.DRAFT.value:
            raise NoDraft(user_id)
        return draft

    async def credentials(self, mailbox: Mailbox) -> Credentials:
        """The login for the mail servers. Every caller talks to a mail server next, so the
        update's work so far is committed first (services.hooks.checkpoint)."""
        if mailbox.auth_kind == AuthKind.OAUTH2.value:  # tokens, refreshed when about to expire
            creds = await OAuthService(self.session, self.deps).fresh_credentials(mailbox)
        else:
            creds = Credentials(mailbox.login, password=self.deps.secrets.decrypt(mailbox.secret_enc))
        await checkpoint(self.session)
        return creds

    @staticmethod
    def _apply(mailbox: Mailbox, data: AccountInput) -> None:
        mailbox.service_id = data.service_id
        mailbox.email = data.email
        mailbox.login = data.login
        mailbox.imap_host = data.servers.imap.host
        mailbox.imap_port = data.servers.imap.port
        mailbox.imap_security = data.servers.imap.security.value
        mailbox.smtp_host = data.servers.smtp.host
        mailbox.smtp_port = data.servers.smtp.port
        mailbox.smtp_security = data.servers.smtp.security.value

    async def _import(self, mailbox: Mailbox) -> int:
        client = await self._open(mailbox)
        try:
            result = await import_recent(client, limit=self.deps.import_limit)
            folders = await self._find_folders(client)
        finally:
            await close_imap(client)
        if folders is not None:  # the letter actions' folders (services/letter_actions.py)
            await save_folders(
                self.session, mailbox.id, archive=folders.archive, trash=folders.trash, junk=folders.junk,
                gmail=folders.gmail,
            )
        mailbox.uidvalidity = result.uidvalidity
        mailbox.highest_uid = result.highest_uid
        await self.letters.delete_for_mailbox(mailbox.id, "INBOX")  # a repeated Save starts from a clean import
        return await self.letters.add_many(
            letter_row(mailbox.id, result.uidvalidity, item, alerted=True) for item in result.letters
        )
