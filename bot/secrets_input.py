"""Taking a password from a chat message: the message is deleted before anything else, the
text is checked for shape, and the password goes back to the caller only (never stored here,
never logged, never put in FSM storage)."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramAPIError
from aiogram.types import Message

from bot.i18n import Translator

log = logging.getLogger(__name__)
PASSWORD_MAX = 1024


async def delete_secret(message: Message, t: Translator) -> bool:
    """Delete a message that holds (or may hold) a password. When Telegram refuses, the user
    is asked to delete it themselves: the secret must not stay in the chat unnoticed."""
    try:
        await message.delete()
        return True
    except TelegramAPIError as exc:  # too old, no right to, or a network failure
        log.warning("could not delete a message with a secret in chat %s: %s", message.chat.id, type(exc).__name__)
    await message.answer(t("secret.delete_yourself"))
    return False


async def take_password(message: Message, t: Translator) -> str | None:
    """Delete the message, then return its text as a password, or None after telling the
    user what shape a password must have."""
    await delete_secret(message, t)
    password = message.text or ""
    if not password or len(password) > PASSWORD_MAX or "\n" in password:
        await message.answer(t("error.bad_password"))
        return None
    return password
