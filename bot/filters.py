"""Filters shared by routers. `IsAdmin` sits on the admin routers themselves
(`router.message.filter(IsAdmin())`, `router.callback_query.filter(IsAdmin())`), so no handler
under them can forget the check; an update it refuses goes on to the next router (for a
non-admin: the ordinary unknown-command reply, the wizard's step, or the stale-button answer)."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import CallbackQuery, Message

from bot.config import Settings


class IsAdmin(Filter):
    """The sender is one of Settings.admin_ids."""

    async def __call__(self, event: Message | CallbackQuery, settings: Settings) -> bool:
        return event.from_user is not None and event.from_user.id in settings.admin_ids
