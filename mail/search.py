"""Searching INBOX on the server: the user's words as IMAP SEARCH criteria (no I/O in the
parsing), and the search itself on a logged-in client.

A query is words and "quoted phrases", each looked for in the sender, the subject and the text
(`OR OR FROM w SUBJECT w BODY w`); ``from:`` / ``от:`` and ``subject:`` / ``тема:`` narrow a
word or phrase to one field. All of them must match (IMAP's juxtaposition is AND).

The search is sent with ``CHARSET UTF-8`` (RFC 3501 6.4.4), so Cyrillic works; the words go
as quoted strings in UTF-8 (aioimaplib sends no literals in SEARCH; Dovecot, Gmail, Yandex and
Mail.ru take 8-bit quoted strings). A server that refuses the charset answers
``NO [BADCHARSET ...]`` (or BAD): an ASCII-only query is then sent again without CHARSET
(US-ASCII, which every server must take); for any other the caller is told
(`CharsetRefused`) and may search what it stores locally instead.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from mail.importer import parse_search, parse_select, run_command
from mail.netguard import require_ok
from mail.types import FailureKind, MailCheckError, Protocol

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_TERMS = 8
MAX_RESULTS = 100_000  # UIDs kept from one answer (a mailbox's whole INBOX, realistically)
_PREFIXES = {"from": "from", "от": "from", "subject": "subject", "тема": "subject"}
_TOKEN = re.compile(r'\s*(?:(?P<prefix>[^\s:"]+):)?(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"]+))')
_BADCHARSET = re.compile(rb"\[BADCHARSET\b", re.IGNORECASE)


class QueryError(ValueError):
    """The query can't be searched: `reason` is "empty", "too_long", "control" or "too_many"."""

    def __init__(self, reason: str, limit: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.limit = limit


class CharsetRefused(Exception):
    """The server refused CHARSET UTF-8 and the query is not ASCII."""


@dataclass(frozen=True, slots=True)
class Query:
    words: tuple[str, ...] = ()  # sender, subject or text
    senders: tuple[str, ...] = ()  # from:
    subjects: tuple[str, ...] = ()  # subject:

    @property
    def terms(self) -> tuple[str, ...]:
        return (*self.words, *self.senders, *self.subjects)

    @property
    def ascii(self) -> bool:
        return all(term.isascii() for term in self.terms)

    def text(self) -> str:
        """The query written back in its canonical form (what the user is shown)."""

        def show(term: str) -> str:
            return f'"{term}"' if " " in term or not term else term

        parts = [show(w) for w in self.words]
        parts += [f"from:{show(s)}" for s in self.senders]
        parts += [f"subject:{show(s)}" for s in self.subjects]
        return " ".join(parts)


def _control(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category == "Cc" or category == "Cs" or ch in "\u2028\u2029"


def parse_query(raw: str) -> Query:
    """Words, "phrases", from:/subject: (от:/тема:) prefixes. Raises QueryError."""
    text = raw.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    text = text.replace("“", '"').replace("”", '"').replace("«", '"').replace("»", '"')
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError("too_long", MAX_QUERY_CHARS)
    if any(_control(ch) for ch in text):
        raise QueryError("control")
    words: list[str] = []
    senders: list[str] = []
    subjects: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        prefix = (m.group("prefix") or "").lower()
        value = m.group("phrase") if m.group("phrase") is not None else m.group("word") or ""
        field = _PREFIXES.get(prefix)
        if prefix and field is None:  # "re:", "http:" ... are part of the word
            value = f"{m.group('prefix')}:{value}"
        value = " ".join(value.split())
        if not value:
            continue
        {"from": senders, "subject": subjects}.get(field or "", words).append(value)
    query = Query(tuple(words), tuple(senders), tuple(subjects))
    if not query.terms:
        raise QueryError("empty")
    if len(query.terms) > MAX_TERMS:
        raise QueryError("too_many", MAX_TERMS)
    return query


def quote(value: str) -> str:
    """An IMAP quoted string (UTF-8 inside when the query is not ASCII)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def criteria(query: Query) -> list[str]:
    """SEARCH keys for the query (all must match)."""
    out: list[str] = []
    for word in query.words:
        q = quote(word)
        out += ["OR", "OR", "FROM", q, "SUBJECT", q, "BODY", q]
    for sender in query.senders:
        out += ["FROM", quote(sender)]
    for subject in query.subjects:
        out += ["SUBJECT", quote(subject)]
    return out


@dataclass(frozen=True, slots=True)
class Found:
    """UIDs of the matching INBOX letters, newest (highest UID) first."""

    uids: list[int]
    uidvalidity: int
    charset: str  # "UTF-8", or "US-ASCII" when the server refused UTF-8 and the query is ASCII


def _refused_charset(response: Any) -> bool:
    if getattr(response, "result", None) == "OK":
        return False
    lines = [bytes(x) for x in getattr(response, "lines", []) if isinstance(x, bytes | bytearray)]
    # BADCHARSET is the standard answer; some servers just say BAD to the CHARSET argument
    return any(_BADCHARSET.search(line) for line in lines) or getattr(response, "result", None) == "BAD"


async def search_inbox(client: Any, query: Query, *, timeout: float) -> Found:  # noqa: ASYNC109
    """SELECT INBOX and UID SEARCH for the query (nothing is changed: no flags are set). Raises
    CharsetRefused, MailCheckError (timeout, lost connection, a refusal in the server's words)."""
    response = await run_command(client, client.select("INBOX"), timeout)
    require_ok(response, "SELECT INBOX")
    uidvalidity = parse_select(response.lines)["uidvalidity"] or 0
    keys = criteria(query)
    charset = "UTF-8"
    response = await run_command(client, client.uid_search(*keys, charset="UTF-8"), timeout)
    if _refused_charset(response):
        if not query.ascii:
            raise CharsetRefused()
        log.info("server refused CHARSET UTF-8; searching in US-ASCII")
        charset = "US-ASCII"
        response = await run_command(client, client.uid_search(*keys, charset=None), timeout)
    if getattr(response, "result", None) != "OK":
        lines = [bytes(x).decode("utf-8", "replace") for x in response.lines if isinstance(x, bytes | bytearray)]
        raise MailCheckError(
            Protocol.IMAP, FailureKind.PROTOCOL, (lines[-1] if lines else "SEARCH refused")[:300], server_said=bool(lines)
        )
    uids = sorted(set(parse_search(response.lines)), reverse=True)[:MAX_RESULTS]
    return Found(uids, uidvalidity, charset)
