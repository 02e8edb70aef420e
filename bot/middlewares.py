"""Per-update wiring: one DB session (committed when the handler succeeds), the user row,
the user's translator, and the use-case services."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.types import User as TgUser
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Catalog, pick_language
from services.deps import MailDeps
from services.mailboxes import MailboxService
from services.users import UserService

log = logging.getLogger(__name__)


class ContextMiddleware(BaseMiddleware):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], catalog: Catalog, deps: MailDeps) -> None:
        self.sessionmaker = sessionmaker
        self.catalog = catalog
        self.deps = deps

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        tg_user: TgUser | None = data.get("event_from_user")
        async with self.sessionmaker() as session:
            data["session"] = session
            data["mailboxes"] = MailboxService(session, self.deps)
            users = UserService(session)
            data["users"] = users
            if tg_user is not None and not tg_user.is_bot:
                user = await users.touch(
                    tg_user.id, language=pick_language(tg_user.language_code), first_name=tg_user.first_name
                )
                data["user"] = user
                data["t"] = self.catalog.get(user.language)
            else:
                data["t"] = self.catalog.get(None)
            try:
                result = await handler(event, data)
            except Exception:
                await session.rollback()
                raise
            await session.commit()
            return result
