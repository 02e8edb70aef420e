"""Outgoing mail on the wire: build a letter, submit it over SMTP all-or-nothing, and file a
copy in the provider's Sent folder over IMAP.

* `build_message`: an `email.message.EmailMessage` with proper MIME (text and/or HTML as
  alternatives, attachments), RFC 2047 headers for non-ASCII names and subjects, Date,
  Message-ID and From. Bcc never goes into the submitted copy (only into the envelope).
* `submit`: MAIL FROM, one RCPT TO per recipient, DATA. If the server refuses any recipient
  the transaction is reset (RSET) and nothing is sent: `SmtpRefused` carries every refused
  address with the server's own answer.
* `find_sent_folder`: the folder with the \\Sent special-use attribute (RFC 6154; asked with
  `LIST "" "*" RETURN (SPECIAL-USE)` where the server supports it, else a plain LIST), else
  the first of the usual names. Folder names are modified UTF-7 on the wire (RFC 3501 5.1.3).
* `append_sent`: APPEND with \\Seen; the UID comes from UIDPLUS's APPENDUID, or else from a
  SEARCH for the Message-ID.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any

import aiosmtplib

from mail.html2text import html_to_text
from mail.importer import parse_search, parse_select
from mail.netguard import as_mail_error, require_ok
from mail.smtp import smtp_error
from mail.types import MailCheckError, Protocol
from mail.validate import parse_email

IMAP = Protocol.IMAP
POLICY = email.policy.SMTP  # CRLF line ends, RFC 2047 for non-ASCII headers, 78-column folding
SIGNATURE_SEPARATOR = "\n-- \n"
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Отправленные", "INBOX.Sent", "INBOX/Sent", "[Gmail]/Sent Mail")


# --------------------------------------------------------------------------- building
@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # ASCII addr-spec (domain in IDNA form)
    name: str = ""

    def header(self) -> Address:
        local, _, domain = self.address.rpartition("@")
        return Address(display_name=self.name, username=local, domain=domain)


MAX_NAME = 200


def parse_recipient(text: str) -> Recipient | None:
    """`a@b.example` or `Name <a@b.example>` (one address, ASCII local part; an international
    domain is sent in its IDNA form), or None."""
    if not text or len(text) > 500 or any(c in text for c in "\r\n\0"):
        return None
    pairs = getaddresses([text])
    if len(pairs) != 1:
        return None
    name, addr = pairs[0]
    address = parse_email(addr)
    if address is None or not addr or "<" not in text and addr.strip() != text.strip():
        return None
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None  # would need SMTPUTF8, which most submission servers don't offer
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        return None
    return Recipient(f"{local}@{domain}", name)


@dataclass(frozen=True, slots=True)
class AttachmentData:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Draft:
    sender: Recipient
    to: Sequence[Recipient]
    cc: Sequence[Recipient] = ()
    bcc: Sequence[Recipient] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: Sequence[AttachmentData] = ()
    signature: str = ""
    # extra headers (e.g. In-Reply-To, References: ASCII values only) and a part that comes
    # after the signature (the quoted or forwarded original), plain and HTML
    headers: Sequence[tuple[str, str]] = ()
    tail_text: str | None = None
    tail_html: str | None = None

    def signature_block(self) -> str:
        """The signature alone ("-- " and the lines), for a letter with no text of its own."""
        return text_with_signature("", self.signature).lstrip("\n")

    @property
    def envelope_recipients(self) -> list[str]:
        """Every address once, in order: To, Cc, Bcc."""
        seen: set[str] = set()
        out: list[str] = []
        for r in (*self.to, *self.cc, *self.bcc):
            if r.address.lower() not in seen:
                seen.add(r.address.lower())
                out.append(r.address)
        return out


@dataclass(slots=True)
class Built:
    message: EmailMessage
    message_id: str
    date: datetime
    text: str  # the readable text (with signature), for the snippet
    wire: bytes = b""  # the message as submitted (CRLF, no Bcc)

    def with_bcc(self, bcc: Sequence[Recipient]) -> bytes:
        """The wire form plus a Bcc header (for the Sent copy only), without serialising the
        whole message again."""
        if not bcc:
            return self.wire
        header = EmailMessage(policy=POLICY)
        header["Bcc"] = [r.header() for r in bcc]
        line = header.as_bytes(policy=POLICY).split(b"\r\n\r\n", 1)[0]
        head, sep, body = self.wire.partition(b"\r\n\r\n")
        return head + b"\r\n" + line + sep + body


def text_with_signature(text: str, signature: str) -> str:
    signature = signature.strip("\n")
    return f"{text}{SIGNATURE_SEPARATOR}{signature}" if signature.strip() else text


_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def html_with_signature(markup: str, signature: str) -> str:
    """The signature, HTML-escaped, after the body (before </body> when there is one)."""
    signature = signature.strip("\n")
    if not signature.strip():
        return markup
    lines = "<br>\n".join(html.escape(line) for line in signature.split("\n"))
    block = f'\n<div class="signature">-- <br>\n{lines}</div>\n'
    ends = list(_BODY_END.finditer(markup))
    if ends:
        at = ends[-1].start()
        return markup[:at] + block + markup[at:]
    return markup + block


def _append_html(markup: str, block: str) -> str:
    ends = list(_BODY_END.finditer(markup))
    if ends:
        at = ends[-1].start()
        return markup[:at] + block + markup[at:]
    return markup + block


def build_message(draft: Draft, *, now: datetime | None = None) -> Built:
    """The letter as it goes out (no Bcc header). The Message-ID is ours, on the sender's domain."""
    date = now or datetime.now(UTC)
    domain = draft.sender.address.rpartition("@")[2]
    message_id = make_msgid(domain=domain)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = draft.sender.header()
    msg["To"] = [r.header() for r in draft.to]
    if draft.cc:
        msg["Cc"] = [r.header() for r in draft.cc]
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    has_text = bool(draft.text) or draft.tail_text is not None  # a bare forward still signs
    text = None
    if has_text:
        text = text_with_signature(draft.text, draft.signature) if draft.text else draft.signature_block()
    markup = html_with_signature(draft.html, draft.signature) if draft.html else None
    if draft.tail_text is not None and text is not None:
        text = f"{text}\n\n{draft.tail_text}" if text.strip() else draft.tail_text
    if draft.tail_html is not None and markup is not None:
        markup = _append_html(markup, draft.tail_html)
    if text is None and markup is not None:
        text = html_to_text(markup)  # a plain alternative for clients (and filters) without HTML
    msg.set_content(text or "", cte=_cte(text or ""))
    if markup is not None:
        msg.add_alternative(markup, subtype="html", cte=_cte(markup))
    for item in draft.attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(item.data, maintype=maintype, subtype=subtype, filename=item.filename)
    wire = msg.as_bytes(policy=POLICY)
    if draft.headers:  # written as they are: the policy would RFC 2047-encode long Message-IDs
        extra = b"".join(raw_header(name, value) for name, value in draft.headers)
        head, sep, body = wire.partition(b"\r\n\r\n")
        wire = head + b"\r\n" + extra.rstrip(b"\r\n") + sep + body
    return Built(msg, message_id, date, text or "", wire)


def raw_header(name: str, value: str, width: int = 78) -> bytes:
    """`Name: value` folded at spaces (CRLF + space) to about `width` columns. Only printable
    ASCII is kept: these headers carry Message-IDs, never text."""
    clean = "".join(ch for ch in value if 0x20 < ord(ch) < 0x7F or ch == " ")
    lines: list[str] = []
    line = f"{name}:"
    for token in clean.split():
        if len(line) + 1 + len(token) > width and line.strip() and not line.endswith(":"):
            lines.append(line)
            line = ""
        line += f" {token}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _cte(text: str) -> str:
    """7bit when it can be, else quoted-printable (base64 would hide the text from filters)."""
    if text.isascii() and all(len(line) <= 900 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"


# --------------------------------------------------------------------------- SMTP
class SmtpRefused(Exception):
    """The server refused the letter: nothing was sent. `refused` maps each refused recipient to
    the server's answer (RCPT stage); `reply` is the answer to MAIL FROM or DATA otherwise."""

    def __init__(self, stage: str, reply: str, refused: dict[str, str] | None = None) -> None:
        super().__init__(f"{stage}: {reply}")
        self.stage = stage
        self.reply = reply
        self.refused = refused or {}


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}".strip()[:1000]


async def submit(client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes) -> None:
    """One transaction on a logged-in client. Raises SmtpRefused (nothing sent) or
    MailCheckError (connection trouble)."""
    try:
        options = [f"SIZE={len(data)}"] if client.supports_extension("size") else []
        try:
            await client.mail(sender, options=options)
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpRefused("mail", _reply(exc)) from None
        refused: dict[str, str] = {}
        for address in recipients:
            try:
                await client.rcpt(address)
            except aiosmtplib.SMTPResponseException as exc:
                refused[address] = _reply(exc)
        if refused:
            await client.rset()
            raise SmtpRefused("rcpt", "; ".join(refused.values()), refused)
        try:
            await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            raise SmtpRefused("data", _reply(exc)) from None
    except SmtpRefused:
        raise
    except Exception as exc:
        raise smtp_error(exc) from None


# --------------------------------------------------------------------------- IMAP folders
def decode_mutf7(name: str) -> str:
    """Modified UTF-7 (IMAP folder names) to text; a malformed name is returned as it is."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    try:
        while i < len(name):
            ch = name[i]
            if ch != "&":
                out.append(ch)
                i += 1
                continue
            end = name.index("-", i)
            chunk = name[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                raw = chunk.replace(",", "/")
                raw += "=" * (-len(raw) % 4)
                out.append(base64.b64decode(raw, validate=True).decode("utf-16-be"))
            i = end + 1
    except (ValueError, UnicodeDecodeError):
        return name
    return "".join(out)


def encode_mutf7(name: str) -> str:
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            raw = base64.b64encode("".join(run).encode("utf-16-be")).decode("ascii")
            out.append("&" + raw.rstrip("=").replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)


def quote_mailbox(name: str) -> str:
    """A folder name as an IMAP quoted string (mUTF-7 inside)."""
    wire = encode_mutf7(name)
    return '"' + wire.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FolderInfo:
    name: str  # decoded
    flags: frozenset[str] = field(default_factory=frozenset)  # lower case, e.g. "\\sent"
    delimiter: str | None = None


_LIST_LINE = re.compile(rb'^(?:\* LIST )?\(([^)]*)\) (NIL|"(?:[^"\\]|\\.)*") ?(.*)$', re.IGNORECASE | re.DOTALL)
_LITERAL = re.compile(rb"^\{(\d+)\+?\}$")


def _unquote(raw: bytes) -> bytes:
    if len(raw) >= 2 and raw[:1] == b'"' and raw[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return raw


def parse_list(lines: Sequence[Any]) -> list[FolderInfo]:
    """Folders of a LIST response as aioimaplib keeps it (text lines, then literals as
    bytearrays after the line that announced them; the last line is the tagged status)."""
    out: list[FolderInfo] = []
    items = list(lines[:-1])
    for i, line in enumerate(items):
        if not isinstance(line, bytes):
            continue
        m = _LIST_LINE.match(line.strip())
        if not m:
            continue
        flags = frozenset(f.decode("ascii", "replace").lower() for f in m.group(1).split())
        delim_raw = m.group(2)
        delimiter = None if delim_raw.upper() == b"NIL" else _unquote(delim_raw).decode("ascii", "replace")
        name_raw = m.group(3).strip()
        literal = _LITERAL.match(name_raw)
        if literal:
            following = items[i + 1] if i + 1 < len(items) else None
            if not isinstance(following, bytearray):
                continue
            name_raw = bytes(following)
        else:
            name_raw = _unquote(name_raw)
        name = decode_mutf7(name_raw.decode("utf-8", "replace"))
        out.append(FolderInfo(name, flags, delimiter))
    return out


def choose_sent(folders: Sequence[FolderInfo]) -> str | None:
    usable = [f for f in folders if not ({"\\noselect", "\\nonexistent"} & f.flags)]
    flagged = [f for f in usable if "\\sent" in f.flags]
    if flagged:
        return flagged[0].name
    by_name = {f.name.casefold(): f.name for f in usable}
    for candidate in SENT_NAMES:
        if candidate.casefold() in by_name:
            return by_name[candidate.casefold()]
    return None


async def _run(aw: Any, timeout: float) -> Any:  # noqa: ASYNC109
    try:
        return await asyncio.wait_for(aw, timeout)
    except MailCheckError:
        raise
    except Exception as exc:
        raise as_mail_error(IMAP, exc) from None


async def find_sent_folder(client: Any, *, timeout: float = 15.0) -> str | None:  # noqa: ASYNC109
    """The Sent folder's (decoded) name on a logged-in client, or None."""
    if client.has_capability("SPECIAL-USE") and client.has_capability("LIST-EXTENDED"):
        response = await _run(client.list('""', '"*" RETURN (SPECIAL-USE)'), timeout)
        if getattr(response, "result", None) == "OK":
            found = choose_sent(parse_list(response.lines))
            if found is not None:
                return found
    response = await _run(client.list('""', '"*"'), timeout)
    require_ok(response, "LIST")
    return choose_sent(parse_list(response.lines))


_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Appended:
    folder: str
    uidvalidity: int | None
    uid: int | None


async def append_sent(
    client: Any, folder: str, data: bytes, message_id: str, *, timeout: float = 15.0  # noqa: ASYNC109
) -> Appended:
    """APPEND (\\Seen) to `folder`; the new UID from APPENDUID, else by searching the folder
    for the Message-ID (None when the server tells neither)."""
    response = await _run(client.append(data, mailbox=quote_mailbox(folder), flags="(\\Seen)"), timeout)
    require_ok(response, "APPEND")
    for line in response.lines:
        if isinstance(line, bytes | bytearray):
            m = _APPENDUID.search(bytes(line))
            if m:
                return Appended(folder, int(m.group(1)), int(m.group(2)))
    selected = await _run(client.select(quote_mailbox(folder)), timeout)
    require_ok(selected, "SELECT")
    uidvalidity = parse_select(selected.lines)["uidvalidity"]
    quoted_id = '"' + message_id.replace("\\", "\\\\").replace('"', '\\"') + '"'
    found = await _run(client.uid_search("HEADER", "Message-ID", quoted_id, charset=None), timeout)
    uids = parse_search(found.lines) if getattr(found, "result", None) == "OK" else []
    return Appended(folder, uidvalidity, max(uids) if uids and uidvalidity is not None else None)
