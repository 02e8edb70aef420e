"""Business processes: send a letter from an employee's connected mailbox, and link letters to
business items. The HTTP API (web/routes.py) calls this layer; so could the chat or a worker.

Sending (`OutgoingService.send`):

1. the employee is found by Telegram user id or by the connected address (drafts don't count)
   and must have turned "use in business processes" on; a broken account is refused before
   anything goes out (one that is merely reconnecting is tried: the watcher's IMAP trouble
   says little about SMTP, and an unreachable server gets its own answer);
2. the letter is built (mail.outbox.build_message) with the employee's signature, From is the
   mailbox address, the Message-ID is ours (on the sender's domain);
3. it is submitted through the employee's own SMTP server with their password or OAuth2 token,
   all or nothing: one refused recipient and nothing is sent (SendRefused has the answers);
4. a copy (with Bcc, as mail clients keep it) is APPENDed \\Seen to the provider's Sent folder and
   stored as a Letter row with folder = that folder, so it can be linked and shown; failing
   that the letter is still sent (the answer says saved_to_sent = false);
5. with an item type and id the letter is linked to the item (a snapshot-only link when there
   is no Letter row).

Steps 2-4 are `send_from`, which the chat's answers (services/compose.py) call as well; a
letter larger than the server's EHLO SIZE is refused before MAIL FROM (TooLargeForServer).

Errors are typed (OutgoingError subclasses); nothing here knows HTTP. Secrets are never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mail import mime
from mail.imap import close_imap, open_imap
from mail.outbox import (
    AttachmentData,
    Built,
    Draft,
    Recipient,
    SmtpRefused,
    append_sent,
    build_message,
    find_sent_folder,
    submit,
)
from mail.smtp import close_smtp, open_smtp
from mail.types import Credentials, FailureKind, LetterSummary, MailCheckError
from mail.validate import parse_email
from services.deps import MailDeps
from services.hooks import after_commit
from services.items import ItemLinks, LinkView, view_of
from services.items import LetterNotFound as ItemLetterNotFound
from services.letters import letter_row
from services.mailboxes import MailboxService, servers_of
from storage.models import Letter, Mailbox, MailboxState

log = logging.getLogger(__name__)

DEFAULT_ATTACHMENTS_LIMIT = 20 * 1024 * 1024
OFFLOAD_BYTES = 256 * 1024
LOGIN_REFUSED = {FailureKind.AUTH_FAILED, FailureKind.APP_PASSWORD_REQUIRED, FailureKind.IMAP_DISABLED}


# --------------------------------------------------------------------------- errors
class OutgoingError(Exception):
    """A refusal the caller can explain to whoever asked."""


class UnknownEmployee(OutgoingError):
    """No connected mailbox for that Telegram user id or address."""


class NotAllowed(OutgoingError):
    """The employee did not allow their mailbox to be used in business processes."""


class MailboxUnavailable(OutgoingError):
    """The account is broken, or the server refused the stored login now."""

    def __init__(self, state: str, detail: str = "") -> None:
        super().__init__(state)
        self.state = state
        self.detail = detail


class AttachmentsTooLarge(OutgoingError):
    def __init__(self, total: int, limit: int) -> None:
        super().__init__(f"{total} > {limit}")
        self.total = total
        self.limit = limit


class SendRefused(OutgoingError):
    """The SMTP server refused the letter; nothing was sent. `refused`: address -> answer."""

    def __init__(self, stage: str, reply: str, refused: dict[str, str]) -> None:
        super().__init__(reply)
        self.stage = stage
        self.reply = reply
        self.refused = refused


class TooLargeForServer(OutgoingError):
    """The letter is larger than the SIZE the server announced in EHLO; nothing was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} > {limit}")
        self.size = size
        self.limit = limit


class MailServerUnreachable(OutgoingError):
    """The employee's mail server (or OAuth2 provider) could not be reached or spoke oddly."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownLetter(OutgoingError):
    """No such letter (for that employee)."""


# --------------------------------------------------------------------------- inputs / outputs
@dataclass(frozen=True, slots=True)
class EmployeeRef:
    """Exactly one of the two."""

    user_id: int | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class ItemRef:
    type: str
    id: str


@dataclass(frozen=True, slots=True)
class OutgoingLetter:
    to: Sequence[Recipient]
    cc: Sequence[Recipient] = ()
    bcc: Sequence[Recipient] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: Sequence[AttachmentData] = ()
    from_name: str | None = None
    item: ItemRef | None = None
    # an answer or a forward from the chat: threading headers and the original after the signature
    headers: Sequence[tuple[str, str]] = ()
    tail_text: str | None = None
    tail_html: str | None = None


@dataclass(slots=True)
class SendResult:
    message_id: str
    mailbox_id: int
    user_id: int
    sender: str
    recipients: list[str]
    sent_at: datetime
    saved_to_sent: bool
    sent_folder: str | None
    letter_id: int | None
    link: LinkView | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class SendProgress:
    """How far a send got, for a caller that must know whether a failure may have left the
    letter sent (e.g. to keep an idempotency key rather than free it for a second copy)."""

    handed_to_smtp: bool = False


def server_size_limit(client: Any) -> int | None:
    """The largest letter the server takes (EHLO SIZE), or None when it names no limit."""
    value = str(getattr(client, "esmtp_extensions", {}).get("size") or "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


# --------------------------------------------------------------------------- the service
class OutgoingService:
    def __init__(
        self, session: AsyncSession, deps: MailDeps, *, attachments_limit: int = DEFAULT_ATTACHMENTS_LIMIT
    ) -> None:
        self.session = session
        self.deps = deps
        self.attachments_limit = attachments_limit
        self.mailboxes = MailboxService(session, deps)
        self.links = ItemLinks(session)

    # ---- employees -------------------------------------------------------------------------
    async def employee(self, ref: EmployeeRef) -> Mailbox:
        """The employee's connected mailbox (any state but draft). Raises UnknownEmployee."""
        if ref.user_id is not None:
            mailbox = await self.mailboxes.current(ref.user_id)
            if mailbox is None:
                raise UnknownEmployee(str(ref.user_id))
            return mailbox
        address = parse_email(ref.email)
        if address is None:
            raise UnknownEmployee(str(ref.email))
        stmt = select(Mailbox).where(
            func.lower(Mailbox.email) == address.lower(), Mailbox.state != MailboxState.DRAFT.value
        )
        found = list((await self.session.execute(stmt)).scalars())
        if not found:
            raise UnknownEmployee(address)
        # the same address connected by two people: the one who allowed processes, connected,
        # most recently connected
        found.sort(
            key=lambda m: (
                m.use_in_processes,
                m.state == MailboxState.CONNECTED.value,
                m.connected_at.timestamp() if m.connected_at else 0.0,
                m.id,
            ),
            reverse=True,
        )
        return found[0]

    async def allowed_employee(self, ref: EmployeeRef) -> Mailbox:
        mailbox = await self.employee(ref)
        if not mailbox.use_in_processes:
            raise NotAllowed(str(mailbox.user_id))
        return mailbox

    # ---- sending ---------------------------------------------------------------------------
    async def send(self, ref: EmployeeRef, letter: OutgoingLetter, progress: SendProgress | None = None) -> SendResult:
        total = sum(len(a.data) for a in letter.attachments)
        if total > self.attachments_limit:
            raise AttachmentsTooLarge(total, self.attachments_limit)
        mailbox = await self.allowed_employee(ref)
        return await self.send_from(mailbox, letter, progress)

    async def send_from(
        self, mailbox: Mailbox, letter: OutgoingLetter, progress: SendProgress | None = None, *, imap: Any = None
    ) -> SendResult:
        """Send from this mailbox (its owner's own letter from the chat, or an allowed business
        process): the one path both take to the SMTP server and the Sent folder. `imap`: a
        logged-in IMAP client of this mailbox the caller already has (and closes), used for
        the Sent copy instead of a second login."""
        total = sum(len(a.data) for a in letter.attachments)
        if total > self.attachments_limit:
            raise AttachmentsTooLarge(total, self.attachments_limit)
        if mailbox.state == MailboxState.BROKEN.value:
            raise MailboxUnavailable(mailbox.state, mailbox.last_error or "")
        creds = await self._credentials(mailbox)
        sender = Recipient(mailbox.email, " ".join((letter.from_name or "").split()))
        draft = Draft(
            sender=sender, to=letter.to, cc=letter.cc, bcc=letter.bcc, subject=letter.subject,
            text=letter.text, html=letter.html, attachments=letter.attachments, signature=mailbox.signature or "",
            headers=letter.headers, tail_text=letter.tail_text, tail_html=letter.tail_html,
        )
        if total > OFFLOAD_BYTES:  # MIME-encoding megabytes is CPU work: not on the event loop
            built = await asyncio.to_thread(build_message, draft)
        else:
            built = build_message(draft)
        recipients = draft.envelope_recipients
        await self._submit(mailbox, creds, built.wire, recipients, progress)
        log.info(
            "mailbox %s: letter sent to %d recipient(s)", mailbox.id, len(recipients)
        )
        result = SendResult(
            message_id=built.message_id, mailbox_id=mailbox.id, user_id=mailbox.user_id, sender=mailbox.email,
            recipients=recipients, sent_at=built.date, saved_to_sent=False, sent_folder=None, letter_id=None,
        )
        sent_copy = built.with_bcc(letter.bcc)
        stored: Letter | None = None
        try:
            stored = await self._file_in_sent(mailbox, creds, draft, built, sent_copy, result, imap)
        except MailCheckError as exc:
            log.warning("mailbox %s: sent letter not saved to Sent: %s", mailbox.id, exc.kind.value)
            result.warnings.append(f"not saved to the Sent folder: {exc.detail or exc.kind.value}"[:500])
        if letter.item is not None:
            if stored is not None:
                link = await self.links.link(letter.item.type, letter.item.id, stored.id)
            else:
                link = await self.links.link_snapshot(
                    letter.item.type, letter.item.id, user_id=mailbox.user_id, from_name=sender.name,
                    from_addr=sender.address, subject=letter.subject, sent_at=built.date,
                    snippet=mime.make_snippet(built.text),
                )
            result.link = view_of(link)
        return result

    async def _credentials(self, mailbox: Mailbox) -> Credentials:
        try:
            return await self.mailboxes.credentials(mailbox)
        except MailCheckError as exc:  # OAuth2: ReauthorizationRequired marks the account broken
            if exc.kind in LOGIN_REFUSED:
                raise self._login_refused(mailbox, MailboxState.BROKEN.value, exc.detail) from None
            raise MailServerUnreachable(exc.detail or exc.kind.value) from None

    def _login_refused(self, mailbox: Mailbox, state: str, detail: str) -> MailboxUnavailable:
        """The stored login was refused (a changed password, a withdrawn grant). Once this is
        committed the watcher tries the login at once: a confirmed refusal makes the account
        broken with the one Reconnect message, exactly as if the watcher had found it."""
        mailbox_id = mailbox.id
        after_commit(self.session, lambda: self.deps.watchers.restart(mailbox_id))
        return MailboxUnavailable(state, detail)

    async def _submit(
        self, mailbox: Mailbox, creds: Credentials, data: bytes, recipients: list[str], progress: SendProgress | None
    ) -> None:
        try:
            client = await open_smtp(
                servers_of(mailbox).smtp, creds, ssl_context=self.deps.ssl_context, guard=self.deps.guard,
                timeout=self.deps.timeout,
            )
        except MailCheckError as exc:
            if exc.kind in LOGIN_REFUSED:
                raise self._login_refused(mailbox, "login_refused", exc.detail) from None
            raise MailServerUnreachable(f"SMTP: {exc.detail or exc.kind.value}") from None
        limit = server_size_limit(client)
        if limit is not None and len(data) > limit:  # RFC 1870: refused before MAIL FROM
            await close_smtp(client)
            raise TooLargeForServer(len(data), limit)
        if progress is not None:
            progress.handed_to_smtp = True  # from here on the server may have the letter
        try:
            await submit(client, mailbox.email, recipients, data)
        except SmtpRefused as exc:
            raise SendRefused(exc.stage, exc.reply, exc.refused) from None
        except MailCheckError as exc:
            raise MailServerUnreachable(f"SMTP: {exc.detail or exc.kind.value}") from None
        finally:
            await close_smtp(client)

    async def _file_in_sent(
        self, mailbox: Mailbox, creds: Credentials, draft: Draft, built: Built, data: bytes, result: SendResult,
        imap: Any = None,
    ) -> Letter | None:
        client = imap
        if client is None:
            client = await open_imap(
                servers_of(mailbox).imap, creds, ssl_context=self.deps.ssl_context, guard=self.deps.guard,
                timeout=self.deps.timeout,
            )
        try:
            folder = await find_sent_folder(client, timeout=self.deps.timeout)
            if folder is None:
                result.warnings.append("the mailbox has no Sent folder; no copy was saved")
                return None
            appended = await append_sent(client, folder, data, built.message_id, timeout=self.deps.timeout)
        finally:
            if imap is None:
                await close_imap(client)
        result.saved_to_sent = True
        result.sent_folder = folder
        if appended.uid is None or appended.uidvalidity is None:
            return None
        summary = LetterSummary(
            uid=appended.uid, message_id=built.message_id, from_name=draft.sender.name,
            from_addr=draft.sender.address,
            to=", ".join(f"{r.name} <{r.address}>" if r.name else r.address for r in draft.to)[:2000],
            subject=draft.subject, date=built.date, snippet=mime.make_snippet(built.text),
            has_attachments=bool(draft.attachments), size=len(data),
        )
        letter = letter_row(mailbox.id, appended.uidvalidity, summary, alerted=True)  # no alert for our own
        letter.folder = folder
        await self.mailboxes.letters.add_many([letter])
        result.letter_id = letter.id
        return letter

    # ---- linking ---------------------------------------------------------------------------
    async def link(
        self,
        item: ItemRef,
        *,
        letter_id: int | None = None,
        message_id: str | None = None,
        employee: EmployeeRef | None = None,
    ) -> LinkView:
        """Link an imported or sent letter to an item, by its id or by its Message-ID in the
        employee's mailbox. The letter's owner must allow business processes."""
        owner: Mailbox | None = None
        if employee is not None:
            owner = await self.allowed_employee(employee)
        if letter_id is None:
            if owner is None or not message_id:
                raise UnknownLetter("a Message-ID needs the employee")
            wanted = message_id.strip()
            if not wanted.startswith("<"):
                wanted = f"<{wanted}>"
            stmt = (
                select(Letter.id)
                .where(Letter.mailbox_id == owner.id, Letter.message_id == wanted)
                .order_by(Letter.id)
                .limit(1)
            )
            letter_id = (await self.session.execute(stmt)).scalar_one_or_none()
            if letter_id is None:
                raise UnknownLetter(wanted)
        else:
            letter = await self.mailboxes.letters.get(letter_id)
            if letter is None:
                raise UnknownLetter(str(letter_id))
            mailbox = await self.mailboxes.mailboxes.get(letter.mailbox_id)
            if mailbox is None or (owner is not None and mailbox.id != owner.id):
                raise UnknownLetter(str(letter_id))
            if not mailbox.use_in_processes:
                raise NotAllowed(str(mailbox.user_id))
        try:
            link = await self.links.link(item.type, item.id, letter_id)
        except ItemLetterNotFound:
            raise UnknownLetter(str(letter_id)) from None
        return view_of(link)

    async def item_links(self, item: ItemRef) -> Sequence[LinkView]:
        return await self.links.for_item(item.type, item.id)
