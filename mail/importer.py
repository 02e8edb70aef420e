"""Import the latest letters of INBOX in a bounded number of IMAP commands.

Round trips (commands sent), whatever the number of letters:

1. ``SELECT INBOX``: UIDVALIDITY, UIDNEXT, EXISTS.
2. ``FETCH n-limit+1:n (UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS
   (...)])``: headers, size and structure of every letter in one command.
3. From each BODYSTRUCTURE the best readable part is chosen (text/plain before text/html,
   attachments skipped). Letters are grouped by that part's section ("1", "1.1", ...) and
   the two largest groups get one ``UID FETCH <uids> (BODY.PEEK[<section>]<0.N>)`` each.
4. Letters of any other group share one ``UID FETCH <uids> (BODY.PEEK[TEXT]<0.N>)``; the
   text part is then found in that raw prefix.

So an import costs 2 commands for an empty INBOX, usually 3-4, never more than 5.
Nothing here raises on odd letters: headers, charsets and bodies degrade to best effort.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mail import mime
from mail.codes import MAX_TEXT as CODE_TEXT_CHARS
from mail.codes import find_code
from mail.netguard import as_mail_error, require_ok
from mail.structure import Structure, TextPart, analyse_structure
from mail.types import FailureKind, ImportResult, LetterSummary, MailCheckError, Protocol

log = logging.getLogger(__name__)

HEADER_FIELDS = "DATE FROM TO SUBJECT MESSAGE-ID CONTENT-TYPE CONTENT-TRANSFER-ENCODING"
PLAIN_BYTES = 4096
HTML_BYTES = 16384
PREFIX_BYTES = 8192
MAX_SECTION_COMMANDS = 2
COMMAND_TIMEOUT = 30.0


# --------------------------------------------------------------------------- IMAP parsing
class ParseError(ValueError):
    pass


class _Reader:
    """Tokenizer for IMAP response data (atoms, quoted strings, literals, lists, NIL)."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _skip_spaces(self) -> None:
        while self.pos < len(self.data) and self.data[self.pos] in b" \t":
            self.pos += 1

    def peek(self) -> int | None:
        self._skip_spaces()
        return self.data[self.pos] if self.pos < len(self.data) else None

    def value(self, depth: int = 0) -> Any:
        if depth > 60:
            raise ParseError("nesting too deep")
        c = self.peek()
        if c is None:
            raise ParseError("unexpected end")
        if c == 0x28:  # (
            self.pos += 1
            items: list[Any] = []
            while True:
                c = self.peek()
                if c is None:
                    raise ParseError("unterminated list")
                if c == 0x29:  # )
                    self.pos += 1
                    return items
                if c in b"\r\n":
                    raise ParseError("line break in list")
                items.append(self.value(depth + 1))
        if c == 0x22:  # "
            return self._quoted()
        if c == 0x7B:  # {
            return self._literal()
        return self._atom()

    def _quoted(self) -> bytes:
        self.pos += 1
        out = bytearray()
        data = self.data
        while self.pos < len(data):
            ch = data[self.pos]
            if ch == 0x5C and self.pos + 1 < len(data):  # backslash
                out.append(data[self.pos + 1])
                self.pos += 2
                continue
            if ch == 0x22:
                self.pos += 1
                return bytes(out)
            if ch in b"\r\n":
                break
            out.append(ch)
            self.pos += 1
        raise ParseError("unterminated quoted string")

    def _literal(self) -> bytes:
        m = re.compile(rb"\{(\d+)\+?\}\r\n").match(self.data, self.pos)
        if not m:
            raise ParseError("bad literal")
        size = int(m.group(1))
        start = m.end()
        if start + size > len(self.data):
            raise ParseError("short literal")
        self.pos = start + size
        return self.data[start : start + size]

    def _atom(self) -> Any:
        data = self.data
        start = self.pos
        depth = 0
        while self.pos < len(data):
            ch = data[self.pos]
            if ch == 0x5B:  # [  (BODY[HEADER.FIELDS (A B)]<0>)
                depth += 1
            elif ch == 0x5D:
                depth -= 1
            elif depth <= 0 and ch in b" ()\r\n":
                break
            elif depth > 0 and ch in b"\r\n":
                break
            self.pos += 1
        atom = data[start : self.pos]
        if not atom:
            raise ParseError(f"unexpected byte {data[start : start + 1]!r}")
        if atom.upper() == b"NIL":
            return None
        return atom


_FETCH_START = re.compile(rb"(?:^|\r\n)(?:\* )?(\d+) FETCH ", re.IGNORECASE)


def stream_of(lines: list[Any]) -> bytes:
    """Rebuild the raw response from aioimaplib's lines: text lines (bytes) lost their CRLF,
    literals (bytearray) follow the line that announced them. The last line is the tagged
    status text and is dropped."""
    parts: list[bytes] = []
    for item in lines[:-1]:
        if isinstance(item, bytearray):
            parts.append(bytes(item))
        elif isinstance(item, bytes):
            parts.append(item + b"\r\n")
    return b"".join(parts)


def parse_fetch(lines: list[Any]) -> list[dict[str, Any]]:
    """`N FETCH (...)` responses as dicts of upper-case item name -> value."""
    data = stream_of(lines)
    out: list[dict[str, Any]] = []
    pos = 0
    while True:
        m = _FETCH_START.search(data, pos)
        if not m:
            break
        reader = _Reader(data, m.end())
        try:
            items = reader.value()
            if not isinstance(items, list):
                raise ParseError("FETCH data is not a list")
        except ParseError as exc:
            log.info("unparsable FETCH response skipped: %s", exc)
            pos = m.end()
            continue
        record: dict[str, Any] = {"SEQ": int(m.group(1))}
        for i in range(0, len(items) - 1, 2):
            key = items[i]
            if isinstance(key, bytes):
                record[_item_name(key)] = items[i + 1]
        out.append(record)
        pos = reader.pos
    return out


def _item_name(key: bytes) -> str:
    name = key.decode("ascii", "replace").upper()
    name = re.sub(r"<\d+>$", "", name)  # BODY[1]<0> -> BODY[1]
    return name.replace("BODY.PEEK[", "BODY[")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- letters
@dataclass(slots=True)
class _Pending:
    uid: int
    summary: LetterSummary
    content_type: str
    cte: str
    structure: Structure
    part: TextPart | None


def _summary(record: dict[str, Any]) -> _Pending | None:
    uid = _int(record.get("UID"))
    if uid is None:
        return None
    header_bytes = b""
    for key, value in record.items():
        if key.startswith("BODY[HEADER") and isinstance(value, bytes | bytearray):
            header_bytes = bytes(value)
            break
    headers = mime.parse_headers(header_bytes)
    content_type = headers.get("content-type", "")
    charset = mime.content_type_charset(content_type)
    from_name, from_addr = mime.parse_address(headers.get("from"), charset)
    date = mime.parse_date(headers.get("date")) or mime.parse_internaldate(
        _str(record.get("INTERNALDATE"))
    )
    message_id = mime.clean_line(headers.get("message-id", ""), mime.MAX_HEADER_CHARS) or None
    structure = analyse_structure(record.get("BODYSTRUCTURE"))
    summary = LetterSummary(
        uid=uid,
        message_id=message_id,
        from_name=from_name,
        from_addr=from_addr,
        to=mime.format_addresses(headers.get("to"), charset),
        subject=mime.header_text(headers.get("subject"), charset),
        date=date,
        snippet="",
        has_attachments=structure.has_attachments,
        size=_int(record.get("RFC822.SIZE")) or 0,
    )
    return _Pending(
        uid,
        summary,
        content_type,
        headers.get("content-transfer-encoding", ""),
        structure,
        structure.best(),
    )


def _uid_set(uids: list[int]) -> str:
    """Compact UID set: 1,2,3,7 -> 1:3,7."""
    out: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(out)


def _text_from_prefix(p: _Pending, prefix: bytes) -> str:
    """Find the first readable text part in a raw body prefix (headers from the FETCH)."""
    head = f"Content-Type: {p.content_type or 'text/plain'}\r\n"
    if p.cte:
        head += f"Content-Transfer-Encoding: {p.cte}\r\n"
    msg = email.message_from_bytes(head.encode("utf-8", "replace") + b"\r\n" + prefix)
    best: email.message.Message | None = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if part.get_content_disposition() == "attachment":
            continue
        if ctype == "text/plain":
            best = part
            break
        if ctype == "text/html" and best is None:
            best = part
    if best is None:
        return ""
    payload = best.get_payload(decode=False)
    raw = payload.encode("latin-1", "replace") if isinstance(payload, str) else b""
    return mime.body_text(
        raw,
        subtype=best.get_content_subtype(),
        charset=best.get_content_charset(),
        encoding=str(best.get("Content-Transfer-Encoding", "")),
        html_chars=CODE_TEXT_CHARS,
    )


def _use_text(p: _Pending, text: str) -> None:
    """The snippet, and a one-time code in the subject or the first part of the text."""
    p.summary.snippet = mime.make_snippet(text)
    p.summary.code = find_code(p.summary.subject, text)


# --------------------------------------------------------------------------- SELECT
_NUM = {
    "uidvalidity": re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE),
    "uidnext": re.compile(rb"\[UIDNEXT (\d+)\]", re.IGNORECASE),
    "exists": re.compile(rb"^(?:\* )?(\d+) EXISTS", re.IGNORECASE),
}


def parse_select(lines: list[Any]) -> dict[str, int | None]:
    out: dict[str, int | None] = dict.fromkeys(_NUM)
    for line in lines:
        if not isinstance(line, bytes | bytearray):
            continue
        for key, rx in _NUM.items():
            m = rx.search(bytes(line))
            if m and out[key] is None:
                out[key] = int(m.group(1))
    return out


# --------------------------------------------------------------------------- import
class _Counter:
    def __init__(self, client: Any, timeout: float = COMMAND_TIMEOUT) -> None:  # noqa: ASYNC109
        self.client = client
        self.timeout = timeout
        self.sent = 0

    async def run(self, coro: Any) -> Any:
        self.sent += 1
        return await run_command(self.client, coro, self.timeout)


async def run_command(client: Any, coro: Any, timeout: float = COMMAND_TIMEOUT) -> Any:  # noqa: ASYNC109
    """One IMAP command within `timeout`; fails fast with the server's BYE text (or
    "connection lost") when the connection drops, instead of waiting out the timeout."""
    wire = getattr(client, "wire", None)
    lost = getattr(wire, "lost", None)
    task = asyncio.ensure_future(coro)
    try:
        async with asyncio.timeout(timeout):
            if lost is None:
                return await task
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                raise MailCheckError(
                    Protocol.IMAP,
                    FailureKind.PROTOCOL,
                    getattr(wire, "bye", "") or "connection lost",
                )
            return task.result()
    except MailCheckError:
        raise
    except Exception as exc:
        raise as_mail_error(Protocol.IMAP, exc) from None
    finally:
        if not task.done():
            task.cancel()

_SUMMARY_ITEMS = (
    f"(UID RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"
)


async def _fetch_summaries(
    counter: _Counter, client: Any, message_set: str, *, by_uid: bool
) -> dict[int, _Pending]:
    """One FETCH of headers, size and structure for a sequence set or (by_uid) a UID set."""
    if by_uid:
        response = await counter.run(client.uid("fetch", message_set, _SUMMARY_ITEMS))
    else:
        response = await counter.run(client.fetch(message_set, _SUMMARY_ITEMS))
    require_ok(response, "FETCH")
    pending: dict[int, _Pending] = {}
    for record in parse_fetch(response.lines):
        try:
            p = _summary(record)
        except Exception as exc:  # noqa: BLE001 - one odd letter must not stop the import
            log.info("letter skipped while importing: %s", exc)
            continue
        if p is not None and p.uid not in pending:
            pending[p.uid] = p
    return pending


async def _fill_snippets(counter: _Counter, client: Any, pending: dict[int, _Pending]) -> None:
    """Bodies: one command per frequent section, one shared raw-prefix command for the rest."""
    groups: dict[str, list[_Pending]] = {}
    for item in pending.values():
        item.summary.code = find_code(item.summary.subject, "")  # the text, when fetched, decides below
        if item.part is not None:
            groups.setdefault(item.part.section, []).append(item)
    ranked = [s for s, _ in Counter({s: len(g) for s, g in groups.items()}).most_common()]
    rest: list[_Pending] = []
    for rank, section in enumerate(ranked):
        group = groups[section]
        if rank >= MAX_SECTION_COMMANDS:
            rest.extend(group)
            continue
        size = (
            HTML_BYTES if any(p.part and p.part.subtype == "html" for p in group) else PLAIN_BYTES
        )
        response = await counter.run(
            client.uid(
                "fetch", _uid_set([p.uid for p in group]), f"(UID BODY.PEEK[{section}]<0.{size}>)"
            )
        )
        if getattr(response, "result", None) != "OK":
            rest.extend(group)
            continue
        for record in parse_fetch(response.lines):
            p = pending.get(_int(record.get("UID")) or -1)
            body = record.get(f"BODY[{section}]")
            if p is None or p.part is None or not isinstance(body, bytes | bytearray):
                continue
            try:
                text = mime.body_text(
                    bytes(body),
                    subtype=p.part.subtype,
                    charset=p.part.charset,
                    encoding=p.part.encoding,
                    html_chars=CODE_TEXT_CHARS,
                )
                _use_text(p, text)
            except Exception as exc:  # noqa: BLE001
                log.info("snippet failed for uid %s: %s", p.uid, exc)
    if rest:
        response = await counter.run(
            client.uid(
                "fetch", _uid_set([p.uid for p in rest]), f"(UID BODY.PEEK[TEXT]<0.{PREFIX_BYTES}>)"
            )
        )
        if getattr(response, "result", None) == "OK":
            for record in parse_fetch(response.lines):
                p = pending.get(_int(record.get("UID")) or -1)
                body = record.get("BODY[TEXT]")
                if p is None or not isinstance(body, bytes | bytearray):
                    continue
                try:
                    _use_text(p, _text_from_prefix(p, bytes(body)))
                except Exception as exc:  # noqa: BLE001
                    log.info("snippet failed for uid %s: %s", p.uid, exc)


async def _latest(counter: _Counter, client: Any, exists: int, limit: int) -> list[LetterSummary]:
    if exists <= 0 or limit <= 0:
        return []
    first = max(1, exists - limit + 1)
    pending = await _fetch_summaries(counter, client, f"{first}:{exists}", by_uid=False)
    await _fill_snippets(counter, client, pending)
    return sorted((p.summary for p in pending.values()), key=lambda s: s.uid, reverse=True)


async def import_recent(client: Any, limit: int = 50) -> ImportResult:
    """The newest `limit` letters of INBOX (newest first) on a logged-in aioimaplib client."""
    counter = _Counter(client)
    response = await counter.run(client.select("INBOX"))
    require_ok(response, "SELECT INBOX")
    info = parse_select(response.lines)
    uidvalidity = info["uidvalidity"] or 0
    uidnext = info["uidnext"]
    exists = info["exists"] or 0
    result = ImportResult(
        uidvalidity=uidvalidity,
        uidnext=uidnext,
        highest_uid=max(0, (uidnext or 1) - 1),
    )
    letters = await _latest(counter, client, exists, limit)
    result.letters = letters
    if letters:
        result.highest_uid = max(result.highest_uid, letters[0].uid)
    result.round_trips = counter.sent
    return result


# --------------------------------------------------------------------------- watching
@dataclass(slots=True)
class NewLetters:
    """One round of `fetch_new`."""

    letters: list[LetterSummary]  # oldest first; letters that vanished meanwhile are missing
    highest_uid: int  # the highest UID looked at: the next round's `after_uid`
    more: bool  # more than `limit` new letters were waiting: call again
    round_trips: int = 0


def parse_search(lines: list[Any]) -> list[int]:
    """UIDs (or sequence numbers) of `* SEARCH n n n` responses as aioimaplib keeps them
    (text after "SEARCH "; the last line is the tagged status text)."""
    out: list[int] = []
    for line in lines[:-1]:
        if not isinstance(line, bytes | bytearray):
            continue
        tokens = bytes(line).split()
        if tokens and tokens[0].upper() == b"SEARCH":
            tokens = tokens[1:]
        if tokens and all(t.isdigit() for t in tokens):
            out.extend(int(t) for t in tokens)
    return out


async def fetch_new(
    client: Any,
    after_uid: int,
    limit: int = 500,
    *,
    timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
) -> NewLetters:
    """Letters of the SELECTed mailbox with UID > after_uid: at most `limit`, oldest first.

    Round trips: ``UID SEARCH UID <after+1>:*`` (1 command when nothing is new), then the
    same header and body commands as `import_recent` for the chosen UIDs (usually 3-4 in all,
    never more than 5). The UIDs are chosen from the low end, so a large backlog is worked
    off in order by calling again while `more` is true, with `highest_uid` as the new
    `after_uid`. Each command is limited to `timeout` seconds and fails fast if the
    connection drops (MailCheckError).
    """
    counter = _Counter(client, timeout)
    after_uid = max(0, after_uid)
    response = await counter.run(
        client.uid_search("UID", f"{after_uid + 1}:*", charset=None)
    )
    require_ok(response, "UID SEARCH")
    # "n:*" with n above the highest UID still matches the last letter: filter
    uids = sorted({u for u in parse_search(response.lines) if u > after_uid})
    if limit <= 0 or not uids:
        return NewLetters([], after_uid, bool(uids), counter.sent)
    chosen = uids[:limit]
    pending = await _fetch_summaries(counter, client, _uid_set(chosen), by_uid=True)
    # a FETCH by UID may return letters the set didn't name (servers answer the "*" case
    # loosely): keep exactly the chosen ones
    wanted = set(chosen)
    pending = {uid: p for uid, p in pending.items() if uid in wanted}
    await _fill_snippets(counter, client, pending)
    letters = sorted((p.summary for p in pending.values()), key=lambda s: s.uid)
    return NewLetters(letters, chosen[-1], len(uids) > limit, counter.sent)


async def fetch_latest(
    client: Any,
    exists: int,
    limit: int = 50,
    *,
    timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
) -> list[LetterSummary]:
    """The newest `limit` of the `exists` letters of the SELECTed mailbox, newest first
    (`import_recent` without its SELECT: the caller already has SELECT's EXISTS)."""
    return await _latest(_Counter(client, timeout), client, exists, limit)


async def fetch_uids(
    client: Any,
    uids: list[int],
    *,
    timeout: float = COMMAND_TIMEOUT,  # noqa: ASYNC109
) -> list[LetterSummary]:
    """Headers and snippets of the given UIDs of the SELECTed mailbox (the same commands as
    `import_recent`: at most 4), in the order of `uids`; letters gone meanwhile are missing."""
    if not uids:
        return []
    counter = _Counter(client, timeout)
    pending = await _fetch_summaries(counter, client, _uid_set(uids), by_uid=True)
    wanted = set(uids)
    pending = {uid: p for uid, p in pending.items() if uid in wanted}
    await _fill_snippets(counter, client, pending)
    return [pending[uid].summary for uid in uids if uid in pending]
