"""Repositories: the only place with SQL. They flush but never commit (one transaction per update)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Letter, LetterMark, LetterPlace, Mailbox, Service, User, utcnow


class UserRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_or_create(
        self, user_id: int, *, language: str | None, first_name: str | None, reactivate: bool = True
    ) -> User:
        """The user's row, created on first contact. Race-safe: a new user's first updates are
        handled concurrently (by one instance or several), so the row is inserted with
        INSERT ... ON CONFLICT DO NOTHING and then read back; whoever inserts second waits for
        the first transaction and finds its row. A returning user is active again unless
        ``reactivate`` is false."""
        user = await self.get(user_id)
        if user is None:
            stmt = insert_for(self.session)(User).values(
                id=user_id, language=language, first_name=first_name, is_active=True, created_at=utcnow()
            )
            await self.session.execute(stmt.on_conflict_do_nothing(index_elements=[User.id]))
            found = await self.session.execute(
                select(User).where(User.id == user_id).execution_options(populate_existing=True)
            )
            user = found.scalar_one()
        elif reactivate and not user.is_active:
            user.is_active = True
        return user

    async def set_active(self, user_id: int, active: bool) -> None:
        """Reachable or not (the user blocked or unblocked the bot)."""
        await self.session.execute(update(User).where(User.id == user_id).values(is_active=active))


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT (both have ON CONFLICT DO NOTHING; plain INSERT has not)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert
    return sqlite_insert


class ServiceRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, service_id: int) -> Service | None:
        return await self.session.get(Service, service_id)

    async def by_code(self, code: str) -> Service | None:
        return (await self.session.execute(select(Service).where(Service.code == code))).scalar_one_or_none()

    async def list_enabled(self) -> Sequence[Service]:
        stmt = select(Service).where(Service.enabled.is_(True)).order_by(Service.sort_order, Service.id)
        return (await self.session.execute(stmt)).scalars().all()

    async def list_all(self) -> Sequence[Service]:
        return (await self.session.execute(select(Service).order_by(Service.sort_order, Service.id))).scalars().all()

    async def upsert(self, code: str, **fields: Any) -> Service:
        service = await self.by_code(code)
        if service is None:
            service = Service(code=code, **fields)
            self.session.add(service)
        else:
            for key, value in fields.items():
                setattr(service, key, value)
        await self.session.flush()
        return service


class MailboxRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, mailbox_id: int) -> Mailbox | None:
        return await self.session.get(Mailbox, mailbox_id)

    async def for_user(self, user_id: int) -> Mailbox | None:
        stmt = select(Mailbox).where(Mailbox.user_id == user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, mailbox: Mailbox) -> Mailbox:
        self.session.add(mailbox)
        await self.session.flush()
        return mailbox

    async def delete(self, mailbox: Mailbox) -> None:
        await self.session.execute(delete(Letter).where(Letter.mailbox_id == mailbox.id))
        await self.session.delete(mailbox)
        await self.session.flush()


def _not_moved() -> Any:
    """Not archived, deleted or reported as spam from the chat, nor gone from INBOX
    (services/letter_actions.py): such letters are not listed as being in Inbox."""
    return ~exists().where(LetterMark.letter_id == Letter.id, LetterMark.place != LetterPlace.INBOX.value)


class LetterRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_alert_message(self, user_id: int, message_id: int) -> int | None:
        """The letter whose alert is that message of the user's private chat (the chat is the user)."""
        stmt = (
            select(LetterMark.letter_id)
            .join(Letter, Letter.id == LetterMark.letter_id)
            .join(Mailbox, Mailbox.id == Letter.mailbox_id)
            .where(Mailbox.user_id == user_id, LetterMark.alert_chat_id == user_id, LetterMark.alert_message_id == message_id)
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add_many(self, letters: Iterable[Letter]) -> int:
        items = list(letters)
        self.session.add_all(items)
        await self.session.flush()
        return len(items)

    async def get(self, letter_id: int) -> Letter | None:
        return await self.session.get(Letter, letter_id)

    async def count(self, mailbox_id: int, folder: str = "INBOX") -> int:
        stmt = select(func.count()).select_from(Letter).where(
            Letter.mailbox_id == mailbox_id, Letter.folder == folder, _not_moved()
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def count_sent(self, mailbox_id: int) -> int:
        """Letters sent from the bot (business processes), kept with the Sent folder's name."""
        stmt = select(func.count()).select_from(Letter).where(Letter.mailbox_id == mailbox_id, Letter.folder != "INBOX")
        return int((await self.session.execute(stmt)).scalar_one())

    async def latest_sent(self, mailbox_id: int, limit: int = 10, offset: int = 0) -> Sequence[Letter]:
        """Newest first: in the order they were sent (the Sent folder may have been renamed)."""
        stmt = (
            select(Letter)
            .where(Letter.mailbox_id == mailbox_id, Letter.folder != "INBOX")
            .order_by(Letter.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def latest(self, mailbox_id: int, limit: int = 10, offset: int = 0, folder: str = "INBOX") -> Sequence[Letter]:
        stmt = (
            select(Letter)
            .where(Letter.mailbox_id == mailbox_id, Letter.folder == folder, _not_moved())
            .order_by(Letter.uid.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def delete_for_mailbox(self, mailbox_id: int, folder: str | None = None) -> None:
        stmt = delete(Letter).where(Letter.mailbox_id == mailbox_id)
        if folder is not None:
            stmt = stmt.where(Letter.folder == folder)
        await self.session.execute(stmt)
