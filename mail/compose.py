"""Answers and forwards as mail: the pieces a reply, a reply to all and a forward are made of.
No aiogram here (Telegram's message entities come in as plain `Entity` values).

* Subjects: `reply_subject` / `forward_subject` put one prefix in front of the original's
  subject without piling them up: "Re: Re: x", "RE: Fwd: x", "Отв: x", "Fw: x" all become
  "Re: x" / "Fwd: x" (the usual prefixes of Latin and Russian mail clients, with or without a
  counter like "Re[2]:").
* Threading (RFC 5322 3.6.4): `thread_headers` gives In-Reply-To (the original's Message-ID)
  and References (the original's References, or its In-Reply-To when it has none, then its
  Message-ID; the oldest trimmed past `MAX_REFERENCES`). Message-IDs are checked token by
  token; anything else in those headers is dropped.
* Recipients: `reply_recipients` answers Reply-To (else From; a letter of one's own is
  answered to its To); reply to all adds the original's To and keeps its Cc, and leaves out
  the user's own addresses and duplicates.
* Quoting: `quote_plain` / `quote_html` put the original under an intro line ("On <date>,
  <sender> wrote:", written by the caller in the user's language) with `> ` lines (plain) or a
  `<blockquote>` (HTML, everything escaped); `forward_block_*` for a forward.
* `entities_to_html`: Telegram text with entities (bold, italic, underline, strikethrough,
  code, pre, text_link, url, email) as HTML; offsets are UTF-16 code units, as Telegram counts
  them; overlapping entities are closed and reopened so the markup is always well formed;
  only http(s) and mailto links are kept as links.
* `fetch_original`: what a reply needs of a letter on the IMAP server (its text, attachments
  and the threading/recipient headers), read with BODY.PEEK (the letter stays as it was).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses
from typing import Any

from mail import mime
from mail.importer import parse_fetch, run_command
from mail.netguard import require_ok
from mail.outbox import Recipient, parse_recipient
from mail.reader import AttachmentInfo, fetch_letter
from mail.structure import as_count

MAX_REFERENCES = 20
MAX_RECIPIENTS = 100
_PREFIX = re.compile(
    r"^\s*(?:(?:re|fwd?|отв|ответ|пересл|aw|wg|sv|vs|tr|rv)\s*(?:\[\d{1,4}\]|\(\d{1,4}\))?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_MSGID = re.compile(r"<[!-;=?-~]{1,250}@[!-;=?-~]{1,250}>")  # printable ASCII but < and >
THREAD_FIELDS = "MESSAGE-ID REFERENCES IN-REPLY-TO REPLY-TO FROM TO CC"


# --------------------------------------------------------------------------- subjects
def base_subject(subject: str) -> str:
    """The subject without any reply/forward prefixes."""
    return _PREFIX.sub("", " ".join((subject or "").split())).strip()


def reply_subject(subject: str) -> str:
    return f"Re: {base_subject(subject)}".rstrip()


def forward_subject(subject: str) -> str:
    return f"Fwd: {base_subject(subject)}".rstrip()


# --------------------------------------------------------------------------- threading
def message_ids(value: str | None) -> list[str]:
    """The Message-IDs in a References / In-Reply-To / Message-ID header, in order, once each."""
    out: list[str] = []
    for found in _MSGID.findall(value or ""):
        if found not in out:
            out.append(found)
    return out


def thread_headers(message_id: str | None, references: str | None, in_reply_to: str | None) -> list[tuple[str, str]]:
    """In-Reply-To and References of an answer to a letter with these headers."""
    own = message_ids(message_id)
    if not own:
        return []  # nothing to refer to
    chain = message_ids(references) or message_ids(in_reply_to)[:1]
    chain = [m for m in chain if m != own[0]] + [own[0]]
    if len(chain) > MAX_REFERENCES:  # keep the first (the thread's root) and the latest
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return [("In-Reply-To", own[0]), ("References", " ".join(chain))]


# --------------------------------------------------------------------------- recipients
def parse_address_list(value: str | None, fallback_charset: str | None = None) -> list[Recipient]:
    """Addresses of a From/To/Cc/Reply-To header that can be written to (invalid ones dropped)."""
    if not value:
        return []
    out: list[Recipient] = []
    seen: set[str] = set()
    try:
        pairs = getaddresses([value[:65536]])
    except Exception:  # noqa: BLE001 - a broken header gives no recipients
        return []
    for name, addr in pairs[: MAX_RECIPIENTS * 2]:
        shown = mime.header_text(name, fallback_charset, 200) if name else ""
        parsed = parse_recipient(addr.strip()) if addr else None
        if parsed is None or parsed.address.lower() in seen:
            continue
        seen.add(parsed.address.lower())
        out.append(Recipient(parsed.address, shown.replace("\r", " ").replace("\n", " ")))
    return out


def _without(people: Iterable[Recipient], skip: set[str]) -> list[Recipient]:
    out: list[Recipient] = []
    for r in people:
        key = r.address.lower()
        if key not in skip:
            skip.add(key)
            out.append(r)
    return out


def reply_recipients(
    original: OriginalLetter, own: Iterable[str], *, reply_all: bool
) -> tuple[list[Recipient], list[Recipient]]:
    """(To, Cc) of an answer. `own`: the user's addresses, never written to."""
    mine = {a.lower() for a in own}
    senders = original.reply_to or original.sender
    if all(r.address.lower() in mine for r in senders):  # my own letter: answer its recipients
        senders = original.to
    skip = set(mine)
    to = _without(senders, skip)
    cc: list[Recipient] = []
    if reply_all:
        to += _without(original.to, skip)
        cc = _without(original.cc, skip)
    return to[:MAX_RECIPIENTS], cc[:MAX_RECIPIENTS]


def others_addressed(to_line: str, own: str) -> bool:
    """Whether a To line (as stored with the letter) names someone besides `own`: the alert
    then offers a reply to all (the Cc is only known once the letter is read)."""
    return any(r.address.lower() != own.lower() for r in parse_address_list(to_line))


def recipients_line(people: Sequence[Recipient]) -> str:
    return ", ".join(f"{r.name} <{r.address}>" if r.name else r.address for r in people)


# --------------------------------------------------------------------------- quoting
def quote_plain(text: str, intro: str) -> str:
    lines = (text or "").rstrip("\n").split("\n")
    quoted = [(">" + line if line.startswith(">") else "> " + line).rstrip() for line in lines]
    return intro + "\n" + "\n".join(quoted)


def _html_lines(text: str) -> str:
    return "<br>\n".join(html.escape(line) for line in (text or "").rstrip("\n").split("\n"))


def quote_html(text: str, intro: str) -> str:
    return (
        f"\n<div>{html.escape(intro)}</div>\n"
        '<blockquote type="cite" style="margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex">\n'
        f"{_html_lines(text)}\n</blockquote>\n"
    )


def forward_block_plain(header_lines: Sequence[str], text: str) -> str:
    return "\n".join(header_lines) + "\n\n" + (text or "")


def forward_block_html(header_lines: Sequence[str], text: str) -> str:
    head = "<br>\n".join(html.escape(line) for line in header_lines)
    return f"\n<div>{head}</div>\n<br>\n<div>{_html_lines(text)}</div>\n"


def html_document(body: str) -> str:
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>\n'


# --------------------------------------------------------------------------- Telegram entities
@dataclass(frozen=True, slots=True)
class Entity:
    type: str
    offset: int  # UTF-16 code units
    length: int
    url: str | None = None
    language: str | None = None


_SIMPLE_TAGS = {"bold": "b", "italic": "i", "underline": "u", "strikethrough": "s", "code": "code"}
_LINK_OK = re.compile(r"^(?:https?://|mailto:)\S{1,2000}$", re.IGNORECASE)


def _utf16_offsets(text: str) -> list[int]:
    """Position (in UTF-16 units) of each character, plus the end."""
    out = [0]
    for ch in text:
        out.append(out[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return out


def _open_tag(entity: Entity, piece: str) -> tuple[str, str] | None:
    if entity.type in _SIMPLE_TAGS:
        tag = _SIMPLE_TAGS[entity.type]
        return f"<{tag}>", f"</{tag}>"
    if entity.type == "pre":
        language = re.sub(r"[^A-Za-z0-9_+.#-]", "", entity.language or "")[:30]
        if language:
            return f'<pre><code class="language-{language}">', "</code></pre>"
        return "<pre>", "</pre>"
    if entity.type in ("text_link", "url", "email"):
        target = entity.url if entity.type == "text_link" else piece.strip()
        if entity.type == "email":
            target = f"mailto:{target}"
        elif entity.type == "url" and target and "://" not in target:
            target = f"http://{target}"
        if target and _LINK_OK.match(target):
            return f'<a href="{html.escape(target, quote=True)}">', "</a>"
    if entity.type == "blockquote":
        return "<blockquote>", "</blockquote>"
    return None


def entities_to_html(text: str, entities: Sequence[Entity]) -> str:
    """The text as an HTML fragment: entities as tags, everything else escaped, line breaks
    as <br> (kept as they are inside <pre>)."""
    pos = _utf16_offsets(text)
    index = {p: i for i, p in enumerate(pos)}  # UTF-16 offset -> character index
    spans: list[tuple[int, int, Entity]] = []
    for e in entities:
        start, end = index.get(e.offset), index.get(e.offset + e.length)
        if start is None or end is None or end <= start:
            continue
        spans.append((start, end, e))
    spans.sort(key=lambda s: (s[0], -s[1]))
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    out: list[str] = []
    stack: list[tuple[int, str]] = []  # (span number, closing tag)
    for a, b in zip(cuts, cuts[1:], strict=False):
        wanted: list[tuple[int, str, str]] = []
        for n, (first, last, entity) in enumerate(spans):
            if first <= a and b <= last:
                tags = _open_tag(entity, text[first:last])
                if tags is not None:
                    wanted.append((n, tags[0], tags[1]))
        keep = 0
        while keep < len(stack) and keep < len(wanted) and stack[keep][0] == wanted[keep][0]:
            keep += 1
        while len(stack) > keep:
            out.append(stack.pop()[1])
        for n, opening, closing in wanted[keep:]:
            out.append(opening)
            stack.append((n, closing))
        piece = html.escape(text[a:b], quote=False)
        in_pre = any(closing.endswith("</pre>") for _, closing in stack)
        out.append(piece if in_pre else piece.replace("\n", "<br>\n"))
    while stack:
        out.append(stack.pop()[1])
    return "".join(out)


# --------------------------------------------------------------------------- the original
@dataclass
class OriginalLetter:
    uid: int
    subject: str
    date: datetime | None
    sender: list[Recipient]
    reply_to: list[Recipient]
    to: list[Recipient]
    cc: list[Recipient]
    message_id: str | None
    references: str | None
    in_reply_to: str | None
    text: str
    attachments: list[AttachmentInfo] = field(default_factory=list)
    from_text: str = ""  # "Name <address>" as the letter says it
    to_text: str = ""
    cc_text: str = ""

    def thread(self) -> list[tuple[str, str]]:
        return thread_headers(self.message_id, self.references, self.in_reply_to)


async def fetch_original(client: Any, uid: int, *, mailbox: str = "INBOX", max_text_bytes: int = 256_000) -> OriginalLetter | None:
    """The letter with that UID (text, attachments, threading and address headers), or None
    when it is gone. The letter's flags are left alone (BODY.PEEK)."""
    full = await fetch_letter(client, uid, mark_seen=False, mailbox=mailbox, max_text_bytes=max_text_bytes)
    if full is None:
        return None
    response = await run_command(
        client, client.uid("fetch", str(int(uid)), f"(UID BODY.PEEK[HEADER.FIELDS ({THREAD_FIELDS})])")
    )
    require_ok(response, "FETCH")
    raw = b""
    for record in parse_fetch(response.lines):
        if as_count(record.get("UID")) != int(uid):
            continue
        for key, value in record.items():
            if key.startswith("BODY[HEADER") and isinstance(value, bytes | bytearray):
                raw = bytes(value)
    headers = mime.parse_headers(raw)
    return OriginalLetter(
        uid=full.uid,
        subject=full.subject,
        date=full.date,
        sender=parse_address_list(headers.get("from")),
        reply_to=parse_address_list(headers.get("reply-to")),
        to=parse_address_list(headers.get("to")),
        cc=parse_address_list(headers.get("cc")),
        message_id=next(iter(message_ids(headers.get("message-id"))), None),
        references=headers.get("references"),
        in_reply_to=headers.get("in-reply-to"),
        text=full.text,
        attachments=full.attachments,
        from_text=mime.truncate(
            f"{full.from_name} <{full.from_addr}>" if full.from_name and full.from_addr else full.from_addr or full.from_name,
            400,
        ),
        to_text=full.to,
        cc_text=full.cc,
    )
