"""Settings -> Mail: the account card and its edits. Every button names a mailbox id, which is
checked against the user who pressed it."""

from __future__ import annotations

from aiogram import F
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards as kb
from bot.callbacks import AccountCB
from bot.i18n import Translator
from bot.render import mailbox_summary
from bot.routing import RouteTable
from bot.states import EditMailbox
from services.mailboxes import SIGNATURE_MAX, MailboxService, NotYourMailbox
from storage.models import User

router = RouteTable("settings")
TOGGLES = {"notify", "notify_sound", "use_in_processes"}


@router.callback_query(AccountCB.filter())
async def on_account_button(
    cb: CallbackQuery, callback_data: AccountCB, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext
) -> None:
    try:
        mailbox = await mailboxes.owned(user.id, callback_data.mailbox_id)
        if callback_data.action in TOGGLES:
            mailbox = await mailboxes.toggle(user.id, mailbox.id, callback_data.action)
        elif callback_data.action == "sig_clear":
            mailbox = await mailboxes.set_signature(user.id, mailbox.id, "")
            await state.clear()
        elif callback_data.action == "signature":
            await cb.answer()
            await state.set_state(EditMailbox.waiting_signature)
            await state.update_data(mailbox_id=mailbox.id)
            if isinstance(cb.message, Message):
                await cb.message.answer(
                    t("settings.ask_signature", current=mailbox.signature or t("word.none"), limit=SIGNATURE_MAX),
                    reply_markup=kb.signature_edit(t, mailbox.id),
                )
            return
        elif callback_data.action == "card":
            await state.clear()
        else:
            await cb.answer(t("error.stale_button"), show_alert=True)
            return
    except NotYourMailbox:
        await cb.answer(t("error.not_your_mailbox"), show_alert=True)
        return
    await cb.answer(t("settings.saved") if callback_data.action != "card" else None)
    if isinstance(cb.message, Message):
        if callback_data.action in TOGGLES:
            await cb.message.edit_text(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))
        else:
            await cb.message.answer(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))


@router.message(EditMailbox.waiting_signature, F.text)
async def on_signature(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    data = await state.get_data()
    text = (message.text or "").strip()
    if len(text) > SIGNATURE_MAX:
        await message.answer(t("error.signature_too_long", limit=SIGNATURE_MAX, length=len(text)))
        return
    try:
        mailbox = await mailboxes.set_signature(user.id, int(data.get("mailbox_id", 0)), text)
    except NotYourMailbox:
        await state.clear()
        await message.answer(t("error.not_your_mailbox"))
        return
    await state.clear()
    await message.answer(t("settings.saved"))
    await message.answer(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))


@router.message(EditMailbox.waiting_signature)
async def on_signature_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("error.need_text"))
