"""Links between letters and business items. A link keeps a snapshot of the letter (sender,
date, subject, snippet), so the context survives when the letter or the mailbox is deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ItemLink, Letter, Mailbox

ITEM_TYPE_MAX = 64
ITEM_ID_MAX = 128


class LetterNotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class LinkView:
    item_type: str
    item_id: str
    letter_id: int | None
    from_name: str
    from_addr: str
    subject: str
    sent_at: datetime | None
    snippet: str
    linked_at: datetime | None = None

    @property
    def letter_exists(self) -> bool:
        return self.letter_id is not None


class ItemLinks:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def link(self, item_type: str, item_id: str, letter_id: int, *, user_id: int | None = None) -> ItemLink:
        if not (0 < len(item_type) <= ITEM_TYPE_MAX and 0 < len(item_id) <= ITEM_ID_MAX):
            raise ValueError("item type or id has the wrong length")
        stmt = select(Letter, Mailbox.user_id).join(Mailbox, Mailbox.id == Letter.mailbox_id).where(Letter.id == letter_id)
        row = (await self.session.execute(stmt)).first()
        if row is None or (user_id is not None and row[1] != user_id):
            raise LetterNotFound(letter_id)
        letter: Letter = row[0]
        existing = (
            await self.session.execute(
                select(ItemLink).where(
                    ItemLink.item_type == item_type, ItemLink.item_id == item_id, ItemLink.letter_id == letter_id
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            return existing
        link = ItemLink(
            item_type=item_type,
            item_id=item_id,
            letter_id=letter.id,
            user_id=row[1],
            from_name=letter.from_name,
            from_addr=letter.from_addr,
            subject=letter.subject,
            sent_at=letter.sent_at,
            snippet=letter.snippet,
        )
        self.session.add(link)
        await self.session.flush()
        return link

    async def link_snapshot(
        self,
        item_type: str,
        item_id: str,
        *,
        user_id: int | None,
        from_name: str,
        from_addr: str,
        subject: str,
        sent_at: datetime | None,
        snippet: str,
    ) -> ItemLink:
        """A link that only has the snapshot (a letter the bot sent but could not file)."""
        if not (0 < len(item_type) <= ITEM_TYPE_MAX and 0 < len(item_id) <= ITEM_ID_MAX):
            raise ValueError("item type or id has the wrong length")
        link = ItemLink(
            item_type=item_type, item_id=item_id, letter_id=None, user_id=user_id, from_name=from_name,
            from_addr=from_addr, subject=subject, sent_at=sent_at, snippet=snippet,
        )
        self.session.add(link)
        await self.session.flush()
        return link

    async def for_item(self, item_type: str, item_id: str) -> Sequence[LinkView]:
        stmt = (
            select(ItemLink)
            .where(ItemLink.item_type == item_type, ItemLink.item_id == item_id)
            .order_by(ItemLink.created_at, ItemLink.id)
        )
        return [view_of(link) for link in (await self.session.execute(stmt)).scalars()]


def view_of(link: ItemLink) -> LinkView:
    return LinkView(
        link.item_type, link.item_id, link.letter_id, link.from_name, link.from_addr,
        link.subject, link.sent_at, link.snippet, link.created_at,
    )
