"""Taking a password from a chat message: the message is deleted before anything else, the
text is checked for shape, and the password goes back to the caller only (never stored here,
never logged, never put in FSM storage)."""

from __future__ import annotations

import logging

from aiogram.types import Message

from bot.i18n import Translator

log = logging.getLogger(__name__)
PASSWORD_MAX = 1024


async def take_password(message: Message, t: Translator) -> str | None:
    """Delete the message, then return its text as a password, or None after telling the
    user what shape a password must have."""
    try:
        await message.delete()
    except Exception:  # too old or already gone: nothing more can be done about it
        log.warning("could not delete the password message in chat %s", message.chat.id)
    password = message.text or ""
    if not password or len(password) > PASSWORD_MAX or "\n" in password:
        await message.answer(t("error.bad_password"))
        return None
    return password
