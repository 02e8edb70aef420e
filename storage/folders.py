"""A mailbox's special folders as found on its server (mail/folders.py), kept in
`MailboxFolders`. Flushes, never commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import MailboxFolders, utcnow


async def save_folders(
    session: AsyncSession,
    mailbox_id: int,
    *,
    archive: str | None,
    trash: str | None,
    junk: str | None,
    gmail: bool,
    now: datetime | None = None,
) -> MailboxFolders:
    row = await session.get(MailboxFolders, mailbox_id)
    if row is None:
        row = MailboxFolders(mailbox_id=mailbox_id)
        session.add(row)
    row.archive, row.trash, row.junk, row.gmail = archive, trash, junk, gmail
    row.found_at = now or utcnow()
    await session.flush()
    return row
