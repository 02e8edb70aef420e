"""/inbox and /sent, opening a letter, downloading an attachment. Every letter id in a button is
checked against the user who pressed it (MailboxService.owned_letter)."""

from __future__ import annotations

import logging

from aiogram import Bot, F
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards as kb
from bot.callbacks import InboxCB, LetterCB, SentCB
from bot.i18n import Translator
from bot.letter_view import human_size, render_letter
from bot.render import letter_page
from bot.routing import RouteTable
from handlers.letter_actions import opened_letter_rows
from mail.compose import others_addressed
from mail.reader import FullLetter
from mail.types import MailCheckError
from services.mailboxes import AttachmentTooBig, LetterNotFound, MailboxService, NotYourMailbox
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("letters")
PER_PAGE = 8


async def _show_letters(
    target: Message, t: Translator, mailboxes: MailboxService, user: User, page: int, *, sent: bool, edit: bool
) -> None:
    try:
        letters = await mailboxes.letter_page(user.id, page, PER_PAGE, sent=sent)
    except NotYourMailbox:
        await target.answer(t("inbox.no_mailbox"), reply_markup=kb.connect_only(t))
        return
    text, markup = letter_page(t, letters, PER_PAGE)
    if not sent and letters.total:
        markup = kb.with_rows(markup, kb.search_row(t))
    if edit:
        await target.edit_text(text, reply_markup=markup)
    else:
        await target.answer(text, reply_markup=markup)


@router.message(Command("inbox"))
async def on_inbox(message: Message, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await _show_letters(message, t, mailboxes, user, 0, sent=False, edit=False)


@router.message(Command("sent"))
async def on_sent(message: Message, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await _show_letters(message, t, mailboxes, user, 0, sent=True, edit=False)


@router.callback_query(InboxCB.filter())
async def on_inbox_page(cb: CallbackQuery, callback_data: InboxCB, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await _show_letters(cb.message, t, mailboxes, user, callback_data.page, sent=False, edit=True)


@router.callback_query(SentCB.filter())
async def on_sent_page(cb: CallbackQuery, callback_data: SentCB, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await _show_letters(cb.message, t, mailboxes, user, callback_data.page, sent=True, edit=True)


@router.callback_query(LetterCB.filter(F.action == "open"))
async def on_open(cb: CallbackQuery, callback_data: LetterCB, t: Translator, mailboxes: MailboxService, user: User, bot: Bot) -> None:
    try:
        letter = await mailboxes.read_letter(user.id, callback_data.letter_id)
    except LetterNotFound:
        await cb.answer(t("read.gone"), show_alert=True)
        return
    except MailCheckError as exc:
        await cb.answer()
        await bot.send_message(user.id, t("read.unreachable", reason=t(f"fail.{exc.kind.value}", protocol="IMAP")))
        return
    await cb.answer()
    chunks = render_letter(t, letter)
    buttons = [
        [kb.Button(
            text=t("btn.attachment", name=att.filename[:40], size=human_size(t, att.size)),
            callback_data=LetterCB(letter_id=callback_data.letter_id, action="att", part=att.part).pack(),
        )]
        for att in letter.attachments
        if att.size <= mailboxes.deps.attachment_limit and len(att.part) <= 20
    ]
    buttons.append(await _compose_row(t, mailboxes, user, callback_data.letter_id, letter))
    buttons += await opened_letter_rows(t, mailboxes, user.id, callback_data.letter_id)
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        markup: InlineKeyboardMarkup | None = kb.markup(buttons) if last and buttons else None
        await bot.send_message(user.id, chunk, reply_markup=markup)


async def _compose_row(t: Translator, mailboxes: MailboxService, user: User, letter_id: int, letter: FullLetter) -> list[kb.Button]:
    """Reply (Reply all when the letter went to others too) and Forward under the letter."""
    mailbox = await mailboxes.current(user.id)
    own = mailbox.email if mailbox is not None else ""
    return kb.compose_row(t, letter_id, reply_all=others_addressed(f"{letter.to}, {letter.cc}", own))


@router.callback_query(LetterCB.filter(F.action == "att"))
async def on_attachment(cb: CallbackQuery, callback_data: LetterCB, t: Translator, mailboxes: MailboxService, user: User, bot: Bot) -> None:
    try:
        filename, data = await mailboxes.attachment(user.id, callback_data.letter_id, callback_data.part)
    except LetterNotFound:
        await cb.answer(t("read.gone"), show_alert=True)
        return
    except AttachmentTooBig as exc:
        await cb.answer()
        await bot.send_message(
            user.id,
            t("read.too_big", name=exc.filename, size=human_size(t, exc.size), limit=human_size(t, exc.limit)),
        )
        return
    except MailCheckError as exc:
        await cb.answer()
        await bot.send_message(user.id, t("read.unreachable", reason=t(f"fail.{exc.kind.value}", protocol="IMAP")))
        return
    await cb.answer()
    await bot.send_document(user.id, BufferedInputFile(data, filename=filename or "attachment"))
