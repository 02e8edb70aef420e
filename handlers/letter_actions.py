"""Buttons acting on a received letter (alert or opened letter): mark read/unread, flag,
Archive, Delete, Spam, Undo. One use case (services.letter_actions.LetterActionService.act),
which checks the letter's owner: a forged or another user's id changes nothing."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardButton, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.callbacks import LetterActCB
from bot.i18n import Translator
from bot.letter_actions import LetterActionsUI, action_rows, answer_text, merged, other_rows
from bot.routing import RouteTable
from mail.types import MailCheckError
from services.letter_actions import Action, LetterActionService
from services.mailboxes import LetterNotFound, MailboxService
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("letter_actions")


@router.callback_query(LetterActCB.filter())
async def on_letter_action(
    cb: CallbackQuery,
    callback_data: LetterActCB,
    t: Translator,
    session: AsyncSession,
    mailboxes: MailboxService,
    user: User,
    bot: Bot,
    letter_actions: LetterActionsUI,
) -> None:
    try:
        action = Action(callback_data.action)
    except ValueError:
        await cb.answer(t("act.unknown"), show_alert=True)
        return
    service = LetterActionService(session, mailboxes.deps, clock=letter_actions.clock)
    try:
        result = await service.act(user.id, callback_data.letter_id, action)
    except LetterNotFound:
        await cb.answer(t("read.gone"), show_alert=True)
        return
    except MailCheckError as exc:
        await cb.answer()
        await bot.send_message(user.id, t("act.unreachable", reason=t(f"fail.{exc.kind.value}", protocol="IMAP")))
        return
    await cb.answer(answer_text(t, result), show_alert=False)
    message = cb.message
    if not isinstance(message, Message):
        return
    others = other_rows(message.reply_markup)
    markup = merged(others, action_rows(t, result.state, letter_actions.clock.wall()))
    if markup != message.reply_markup:
        try:
            await message.edit_reply_markup(reply_markup=markup)
        except TelegramBadRequest as exc:  # the message is gone, or too old to edit
            log.info("letter %s: buttons not updated (%s)", callback_data.letter_id, exc.message)
    # pressed under the opened letter: the alert of that letter shows the same state
    await letter_actions.letters_changed(0, [callback_data.letter_id], skip_message=message.message_id)
    if result.state.undo_until is not None and result.state.can_undo(letter_actions.clock.wall()):
        letter_actions.expire_undo(
            user.id, user.language, message.chat.id, message.message_id, callback_data.letter_id,
            others, result.state.undo_until,
        )


async def opened_letter_rows(
    t: Translator, mailboxes: MailboxService, user_id: int, letter_id: int
) -> list[list[InlineKeyboardButton]]:
    """The action rows under a letter just opened (which the server now has as \\Seen);
    none for a sent letter, or when its state can't be read."""
    service = LetterActionService(mailboxes.session, mailboxes.deps)
    try:
        state = await service.state(user_id, letter_id, opened=True)
    except LetterNotFound:
        return []
    if state is None:
        return []
    return action_rows(t, state, service.clock.wall())
