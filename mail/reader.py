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
multipart/related the root part; in multipart/mixed every inline text part, in order.
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
from mail.types import FailureKind, MailCheckError, Protocol

HEADER_FIELDS = "DATE FROM TO CC SUBJECT CONTENT-TYPE"
MAX_TEXT_PARTS = 8
TINY_PLAIN_BYTES = 256  # a plain alternative this small may be a "view it in HTML" stub
MAX_DEPTH = 40
MAX_FILENAME_CHARS = 180
_SECTION = re.compile(r"[1-9][0-9]{0,3}(?:\.[1-9][0-9]{0,3}){0,30}")
_SIGNATURES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)


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


# --------------------------------------------------------------------------- BODYSTRUCTURE
@dataclass
class _Node:
    section: str  # "" for the top-level multipart
    mtype: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    content_id: str = ""
    encoding: str = ""
    size: int = 0  # encoded octets
    disposition: str = ""
    dparams: dict[str, str] = field(default_factory=dict)
    children: list[_Node] = field(default_factory=list)
    envelope_subject: str = ""

    @property
    def ctype(self) -> str:
        return f"{self.mtype}/{self.subtype}"

    @property
    def multipart(self) -> bool:
        return self.mtype == "multipart"

    def leaves(self) -> list[_Node]:
        if not self.multipart:
            return [self]
        return [leaf for child in self.children for leaf in child.leaves()]

    def find(self, section: str) -> _Node | None:
        if self.section == section or (not self.multipart and not self.section and section == "1"):
            return self
        for child in self.children:
            if section == child.section or section.startswith(child.section + "."):
                return child.find(section)
        return None


def _s(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return mime.raw_header_str(bytes(value))
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _plist(value: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(value, list):
        for i in range(0, len(value) - 1, 2):
            key = _s(value[i]).strip().lower()
            if key and key not in out:
                out[key] = _s(value[i + 1])
    return out


def parse_structure(bs: Any, section: str = "", depth: int = 0) -> _Node | None:
    """A BODYSTRUCTURE (as parsed by mail.importer.parse_fetch) to a tree; None if unusable."""
    if not isinstance(bs, list) or not bs or depth > MAX_DEPTH:
        return None
    if isinstance(bs[0], list):  # multipart: parts..., subtype, [params, disposition, ...]
        node = _Node(section, "multipart", "mixed")
        idx = 0
        for item in bs:
            if not isinstance(item, list):
                break
            idx += 1
            child = parse_structure(item, f"{section}.{idx}" if section else str(idx), depth + 1)
            if child is not None:
                node.children.append(child)
        rest = bs[idx:]
        if rest and not isinstance(rest[0], list):
            node.subtype = _s(rest[0]).lower() or "mixed"
        if len(rest) > 1:
            node.params = _plist(rest[1])
        if len(rest) > 2 and isinstance(rest[2], list) and rest[2]:
            node.disposition = _s(rest[2][0]).lower()
        return node
    node = _Node(
        section or "1",
        _s(bs[0]).lower() or "application",
        _s(bs[1]).lower() if len(bs) > 1 else "octet-stream",
    )
    node.params = _plist(bs[2]) if len(bs) > 2 else {}
    node.content_id = _s(bs[3]).strip().strip("<>") if len(bs) > 3 else ""
    node.encoding = _s(bs[5]).strip().lower() if len(bs) > 5 else ""
    node.size = _int(bs[6]) if len(bs) > 6 else 0
    basic = 7
    if node.mtype == "text":
        basic = 8
    elif node.mtype == "message" and node.subtype in ("rfc822", "global"):
        basic = 10
        envelope = bs[7] if len(bs) > 7 else None
        if isinstance(envelope, list) and len(envelope) > 1:
            node.envelope_subject = mime.header_text(_s(envelope[1]), limit=80)
    ext = bs[basic:]
    if len(ext) > 1 and isinstance(ext[1], list) and ext[1]:
        node.disposition = _s(ext[1][0]).strip().lower()
        node.dparams = _plist(ext[1][1]) if len(ext[1]) > 1 else {}
    return node


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
        return _decode_text(data, charset or "utf-8")
    if name in params:
        return mime.header_text(params[name], limit=1000)
    return None


def _decode_extended(value: str, *, encoded: bool) -> str:
    charset = "utf-8"
    if encoded and value.count("'") >= 2:
        charset, _, value = value.split("'", 2)
    return _decode_text(unquote_to_bytes(value), charset or "utf-8")


def _filename(node: _Node) -> str:
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


def _estimated_size(node: _Node, exact: int | None = None) -> int:
    if exact:
        return exact
    declared = _int(node.dparams.get("size"))
    if declared:
        return declared
    if node.encoding == "base64":
        return node.size * 3 // 4
    return node.size


def _info(node: _Node, exact: int | None = None) -> AttachmentInfo:
    return AttachmentInfo(node.section, _filename(node), node.ctype, _estimated_size(node, exact))


# --------------------------------------------------------------------------- what to show
def _is_body_text(node: _Node) -> bool:
    if node.multipart or node.mtype != "text" or node.subtype not in ("plain", "html"):
        return False
    if node.disposition == "attachment":
        return False
    has_name = bool(node.dparams.get("filename") or node.dparams.get("filename*")) or bool(
        node.params.get("name") or node.params.get("name*")
    )
    return not (has_name and node.disposition != "inline")


@dataclass
class _Plan:
    units: list[list[_Node]] = field(default_factory=list)  # candidates, best first
    attachments: list[_Node] = field(default_factory=list)


def _flavour(node: _Node) -> str | None:
    """'plain' if the subtree shows plain text, 'html' if only HTML, None if neither."""
    probe = _Plan()
    _collect(node, probe)
    kinds = {n.subtype for unit in probe.units for n in unit[:1]}
    if "plain" in kinds:
        return "plain"
    return "html" if "html" in kinds else None


def _first_html(node: _Node) -> _Node | None:
    if not node.multipart:
        return node if _is_body_text(node) and node.subtype == "html" else None
    if node.subtype == "related" and node.children:
        return _first_html(node.children[0])
    for child in node.children:
        found = _first_html(child)
        if found is not None:
            return found
    return None


def _only_attachments(node: _Node, plan: _Plan) -> None:
    """Parts of a subtree that is not shown: only what was explicitly attached."""
    for leaf in node.leaves():
        if leaf.disposition == "attachment":
            plan.attachments.append(leaf)


def _collect(node: _Node, plan: _Plan) -> None:
    if not node.multipart:
        if _is_body_text(node):
            plan.units.append([node])
        else:
            plan.attachments.append(node)
        return
    kids = node.children
    if not kids:
        return
    if node.subtype == "alternative":
        flavours = [_flavour(kid) for kid in kids]
        chosen = next((i for i, f in enumerate(flavours) if f == "plain"), None)
        if chosen is None:
            chosen = next((i for i, f in enumerate(flavours) if f == "html"), None)
        for i, kid in enumerate(kids):
            if i == chosen:
                before = len(plan.units)
                _collect(kid, plan)
                unit = plan.units[before] if len(plan.units) > before else None
                if unit is not None and unit[0].subtype == "plain" and not kid.multipart:
                    html = next(
                        (h for k in kids if k is not kid and (h := _first_html(k)) is not None),
                        None,
                    )
                    if html is not None:
                        unit.append(html)  # used if the plain part turns out blank
            elif not kid.multipart and not (
                kid.mtype == "text" and kid.subtype in ("plain", "html")
            ):
                plan.attachments.append(kid)  # e.g. text/calendar beside the text
            else:
                _only_attachments(kid, plan)
        return
    if node.subtype == "related":
        start = node.params.get("start", "").strip().strip("<>")
        root = next((k for k in kids if start and k.content_id == start), kids[0])
        _collect(root, plan)
        for kid in kids:
            if kid is not root:
                _only_attachments(kid, plan)
        return
    if node.subtype in ("signed", "encrypted"):
        _collect(kids[0], plan)
        for kid in kids[1:]:
            if kid.ctype not in _SIGNATURES:
                _collect(kid, plan)
        return
    for kid in kids:  # mixed, report, digest, parallel, unknown
        _collect(kid, plan)


def plan_letter(tree: _Node | None) -> tuple[list[list[_Node]], list[_Node]]:
    """(text units, attachment leaves) of a BODYSTRUCTURE tree."""
    if tree is None:
        return [], []
    plan = _Plan()
    try:
        _collect(tree, plan)
    except RecursionError:  # pragma: no cover - MAX_DEPTH keeps trees shallow
        return [], []
    return plan.units[:MAX_TEXT_PARTS], plan.attachments


# --------------------------------------------------------------------------- charsets
_CYRILLIC_CODECS = frozenset({"cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866", "mac-cyrillic"})


def _single_byte(codec: str) -> bool:
    return (
        codec in _CYRILLIC_CODECS
        or codec.startswith(("iso8859-", "cp125", "latin", "mac-", "koi8", "cp4", "cp8"))
        or codec in ("ascii", "utf-8")
    )


def _case(text: str) -> tuple[int, int]:
    lower = upper = 0
    for ch in text:
        if "а" <= ch <= "я" or ch == "ё":
            lower += 1
        elif "А" <= ch <= "Я" or ch == "Ё":
            upper += 1
    return lower, upper


def _cyrillic_guess(data: bytes, prefer: str | None = None) -> str | None:
    """windows-1251 or koi8-r text, whichever reads like Russian (mostly lower-case letters),
    or None when neither looks Cyrillic."""
    best: tuple[int, str] | None = None
    for codec in dict.fromkeys(c for c in (prefer, "cp1251", "koi8-r") if c):
        text = data.decode(codec, "replace")
        lower, upper = _case(text)
        high = sum(1 for b in data if b >= 0x80)
        if lower + upper < max(1, high // 2) or lower < upper:
            continue
        score = lower - upper + (1 if codec == prefer else 0)
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best else None


def _decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part or header in the charset the bytes are really in. Never raises."""
    if not data:
        return ""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    codec = mime.lookup_charset(charset)
    if codec and not _single_byte(codec):  # utf-16, shift_jis, gb18030, ...: trust the label
        text = mime.strict_decode(data, codec)
        if text is not None:
            return text
    text = mime.strict_decode(data, "utf-8")
    if text is not None:
        return text
    if codec in _CYRILLIC_CODECS:
        return _cyrillic_guess(data, codec) or data.decode(codec, "replace")
    if codec and codec not in ("ascii", "utf-8"):
        declared = data.decode(codec, "replace")
        letters = [ch for ch in declared if ch.isalpha()]
        foreign = sum(1 for ch in letters if not ch.isascii())
        if foreign >= 4 and foreign * 2 > len(letters):  # Latin label on Cyrillic bytes?
            return _cyrillic_guess(data) or declared
        return declared
    return _cyrillic_guess(data) or data.decode("cp1252", "replace")


def _body(raw: bytes, node: _Node) -> str:
    data = mime.decode_transfer(raw, node.encoding)
    text = _decode_text(data, node.params.get("charset"))
    if node.subtype == "html":
        return html_to_text(text)
    if node.params.get("format", "").lower() == "flowed":
        text = unflow(text, delsp=node.params.get("delsp", "").lower() == "yes")
    return tidy_text(text)


def _decoded_estimate(node: _Node) -> int:
    return node.size * 3 // 4 if node.encoding == "base64" else node.size


def _budget(node: _Node, text_bytes: int) -> int:
    """Encoded bytes to fetch for about ``text_bytes`` of decoded text."""
    if node.encoding == "base64":
        return text_bytes * 4 // 3 + text_bytes // 38 + 4
    if node.encoding == "quoted-printable":
        return text_bytes * 3
    return text_bytes


# --------------------------------------------------------------------------- IMAP plumbing


def _status_text(response: Any) -> str:
    lines = [x for x in getattr(response, "lines", []) if isinstance(x, bytes | bytearray)]
    return bytes(lines[-1]).decode("utf-8", "replace")[:300] if lines else ""


def _ok(response: Any, what: str) -> None:
    if getattr(response, "result", None) != "OK":
        raise MailCheckError(
            Protocol.IMAP, FailureKind.PROTOCOL, f"{what}: {_status_text(response)}".strip()
        )


async def _open_mailbox(client: Any, mailbox: str | None, *, writable: bool) -> None:
    """SELECT the mailbox. Always SELECT, never EXAMINE: aioimaplib only enters its SELECTED
    state on select(), and refuses UID commands after examine(). Flags stay untouched anyway
    where the fetch uses BODY.PEEK (`writable` only documents the caller's intent)."""
    del writable
    if mailbox is None:
        return
    name = '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
    response = await run_command(client, client.select(name))
    _ok(response, f"SELECT {mailbox}")


def _records(response: Any, uid: int) -> list[dict[str, Any]]:
    return [r for r in parse_fetch(response.lines) if _int(r.get("UID")) == uid]


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
    _ok(response, "FETCH")
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
    headers = mime.parse_headers(_decode_text(header_bytes, hint).encode("utf-8"))
    hint = hint or mime.content_type_charset(headers.get("content-type"))
    from_name, from_addr = mime.parse_address(headers.get("from"), hint)
    letter = FullLetter(
        uid=uid,
        from_name=from_name,
        from_addr=from_addr,
        to=mime.format_addresses(headers.get("to"), hint),
        cc=mime.format_addresses(headers.get("cc"), hint),
        date=mime.parse_date(headers.get("date"))
        or mime.parse_internaldate(_s(record.get("INTERNALDATE"))),
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
                    exact[key[12:-1]] = _int(value)
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
    exact = _int(record.get(f"BINARY.SIZE[{part}]")) or None
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
