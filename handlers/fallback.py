"""Anything no other handler took: unknown commands, stray text, and errors."""

from __future__ import annotations

import logging

from aiogram.types import CallbackQuery, ErrorEvent, Message

from bot.i18n import Translator
from bot.routing import RouteTable

log = logging.getLogger(__name__)
router = RouteTable("fallback")


@router.message()
async def on_unknown(message: Message, t: Translator) -> None:
    await message.answer(t("error.unknown_command"))


@router.callback_query()
async def on_unknown_button(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer(t("error.stale_button"), show_alert=True)


@router.errors()
async def on_error(event: ErrorEvent, t: Translator | None = None) -> bool:
    log.error("update %s failed: %s", event.update.update_id, type(event.exception).__name__, exc_info=event.exception)
    update = event.update
    if t is None:
        return True
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(t("error.internal"), show_alert=True)
        elif update.message is not None:
            await update.message.answer(t("error.internal"))
    except Exception:
        log.warning("could not tell the user about the error", exc_info=True)
    return True
