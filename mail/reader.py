"""Read one letter in full: headers, readable text, the list of attachments; fetch one
attachment. No aiogram here.

Round trips of :func:`fetch_letter` (after the SELECT):

1. ``UID FETCH <uid> (UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY[HEADER.FIELDS (...)])``
   - the non-PEEK ``BODY[...]`` marks the letter ``\\Seen`` on the server, as opening it in
   any mail client does (``mark_seen=False`` uses EXAMINE + BODY.PEEK instead);
2. ``UID FETCH <uid> (BODY.PEEK[<text section>]<0.N> ... BINARY.SIZE[<attachment>] ...)``:
   only the readable part(s), each cut at a byte budget, plus the exact decoded size of each
   encoded attachment when the server has BINARY (RFC 3516). Attachments themselves are
   never downloaded here, so a 10 MB attachment costs nothing to show the text.

Which part is "the text": in multipart/alternative text/plain is preferred, text/html is
turned into readable text (a near-empty plain alternative falls back to the HTML one); in
multipart/related the root part; in multipart/mixed every inline text part, in order (the
walk is :mod:`mail.structure`, shared with the importer).
Charsets: the declared one unless the bytes say otherwise (valid UTF-8 wins over a
single-byte label; koi8-r vs windows-1251 confusion is settled by letter case); nothing here
raises on odd mail.

:func:`fetch_attachment` reads BODYSTRUCTURE (and BINARY.SIZE) first and refuses with
:class:`AttachmentTooLarge` before downloading anything over ``max_bytes``.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from mail import mime
from mail.html2text import html_to_text, tidy_text, unflow
from mail.importer import COMMAND_TIMEOUT, parse_fetch, run_command
from mail.netguard import require_ok
from mail.structure import Part, as_count, as_text, parse_structure, plan_letter

HEADER_FIELDS = "DATE FROM TO CC SUBJECT CONTENT-TYPE"
TINY_PLAIN_BYTES = 256  # a plain alternative this small may be a "view it in HTML" stub
MAX_FILENAME_CHARS = 180
_SECTION = re.compile(r"[1-9][0-9]{0,3}(?:\.[1-9][0-9]{0,3}){0,30}")


# --------------------------------------------------------------------------- public types
@dataclass
class AttachmentInfo:
    part: str  # IMAP section, e.g. "2" or "1.2"
    filename: str
    content_type: str
    size: int  # decoded size if known, else encoded size * 3/4 (base64) or encoded size


@dataclass
class FullLetter:
    uid: int
    from_name: str
    from_addr: str
    to: str
    cc: str
    date: datetime | None
    subject: str
    text: str
    attachments: list[AttachmentInfo] = field(default_factory=list)
    truncated: bool = False  # the text was cut at max_text_bytes


class AttachmentGone(Exception):
    """The letter or that part of it no longer exists."""


class AttachmentTooLarge(Exception):
    """The attachment is larger than allowed; nothing (or nothing more) was downloaded."""

    def __init__(self, info: AttachmentInfo) -> None:
        super().__init__(f"attachment {info.filename!r} is {info.size} bytes")
        self.info = info


def _rfc2231(params: dict[str, str], name: str) -> str | None:
    """A parameter value, RFC 2231 (``name*``, ``name*0*``...) or plain (maybe RFC 2047)."""
    if name + "*" in params:
        return _decode_extended(params[name + "*"], encoded=True)
    pieces: list[tuple[int, str, bool]] = []
    for key, value in params.items():
        m = re.fullmatch(re.escape(name) + r"\*(\d{1,3})(\*?)", key)
        if m:
            pieces.append((int(m.group(1)), value, bool(m.group(2))))
    if pieces:
        pieces.sort()
        charset = "utf-8"
        data = b""
        for n, value, encoded in pieces:
            if encoded:
                if n == 0 and value.count("'") >= 2:
                    charset, _, value = value.split("'", 2)
                data += unquote_to_bytes(value)
            else:
                data += value.encode("utf-8", "replace")
        return mime.decode_text(data, charset or "utf-8")
    if name in params:
        return mime.header_text(params[name], limit=1000)
    return None


def _decode_extended(value: str, *, encoded: bool) -> str:
    charset = "utf-8"
    if encoded and value.count("'") >= 2:
        charset, _, value = value.split("'", 2)
    return mime.decode_text(unquote_to_bytes(value), charset or "utf-8")


def _filename(node: Part) -> str:
    raw = _rfc2231(node.dparams, "filename") or _rfc2231(node.params, "name") or ""
    name = mime.clean_line(mime.decode_words(raw) if "=?" in raw else raw, 1000)
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        if node.mtype == "message" and node.subtype in ("rfc822", "global"):
            base = node.envelope_subject.replace("/", "_").replace("\\", "_").strip() or "message"
            return mime.truncate(base, 60) + ".eml"
        ext = mimetypes.guess_extension(node.ctype, strict=False) or ".bin"
        return f"part-{node.section}{ext}"
    if len(name) > MAX_FILENAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            name = stem[: MAX_FILENAME_CHARS - len(ext) - 2] + "…." + ext
        else:
            name = name[: MAX_FILENAME_CHARS - 1] + "…"
    return name


def _estimated_size(node: Part, exact: int | None = None) -> int:
    if exact:
        return exact
    declared = as_count(node.dparams.get("size"))
    if declared:
        return declared
    if node.encoding == "base64":
        return node.size * 3 // 4
    return node.size


def _info(node: Part, exact: int | None = None) -> AttachmentInfo:
    return AttachmentInfo(node.section, _filename(node), node.ctype, _estimated_size(node, exact))


def _body(raw: bytes, node: Part) -> str:
    data = mime.decode_transfer(raw, node.encoding)
    text = mime.decode_text(data, node.params.get("charset"))
    if node.subtype == "html":
        return html_to_text(text)
    if node.params.get("format", "").lower() == "flowed":
        text = unflow(text, delsp=node.params.get("delsp", "").lower() == "yes")
    return tidy_text(text)


def _decoded_estimate(node: Part) -> int:
    return node.size * 3 // 4 if node.encoding == "base64" else node.size


def _budget(node: Part, text_bytes: int) -> int:
    """Encoded bytes to fetch for about ``text_bytes`` of decoded text."""
    if node.encoding == "base64":
        return text_bytes * 4 // 3 + text_bytes // 38 + 4
    if node.encoding == "quoted-printable":
        return text_bytes * 3
    return text_bytes


# --------------------------------------------------------------------------- IMAP plumbing


async def _open_mailbox(client: Any, mailbox: str | None, *, writable: bool) -> None:
    """SELECT the mailbox. Always SELECT, never EXAMINE: aioimaplib only enters its SELECTED
    state on select(), and refuses UID commands after examine(). Flags stay untouched anyway
    where the fetch uses BODY.PEEK (`writable` only documents the caller's intent)."""
    del writable
    if mailbox is None:
        return
    name = '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
    response = await run_command(client, client.select(name))
    require_ok(response, f"SELECT {mailbox}")


def _records(response: Any, uid: int) -> list[dict[str, Any]]:
    return [r for r in parse_fetch(response.lines) if as_count(r.get("UID")) == uid]


def _binary(client: Any) -> bool:
    caps = getattr(getattr(client, "protocol", None), "capabilities", None) or set()
    return "BINARY" in caps


async def _fetch_items(
    client: Any,
    uid: int,
    items: list[str],
    optional: list[str],
    timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
) -> Any:
    """UID FETCH; if the server refuses, once more without the ``optional`` items."""
    every = " ".join(items + optional)
    response = await run_command(client, client.uid("fetch", str(uid), f"({every})"), timeout)
    if getattr(response, "result", None) != "OK" and optional:
        only = " ".join(items)
        response = await run_command(client, client.uid("fetch", str(uid), f"({only})"), timeout)
    require_ok(response, "FETCH")
    return response


# --------------------------------------------------------------------------- public API
async def fetch_letter(
    client: Any,
    uid: int,
    *,
    max_text_bytes: int = 256_000,
    mark_seen: bool = True,
    mailbox: str | None = "INBOX",
) -> FullLetter | None:
    """The letter with that UID, or None if it is gone. ``mailbox=None``: the client already
    has the right mailbox selected. Raises MailCheckError only for IMAP failures."""
    uid = int(uid)
    await _open_mailbox(client, mailbox, writable=mark_seen)
    header = "BODY" if mark_seen else "BODY.PEEK"
    response = await _fetch_items(
        client,
        uid,
        [f"UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE {header}[HEADER.FIELDS ({HEADER_FIELDS})]"],
        [],
    )
    records = _records(response, uid)
    if not records:
        return None
    record: dict[str, Any] = {}
    for item in records:
        record.update(item)
    tree = parse_structure(record.get("BODYSTRUCTURE"))
    units, attachment_nodes = plan_letter(tree)

    header_bytes = b""
    for key, value in record.items():
        if key.startswith("BODY[HEADER") and isinstance(value, bytes | bytearray):
            header_bytes = bytes(value)
    hint = units[0][0].params.get("charset") if units else None
    headers = mime.parse_headers(mime.decode_text(header_bytes, hint).encode("utf-8"))
    hint = hint or mime.content_type_charset(headers.get("content-type"))
    from_name, from_addr = mime.parse_address(headers.get("from"), hint)
    letter = FullLetter(
        uid=uid,
        from_name=from_name,
        from_addr=from_addr,
        to=mime.format_addresses(headers.get("to"), hint),
        cc=mime.format_addresses(headers.get("cc"), hint),
        date=mime.parse_date(headers.get("date"))
        or mime.parse_internaldate(as_text(record.get("INTERNALDATE"))),
        subject=mime.header_text(headers.get("subject"), hint),
        text="",
    )

    # one command for the text part(s) and the exact sizes of encoded attachments
    items: list[str] = []
    left = max(0, max_text_bytes)  # decoded bytes of text still wanted
    for unit in units:
        for i, node in enumerate(unit):
            if i > 0 and unit[0].size > TINY_PLAIN_BYTES:
                break  # the fallback is only fetched beside a near-empty plain part
            if not node.size:
                continue  # an empty part: nothing to fetch
            want = min(left, _decoded_estimate(node))
            budget = min(node.size, _budget(node, want))
            if budget < node.size:
                letter.truncated = True
            if budget <= 0:
                continue
            items.append(f"BODY.PEEK[{node.section}]<0.{budget}>")
            if i == 0:
                left -= want
    sized = [n for n in attachment_nodes if n.encoding in ("base64", "quoted-printable") and n.size]
    optional = [f"BINARY.SIZE[{n.section}]" for n in sized] if _binary(client) else []
    exact: dict[str, int] = {}
    bodies: dict[str, bytes] = {}
    if items or optional:
        response = await _fetch_items(client, uid, ["UID", *items], optional)
        for item in _records(response, uid):
            for key, value in item.items():
                if key.startswith("BINARY.SIZE["):
                    exact[key[12:-1]] = as_count(value)
                elif key.startswith("BODY[") and isinstance(value, bytes | bytearray):
                    bodies[key[5:-1]] = bytes(value)

    texts: list[str] = []
    for unit in units:
        for node in unit:
            raw = bodies.get(node.section)
            if raw is None:
                continue
            try:
                text = _body(raw, node)
            except Exception:  # noqa: BLE001 - a broken part only loses its text
                text = ""
            if text.strip():
                texts.append(text)
                break
    letter.text = tidy_text("\n\n".join(texts))
    letter.attachments = [_info(n, exact.get(n.section)) for n in attachment_nodes]
    return letter


async def fetch_attachment(
    client: Any,
    uid: int,
    part: str,
    *,
    max_bytes: int,
    mailbox: str | None = "INBOX",
) -> tuple[AttachmentInfo, bytes]:
    """The decoded content of one part. AttachmentTooLarge (nothing downloaded) when its size
    is over ``max_bytes``; AttachmentGone when the letter or the part doesn't exist."""
    uid = int(uid)
    part = str(part)
    if not _SECTION.fullmatch(part):  # comes from a button: never trust it into a command
        raise AttachmentGone(part)
    await _open_mailbox(client, mailbox, writable=False)
    optional = [f"BINARY.SIZE[{part}]"] if _binary(client) else []
    response = await _fetch_items(client, uid, ["UID BODYSTRUCTURE"], optional)
    record: dict[str, Any] = {}
    for item in _records(response, uid):
        record.update(item)
    if not record:
        raise AttachmentGone(f"{uid}/{part}")
    tree = parse_structure(record.get("BODYSTRUCTURE"))
    node = tree.find(part) if tree is not None else None
    if node is None or node.multipart:
        raise AttachmentGone(f"{uid}/{part}")
    exact = as_count(record.get(f"BINARY.SIZE[{part}]")) or None
    if node.encoding not in ("base64", "quoted-printable"):
        exact = node.size  # identity encodings: the encoded size is the size
    info = _info(node, exact)
    if info.size > max_bytes:
        raise AttachmentTooLarge(info)
    timeout = COMMAND_TIMEOUT + node.size / 500_000  # allow ~0.5 MB/s
    response = await _fetch_items(client, uid, [f"UID BODY.PEEK[{part}]"], [], timeout)
    raw: bytes | None = None
    for item in _records(response, uid):
        value = item.get(f"BODY[{part}]")
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
    if raw is None:
        raise AttachmentGone(f"{uid}/{part}")
    data = mime.decode_transfer(raw, node.encoding)
    info.size = len(data)
    if len(data) > max_bytes:
        raise AttachmentTooLarge(info)
    return info, data
