"""Telegram's ``my_chat_member`` updates for the private chat: the user blocked the bot, or
unblocked it. The user row follows at once, so a broadcast preview and the admin's status count
only users who can be reached, before any send fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import F
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.types import ChatMemberUpdated

from bot.i18n import pick_language
from bot.routing import RouteTable
from services.users import UserService

router = RouteTable("membership")


@router.my_chat_member(F.chat.type == "private", ChatMemberUpdatedFilter(member_status_changed=KICKED))
async def on_blocked(event: ChatMemberUpdated, users: UserService) -> None:
    await users.blocked_bot(event.from_user.id)


@router.my_chat_member(F.chat.type == "private", ChatMemberUpdatedFilter(member_status_changed=MEMBER))
async def on_unblocked(
    event: ChatMemberUpdated, users: UserService, user_returned: Callable[[int], Any] | None = None
) -> None:
    who = event.from_user
    user = await users.unblocked_bot(who.id, language=pick_language(who.language_code), first_name=who.first_name)
    if user_returned is not None:  # the sender may write to the chat again
        user_returned(user.id)
