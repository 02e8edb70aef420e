"""Repositories of the attention settings: alert rules and quiet-hours / grouping preferences.
They flush but never commit (one transaction per update)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AlertRule, AttentionPrefs, Letter, Mailbox, MailboxState, utcnow


class RuleRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(self, user_id: int, limit: int, offset: int) -> Sequence[AlertRule]:
        stmt = (
            select(AlertRule)
            .where(AlertRule.user_id == user_id)
            .order_by(AlertRule.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def count(self, user_id: int) -> int:
        stmt = select(func.count()).select_from(AlertRule).where(AlertRule.user_id == user_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def find(self, user_id: int, kind: str, value: str) -> AlertRule | None:
        stmt = select(AlertRule).where(AlertRule.user_id == user_id, AlertRule.kind == kind, AlertRule.value == value)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def owned(self, user_id: int, rule_id: int) -> AlertRule | None:
        stmt = select(AlertRule).where(AlertRule.id == rule_id, AlertRule.user_id == user_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, user_id: int, kind: str, value: str, action: str) -> AlertRule:
        rule = AlertRule(user_id=user_id, kind=kind, value=value, action=action, created_at=utcnow())
        self.session.add(rule)
        await self.session.flush()
        return rule

    async def delete(self, user_id: int, rule_id: int) -> bool:
        result = await self.session.execute(
            delete(AlertRule).where(AlertRule.id == rule_id, AlertRule.user_id == user_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def owned_letter(self, user_id: int, letter_id: int) -> Letter | None:
        """The letter if it is in a connected mailbox of this user."""
        stmt = (
            select(Letter)
            .join(Mailbox, Mailbox.id == Letter.mailbox_id)
            .where(Letter.id == letter_id, Mailbox.user_id == user_id, Mailbox.state != MailboxState.DRAFT.value)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()


class PrefsRepo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> AttentionPrefs | None:
        return await self.session.get(AttentionPrefs, user_id)

    async def get_or_create(self, user_id: int, *, burst_threshold: int) -> AttentionPrefs:
        """The user's row (created with the defaults the caller gives). A race between two
        first saves of one user is settled by the primary key: the loser's update fails and
        the user presses again; one user's updates are handled one at a time anyway."""
        row = await self.get(user_id)
        if row is None:
            row = AttentionPrefs(
                user_id=user_id, quiet_mode="silent", vip_breaks_quiet=True,
                burst_threshold=burst_threshold, updated_at=utcnow(),
            )
            self.session.add(row)
            await self.session.flush()
        return row
