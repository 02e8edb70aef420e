"""Per-update wiring: one DB session (committed when the handler succeeds), the user row,
the user's translator, and the use-case services."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import ChatMemberUpdated, TelegramObject
from aiogram.types import User as TgUser
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db_checkpoint import update_session
from bot.i18n import Catalog, pick_language
from bot.telegram_limits import interactive
from services.deps import MailDeps
from services.hooks import run_after_commit
from services.mailboxes import MailboxService
from services.users import UserService

log = logging.getLogger(__name__)


class ContextMiddleware(BaseMiddleware):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        deps: MailDeps,
        *,
        on_user_returned: Callable[[int], Any] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.catalog = catalog
        self.deps = deps
        self.on_user_returned = on_user_returned

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
            data["user_returned"] = self.on_user_returned
            if isinstance(event, ChatMemberUpdated):  # blocked / unblocked: the handler decides
                data["t"] = self.catalog.get(pick_language(tg_user.language_code) if tg_user else None)
            elif tg_user is not None and not tg_user.is_bot:
                user = await users.touch(
                    tg_user.id, language=pick_language(tg_user.language_code), first_name=tg_user.first_name
                )
                if self.on_user_returned is not None:  # they write to us: they no longer block the bot
                    self.on_user_returned(user.id)
                data["user"] = user
                data["t"] = self.catalog.get(user.language)
            else:
                data["t"] = self.catalog.get(None)
            replying = interactive.set(True)
            try:
                with update_session(session):  # replies commit the work so far before they wait
                    result = await handler(event, data)
            except Exception:
                await session.rollback()
                raise
            finally:
                interactive.reset(replying)
            await session.commit()
        await run_after_commit(session)
        return result
