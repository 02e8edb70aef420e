"""Searching the user's INBOX: `/search` and the Search button under /inbox.

On the server (mail.search: IMAP SEARCH with CHARSET UTF-8, US-ASCII again when the server
refuses UTF-8 and the words are ASCII), newest first, one page at a time. The letters of the
page are stored as `Letter` rows when they aren't yet (born alerted: a search never alerts), so
each opens with the same Open button as /inbox (`LetterCB` takes a row id). A server that
refuses UTF-8 for a non-ASCII query gets the query run over the letters stored locally
(sender, subject and the start of the text) instead, and the page says so (`SearchMode.LOCAL`).

One user's updates are handled one at a time across the fleet (the dispatcher's event
isolation), so two searches of one user never store the same row at once; the watcher only
stores letters above the mailbox's highest UID, and a search only those up to it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from mail.imap import close_imap, open_imap
from mail.importer import fetch_uids
from mail.search import CharsetRefused, Query, parse_query, search_inbox
from mail.types import LetterSummary
from services.letters import letter_row
from services.mailboxes import MailboxService, NotYourMailbox, servers_of
from storage.models import Letter, Mailbox

log = logging.getLogger(__name__)

INBOX = "INBOX"
LOCAL_LIMIT = 5000  # stored letters a local search looks through (the newest)


class SearchMode(str, enum.Enum):
    SERVER = "server"  # IMAP SEARCH in UTF-8
    ASCII = "ascii"  # the server refused UTF-8; the ASCII query was searched in US-ASCII
    LOCAL = "local"  # the server refused UTF-8; the stored letters were searched


@dataclass(frozen=True)
class SearchPage:
    mailbox: Mailbox
    query: Query
    letters: list[Letter]
    total: int
    page: int
    mode: SearchMode


def _clamp(page: int, total: int, per_page: int) -> int:
    pages = max(1, -(-total // per_page))
    return min(max(page, 0), pages - 1)


def _matches(query: Query, from_name: str, from_addr: str, subject: str, snippet: str) -> bool:
    sender = f"{from_name} {from_addr}".casefold()
    subj = subject.casefold()
    text = snippet.casefold()
    return (
        all(w.casefold() in sender or w.casefold() in subj or w.casefold() in text for w in query.words)
        and all(s.casefold() in sender for s in query.senders)
        and all(s.casefold() in subj for s in query.subjects)
    )


class SearchService:
    def __init__(self, mailboxes: MailboxService) -> None:
        self.mailboxes = mailboxes
        self.session = mailboxes.session
        self.deps = mailboxes.deps

    async def search(self, user_id: int, raw_query: str, page: int = 0, per_page: int = 8) -> SearchPage:
        """One page of the user's INBOX letters matching the query, newest first. Raises
        mail.search.QueryError (a query that can't be searched), NotYourMailbox (no mailbox),
        MailCheckError (the server is unreachable, timed out or refused)."""
        query = parse_query(raw_query)
        mailbox = await self.mailboxes.current(user_id)
        if mailbox is None:
            raise NotYourMailbox(0)
        creds = await self.mailboxes.credentials(mailbox)  # commits the update's work so far
        client = await open_imap(
            servers_of(mailbox).imap,
            creds,
            ssl_context=self.deps.ssl_context,
            guard=self.deps.guard,
            timeout=self.deps.timeout,
        )
        chosen: list[int] = []
        summaries: list[LetterSummary] = []
        try:
            try:
                found = await search_inbox(client, query, timeout=self.deps.timeout)
            except CharsetRefused:
                log.info("mailbox %s: the server refused CHARSET UTF-8; searching stored letters", mailbox.id)
                found = None
            if found is not None:
                page = _clamp(page, len(found.uids), per_page)
                chosen = found.uids[page * per_page : (page + 1) * per_page]
                summaries = await fetch_uids(client, chosen, timeout=self.deps.timeout)
        finally:
            await close_imap(client)
        if found is None:
            return await self._local(mailbox, query, page, per_page)
        letters = await self._rows(mailbox, found.uidvalidity, chosen, summaries)
        mode = SearchMode.SERVER if found.charset == "UTF-8" else SearchMode.ASCII
        return SearchPage(mailbox, query, letters, len(found.uids), page, mode)

    async def _rows(
        self, mailbox: Mailbox, uidvalidity: int, uids: list[int], summaries: Sequence[LetterSummary]
    ) -> list[Letter]:
        """The stored rows of the found UIDs, in their order; rows are added for those not
        stored yet (up to the highest UID the watcher has seen, of the current UIDVALIDITY;
        a letter beyond it is the watcher's to store and alert, and is left off this page)."""
        if not uids:
            return []
        stmt = select(Letter).where(
            Letter.mailbox_id == mailbox.id,
            Letter.folder == INBOX,
            Letter.uidvalidity == uidvalidity,
            Letter.uid.in_(uids),
        )
        rows = {row.uid: row for row in (await self.session.execute(stmt)).scalars()}
        storable = uidvalidity == mailbox.uidvalidity
        ceiling = mailbox.highest_uid or 0
        new = [
            letter_row(mailbox.id, uidvalidity, item, alerted=True)
            for item in summaries
            if item.uid not in rows and storable and item.uid <= ceiling
        ]
        if new:
            self.session.add_all(new)
            await self.session.flush()
            rows.update((row.uid, row) for row in new)
        return [rows[uid] for uid in uids if uid in rows]

    async def _local(self, mailbox: Mailbox, query: Query, page: int, per_page: int) -> SearchPage:
        """The query over the newest LOCAL_LIMIT stored letters (sender, subject, snippet)."""
        stmt = (
            select(Letter.id, Letter.from_name, Letter.from_addr, Letter.subject, Letter.snippet)
            .where(Letter.mailbox_id == mailbox.id, Letter.folder == INBOX)
            .order_by(Letter.uid.desc())
            .limit(LOCAL_LIMIT)
        )
        ids = [
            row.id
            for row in (await self.session.execute(stmt)).all()
            if _matches(query, row.from_name, row.from_addr, row.subject, row.snippet)
        ]
        page = _clamp(page, len(ids), per_page)
        chosen = ids[page * per_page : (page + 1) * per_page]
        letters: list[Letter] = []
        if chosen:
            found = {x.id: x for x in (await self.session.execute(select(Letter).where(Letter.id.in_(chosen)))).scalars()}
            letters = [found[i] for i in chosen if i in found]
        return SearchPage(mailbox, query, letters, len(ids), page, SearchMode.LOCAL)
