"""Use cases about the Telegram user themselves."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import User
from storage.repositories import UserRepo


class UserService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = UserRepo(session)

    async def touch(self, user_id: int, *, language: str, first_name: str | None) -> User:
        """The user row for this update (created on first contact with Telegram's language)."""
        return await self.repo.get_or_create(user_id, language=language, first_name=first_name)

    async def blocked_bot(self, user_id: int) -> None:
        """The user blocked the bot (Telegram's my_chat_member update): not reachable, so
        broadcasts skip them and the admin's counts leave them out, before any send fails."""
        await self.repo.set_active(user_id, False)

    async def unblocked_bot(self, user_id: int, *, language: str, first_name: str | None) -> User:
        """The user unblocked (or started) the bot: reachable again."""
        return await self.repo.get_or_create(user_id, language=language, first_name=first_name)

    async def set_language(self, user: User, language: str) -> None:
        user.language = language
