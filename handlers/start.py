"""/start, /help, /settings and the language switch."""

from __future__ import annotations

from aiogram import F
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards as kb
from bot.callbacks import LangCB, MenuCB
from bot.i18n import LANGUAGES, Catalog, Translator
from bot.render import mailbox_summary
from bot.routing import RouteTable
from services.mailboxes import MailboxService
from services.users import UserService
from storage.models import User

router = RouteTable("start")


@router.message(CommandStart())
async def on_start(message: Message, t: Translator, mailboxes: MailboxService, user: User) -> None:
    connected = await mailboxes.current(user.id) is not None
    await message.answer(t("start.welcome", name=user.first_name or ""), reply_markup=kb.start_menu(t, connected))


@router.message(Command("help"))
async def on_help(message: Message, t: Translator) -> None:
    await message.answer(t("help.text"))


@router.message(Command("settings"))
async def on_settings(message: Message, t: Translator) -> None:
    await message.answer(t("settings.title"), reply_markup=kb.settings_menu(t))


@router.callback_query(MenuCB.filter(F.action == "settings"))
async def on_settings_button(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(t("settings.title"), reply_markup=kb.settings_menu(t))


@router.callback_query(MenuCB.filter(F.action == "mail"))
async def on_mail(cb: CallbackQuery, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    mailbox = await mailboxes.current(user.id)
    if mailbox is None:
        await cb.message.answer(t("settings.no_mailbox"), reply_markup=kb.connect_only(t))
        return
    await cb.message.answer(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))


@router.callback_query(MenuCB.filter(F.action == "lang"))
async def on_language_menu(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.answer(t("settings.pick_language"), reply_markup=kb.language_menu())


@router.callback_query(LangCB.filter())
async def on_language(cb: CallbackQuery, callback_data: LangCB, user: User, users: UserService, catalog: Catalog, t: Translator) -> None:
    if callback_data.code not in LANGUAGES:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await users.set_language(user, callback_data.code)
    t = catalog.get(callback_data.code)
    await cb.answer(t("settings.language_set"))
    if isinstance(cb.message, Message):
        await cb.message.edit_text(t("settings.language_set"))
        await cb.message.answer(t("settings.title"), reply_markup=kb.settings_menu(t))
