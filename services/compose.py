"""Reply, reply to all and forward from the chat.

A draft (`ComposeDraft`) lives in the conversation state (FSM data: Redis in a fleet, so it
survives a restart and may be continued on any instance). It holds what the user wrote (text
and Telegram's entities), the Telegram file ids of the photos and documents they added, the
recipients, the subject, the threading headers and the intro line of the quote, plus the
original letter's id and the parts of it a forward carries. Never a secret, never the
original's text (that is read from the IMAP server again when the letter goes).

`ComposeService.send` is the only way out: the owner of the letter is checked again (the
draft came from the conversation state, the letter id from a button), the original is read
from the server (the quote; a forward's attachments byte for byte), and the letter goes through
`OutgoingService.send_from`, the path the business-process API takes: the user's own SMTP
server (password or OAuth2), the server's SIZE checked first, a copy APPENDed to Sent.

A draft is good for `DRAFT_TTL` (a day) from its start; the caller passes the time (`now`)
from a clock the tests drive.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from mail.compose import (
    Entity,
    OriginalLetter,
    entities_to_html,
    fetch_original,
    forward_block_html,
    forward_block_plain,
    forward_subject,
    html_document,
    quote_html,
    quote_plain,
    reply_recipients,
    reply_subject,
)
from mail.imap import close_imap, open_imap
from mail.outbox import AttachmentData, Recipient, encode_mutf7, parse_recipient
from mail.reader import AttachmentGone, AttachmentTooLarge, fetch_attachment
from services.deps import MailDeps
from services.mailboxes import LetterNotFound, MailboxService, servers_of
from services.outgoing import MailboxUnavailable, OutgoingLetter, OutgoingService, SendResult
from storage.models import Letter, Mailbox, MailboxState

log = logging.getLogger(__name__)

DRAFT_TTL = timedelta(days=1)
MODES = ("reply", "all", "fwd")
MAX_TEXT = 100_000  # characters of the user's own text
MAX_FILES = 20
MAX_RECIPIENTS = 50
COMPOSE_ATTACHMENTS_LIMIT = 50 * 1024 * 1024  # the server's own SIZE is checked as well


class ComposeError(Exception):
    """A refusal the chat explains."""


class NoRecipients(ComposeError):
    pass


class ForwardedAttachmentTooBig(ComposeError):
    def __init__(self, filename: str, size: int, limit: int) -> None:
        super().__init__(filename)
        self.filename = filename
        self.size = size
        self.limit = limit


class Wording(Protocol):
    """The quote's words in the user's language (written by the chat side)."""

    def reply_intro(self, date: datetime | None, sender: str) -> str: ...

    def forward_header(self, original: OriginalLetter) -> list[str]: ...


@dataclass
class FileRef:
    """A photo or document the user sent while composing (downloaded when the letter goes)."""

    file_id: str
    name: str
    mime: str
    size: int


@dataclass
class ForwardedPart:
    part: str
    name: str
    content_type: str
    size: int


def _recipients(raw: Any) -> list[Recipient]:
    out: list[Recipient] = []
    for item in raw or []:
        parsed = parse_recipient(str(item[0])) if isinstance(item, list | tuple) and item else None
        if parsed is not None:
            out.append(Recipient(parsed.address, str(item[1])[:200] if len(item) > 1 else ""))
    return out


@dataclass
class ComposeDraft:
    id: str
    mode: str
    letter_id: int
    mailbox_id: int
    sender: str
    to: list[Recipient]
    cc: list[Recipient]
    subject: str
    intro: list[str]
    headers: list[tuple[str, str]]
    created: datetime
    text: str = ""
    entities: list[Entity] = field(default_factory=list)
    files: list[FileRef] = field(default_factory=list)
    forwarded: list[ForwardedPart] = field(default_factory=list)

    def expired(self, now: datetime) -> bool:
        return now - self.created > DRAFT_TTL

    @property
    def recipients(self) -> list[Recipient]:
        return [*self.to, *self.cc]

    def set_text(self, text: str, entities: Sequence[Entity]) -> None:
        self.text = text[:MAX_TEXT]
        self.entities = [e for e in entities if e.offset + e.length <= len(self.text.encode("utf-16-le")) // 2]

    def add_file(self, ref: FileRef) -> bool:
        if len(self.files) >= MAX_FILES:
            return False
        self.files.append(ref)
        return True

    def add_recipients(self, people: Sequence[Recipient]) -> int:
        """Adds to To the ones not on the letter yet; how many were added."""
        known = {r.address.lower() for r in self.recipients}
        added = 0
        for person in people:
            if person.address.lower() not in known and len(self.recipients) < MAX_RECIPIENTS:
                known.add(person.address.lower())
                self.to.append(person)
                added += 1
        return added

    def remove_recipients(self, addresses: Sequence[str]) -> None:
        gone = {a.lower() for a in addresses}
        self.to = [r for r in self.to if r.address.lower() not in gone]
        self.cc = [r for r in self.cc if r.address.lower() not in gone]

    # ---- FSM data (JSON) ---------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        return {
            "id": self.id, "mode": self.mode, "letter_id": self.letter_id, "mailbox_id": self.mailbox_id,
            "sender": self.sender, "to": [[r.address, r.name] for r in self.to],
            "cc": [[r.address, r.name] for r in self.cc], "subject": self.subject, "intro": self.intro,
            "headers": [list(h) for h in self.headers], "created": self.created.isoformat(), "text": self.text,
            "entities": [
                {"type": e.type, "offset": e.offset, "length": e.length, "url": e.url, "language": e.language}
                for e in self.entities
            ],
            "files": [vars(f) for f in self.files],
            "forwarded": [vars(p) for p in self.forwarded],
        }

    @classmethod
    def from_data(cls, data: Any) -> ComposeDraft | None:
        """The draft kept in the conversation state, or None when there is none (or it is
        not one this code wrote)."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                id=str(data["id"]), mode=str(data["mode"]), letter_id=int(data["letter_id"]),
                mailbox_id=int(data["mailbox_id"]), sender=str(data["sender"]), to=_recipients(data["to"]),
                cc=_recipients(data["cc"]), subject=str(data["subject"]), intro=[str(x) for x in data["intro"]],
                headers=[(str(h[0]), str(h[1])) for h in data["headers"]],
                created=datetime.fromisoformat(str(data["created"])), text=str(data.get("text", "")),
                entities=[Entity(str(e["type"]), int(e["offset"]), int(e["length"]), e.get("url"), e.get("language"))
                          for e in data.get("entities", [])],
                files=[FileRef(str(f["file_id"]), str(f["name"]), str(f["mime"]), int(f["size"]))
                       for f in data.get("files", [])],
                forwarded=[ForwardedPart(str(p["part"]), str(p["name"]), str(p["content_type"]), int(p["size"]))
                           for p in data.get("forwarded", [])],
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None


def parse_recipients(text: str) -> tuple[list[Recipient], list[str]]:
    """Addresses typed by the user (commas, semicolons or new lines between them):
    (the good ones, the pieces that are not addresses)."""
    good: list[Recipient] = []
    bad: list[str] = []
    pieces = [p.strip() for chunk in (text or "")[:5000].replace(";", "\n").split("\n") for p in _split_commas(chunk)]
    for piece in pieces:
        if not piece:
            continue
        parsed = parse_recipient(piece)
        if parsed is None:
            bad.append(piece[:100])
        else:
            good.append(parsed)
    return good, bad


def _split_commas(chunk: str) -> list[str]:
    """Split at commas outside quotes and angle brackets ("Doe, John" <j@x> stays whole)."""
    out: list[str] = []
    buf: list[str] = []
    quoted = angle = False
    for ch in chunk:
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle = True
        elif ch == ">" and not quoted:
            angle = False
        if ch == "," and not quoted and not angle:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


class ComposeService:
    def __init__(self, session: AsyncSession, deps: MailDeps) -> None:
        self.session = session
        self.deps = deps
        self.mailboxes = MailboxService(session, deps)

    async def _owned(self, user_id: int, letter_id: int) -> tuple[Mailbox, Letter]:
        mailbox, letter = await self.mailboxes.owned_letter(user_id, letter_id)
        if mailbox.state == MailboxState.BROKEN.value:
            raise MailboxUnavailable(mailbox.state, mailbox.last_error or "")
        return mailbox, letter

    async def start(self, user_id: int, letter_id: int, mode: str, words: Wording, now: datetime) -> ComposeDraft:
        """A new draft answering (or forwarding) the user's letter. Raises LetterNotFound
        (not theirs, or gone), MailboxUnavailable (a broken account), MailCheckError."""
        if mode not in MODES:
            raise LetterNotFound(letter_id)
        mailbox, letter = await self._owned(user_id, letter_id)
        original = await self._original(mailbox, letter)
        if mode == "fwd":
            to: list[Recipient] = []
            cc: list[Recipient] = []
            subject = forward_subject(original.subject)
            intro = words.forward_header(original)
            headers: list[tuple[str, str]] = []
        else:
            to, cc = reply_recipients(original, [mailbox.email, mailbox.login], reply_all=mode == "all")
            subject = reply_subject(original.subject)
            intro = [words.reply_intro(original.date, original.from_text)]
            headers = original.thread()
        forwarded = [
            ForwardedPart(a.part, a.filename, a.content_type, a.size) for a in original.attachments
        ] if mode == "fwd" else []
        return ComposeDraft(
            id=pysecrets.token_hex(4), mode=mode, letter_id=letter.id, mailbox_id=mailbox.id, sender=mailbox.email,
            to=to, cc=cc, subject=subject, intro=intro, headers=headers, created=now, forwarded=forwarded,
        )

    async def _open(self, mailbox: Mailbox) -> Any:
        return await open_imap(
            servers_of(mailbox).imap, await self.mailboxes.credentials(mailbox), ssl_context=self.deps.ssl_context,
            guard=self.deps.guard, timeout=self.deps.timeout,
        )

    async def _original(self, mailbox: Mailbox, letter: Letter) -> OriginalLetter:
        if letter.folder == "INBOX" and mailbox.uidvalidity is not None and letter.uidvalidity != mailbox.uidvalidity:
            raise LetterNotFound(letter.id)
        client = await self._open(mailbox)
        try:
            original = await fetch_original(client, letter.uid, mailbox=encode_mutf7(letter.folder))
        finally:
            await close_imap(client)
        if original is None:
            raise LetterNotFound(letter.id)
        return original

    async def send(self, user_id: int, draft: ComposeDraft, files: Sequence[AttachmentData]) -> SendResult:
        """Send the draft. `files`: the user's photos and documents, downloaded by the chat side.
        Raises LetterNotFound (a forged or foreign letter id, or the original is gone),
        NoRecipients, ForwardedAttachmentTooBig, MailCheckError (reading the original) and the
        OutgoingError family (sending)."""
        mailbox, letter = await self._owned(user_id, draft.letter_id)
        if mailbox.id != draft.mailbox_id:
            raise LetterNotFound(draft.letter_id)
        if not draft.recipients:
            raise NoRecipients()
        attachments = list(files)
        client = await self._open(mailbox)
        try:  # one IMAP session: the original (quote, forwarded attachments), then the Sent copy
            folder = encode_mutf7(letter.folder)
            original = await fetch_original(client, letter.uid, mailbox=folder)
            if original is None:
                raise LetterNotFound(draft.letter_id)
            for part in draft.forwarded:  # the original's attachments, from the server
                try:
                    info, data = await fetch_attachment(
                        client, letter.uid, part.part, max_bytes=COMPOSE_ATTACHMENTS_LIMIT, mailbox=None
                    )
                except AttachmentTooLarge as exc:
                    raise ForwardedAttachmentTooBig(exc.info.filename, exc.info.size, COMPOSE_ATTACHMENTS_LIMIT) from None
                except AttachmentGone:
                    raise LetterNotFound(draft.letter_id) from None
                attachments.append(AttachmentData(info.filename or part.name, info.content_type or part.content_type, data))
            if draft.mode == "fwd":
                tail_text = forward_block_plain(draft.intro, original.text)
                tail_html = forward_block_html(draft.intro, original.text)
            else:
                intro = draft.intro[0] if draft.intro else ""
                tail_text = quote_plain(original.text, intro)
                tail_html = quote_html(original.text, intro)
            outgoing = OutgoingService(self.session, self.deps, attachments_limit=COMPOSE_ATTACHMENTS_LIMIT)
            result = await outgoing.send_from(
                mailbox,
                OutgoingLetter(
                    to=draft.to, cc=draft.cc, subject=draft.subject, text=draft.text,
                    html=html_document(entities_to_html(draft.text, draft.entities)), attachments=attachments,
                    headers=draft.headers, tail_text=tail_text, tail_html=tail_html,
                ),
                imap=client,
            )
        finally:
            await close_imap(client)
        log.info("mailbox %s: %s to letter %s sent from the chat", mailbox.id, draft.mode, letter.id)
        return result
