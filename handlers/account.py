"""Reconnect and Delete account. Every button names a mailbox id, checked against the owner.
The new password is taken from the message, the message is deleted at once, and the password
goes straight to the check: it is never put in FSM storage."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import F
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards as kb
from bot.callbacks import AccountCB
from bot.i18n import Html, Translator
from bot.render import check_failure, mailbox_summary, server_line
from bot.routing import RouteTable
from bot.secrets_input import take_password
from bot.states import ReconnectMailbox as R
from mail.types import MailCheckError, MailServers, ServerSettings
from mail.validate import parse_host, parse_port
from services.mailboxes import MailboxService, NotYourMailbox, servers_of
from storage.models import Mailbox, ServiceKind, User

log = logging.getLogger(__name__)
router = RouteTable("account")

FIELDS = {
    "rc_login": ("login", R.waiting_login),
    "rc_imap_host": ("imap_host", R.waiting_imap_host),
    "rc_imap_port": ("imap_port", R.waiting_imap_port),
    "rc_smtp_host": ("smtp_host", R.waiting_smtp_host),
    "rc_smtp_port": ("smtp_port", R.waiting_smtp_port),
}


def _pending(mailbox: Mailbox, data: dict[str, Any]) -> tuple[str, MailServers]:
    """The account as it would be saved: stored values overlaid with the user's changes."""
    current = servers_of(mailbox)
    imap = ServerSettings(
        data.get("imap_host", current.imap.host), int(data.get("imap_port", current.imap.port)), current.imap.security
    )
    smtp = ServerSettings(
        data.get("smtp_host", current.smtp.host), int(data.get("smtp_port", current.smtp.port)), current.smtp.security
    )
    return data.get("login", mailbox.login), MailServers(imap, smtp)


def _menu(t: Translator, mailbox: Mailbox, data: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    login, servers = _pending(mailbox, data)
    oauth2 = mailbox.auth_kind == "oauth2"  # repaired by signing in again, never by a password
    text = t(
        "reconnect.title_oauth" if oauth2 else "reconnect.title",
        email=mailbox.email,
        state=t(f"state.{mailbox.state}"),
        login=login,
        service=mailbox.service.name(t.lang) if mailbox.service is not None else "?",
        imap=Html(server_line(t, servers.imap)),
        smtp=Html(server_line(t, servers.smtp)),
    )
    if mailbox.last_error:
        text += "\n\n" + t("reconnect.last_error", error=mailbox.last_error)

    def b(action: str, key: str) -> kb.Button:
        return kb.Button(text=t(key), callback_data=AccountCB(mailbox_id=mailbox.id, action=action).pack())

    if oauth2:
        rows = [[b("rc_save", "btn.sign_in_again")]]
    else:
        rows = [[b("rc_save", "btn.save")], [b("rc_password", "btn.new_password"), b("rc_login", "btn.change_login")]]
    if mailbox.service is None or mailbox.service.kind == ServiceKind.OTHER.value:
        rows.append([b("rc_imap_host", "btn.change_imap_host"), b("rc_imap_port", "btn.change_imap_port")])
        rows.append([b("rc_smtp_host", "btn.change_smtp_host"), b("rc_smtp_port", "btn.change_smtp_port")])
    rows.append([b("card", "btn.cancel")])
    return text, kb.markup(rows)


async def _show_menu(message: Message, t: Translator, mailbox: Mailbox, state: FSMContext) -> None:
    await state.set_state(R.choosing)
    text, markup = _menu(t, mailbox, await state.get_data())
    await message.answer(text, reply_markup=markup)


async def _save(
    message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext, password: str | None = None
) -> None:
    data = await state.get_data()
    mailbox_id = int(data.get("mailbox_id", 0))
    try:
        mailbox = await mailboxes.owned(user.id, mailbox_id)
    except NotYourMailbox:
        await state.clear()
        await message.answer(t("error.not_your_mailbox"))
        return
    login, servers = _pending(mailbox, data)
    progress = await message.answer(t("reconnect.checking"))
    try:
        mailbox = await mailboxes.reconnect(
            user.id,
            mailbox_id,
            login=login if login != mailbox.login else None,
            servers=servers if servers != servers_of(mailbox) else None,
            password=password,
        )
    except MailCheckError as exc:
        await progress.edit_text(check_failure(t, exc))
        await _show_menu(message, t, mailbox, state)
        return
    await state.clear()
    await progress.edit_text(t("reconnect.done"))
    await message.answer(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))


@router.callback_query(AccountCB.filter(F.action.in_({"reconnect", "rc_save", "rc_password", "delete", "delete_yes", *FIELDS})))
async def on_account_action(
    cb: CallbackQuery,
    callback_data: AccountCB,
    t: Translator,
    mailboxes: MailboxService,
    user: User,
    state: FSMContext,
    oauth_flows: Any = None,
) -> None:
    try:
        mailbox = await mailboxes.owned(user.id, callback_data.mailbox_id)
    except NotYourMailbox:
        await cb.answer(t("error.not_your_mailbox"), show_alert=True)
        return
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    message = cb.message
    action = callback_data.action
    data = await state.get_data()
    in_reconnect = await state.get_state() in {s.state for s in R.__states__} and data.get("mailbox_id") == mailbox.id
    if action == "reconnect":
        await state.clear()
        await state.update_data(mailbox_id=mailbox.id)
        await _show_menu(message, t, mailbox, state)
    elif action == "delete":
        await state.clear()
        await message.answer(
            t("delete.confirm", email=mailbox.email),
            reply_markup=kb.markup([
                [kb.Button(text=t("btn.delete_yes"), callback_data=AccountCB(mailbox_id=mailbox.id, action="delete_yes").pack())],
                [kb.Button(text=t("btn.delete_no"), callback_data=AccountCB(mailbox_id=mailbox.id, action="card").pack())],
            ]),
        )
    elif action == "delete_yes":
        email = mailbox.email
        await mailboxes.delete_account(user.id, mailbox.id)
        await state.clear()
        await message.edit_text(t("delete.done", email=email), reply_markup=kb.connect_only(t))
    elif not in_reconnect:
        await cb.answer(t("error.stale_button"), show_alert=True)
    elif action == "rc_save" and mailbox.auth_kind == "oauth2":
        # an OAuth2 account is repaired by signing in again, not by a password
        await state.clear()
        if oauth_flows is None or not await oauth_flows.start_reauthorization(user.id, mailbox.id):
            await message.answer(t("reconnect.oauth_unavailable"))
    elif action == "rc_save":
        await _save(message, t, mailboxes, user, state)
    elif action == "rc_password":
        login, _ = _pending(mailbox, data)
        await state.set_state(R.waiting_password)
        await message.answer(t("reconnect.ask_password", login=login))
    else:
        field, target = FIELDS[action]
        login, servers = _pending(mailbox, data)
        current = {
            "login": login,
            "imap_host": servers.imap.host,
            "imap_port": servers.imap.port,
            "smtp_host": servers.smtp.host,
            "smtp_port": servers.smtp.port,
        }[field]
        await state.set_state(target)
        await message.answer(t(f"reconnect.ask_{field}", current=current))


@router.message(R.waiting_password)
async def on_new_password(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    password = await take_password(message, t)
    if password is not None:
        await _save(message, t, mailboxes, user, state, password=password)


@router.message(StateFilter(R.waiting_login, R.waiting_imap_host, R.waiting_imap_port, R.waiting_smtp_host, R.waiting_smtp_port), F.text)
async def on_field(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    step = await state.get_state()
    field = next(f for f, s in FIELDS.values() if s.state == step)
    text = message.text or ""
    value: str | int | None
    if field == "login":
        value = text.strip() if 0 < len(text.strip()) <= 320 and not any(c.isspace() for c in text.strip()) else None
        error = "error.bad_login"
    elif field.endswith("host"):
        value, error = parse_host(text), "error.bad_host"
    else:
        value, error = parse_port(text), "error.bad_port"
    if value is None:
        await message.answer(t(error))
        return
    await state.update_data({field: value})
    data = await state.get_data()
    try:
        mailbox = await mailboxes.owned(user.id, int(data.get("mailbox_id", 0)))
    except NotYourMailbox:
        await state.clear()
        await message.answer(t("error.not_your_mailbox"))
        return
    await _show_menu(message, t, mailbox, state)


@router.message(StateFilter(R.choosing))
async def on_text_in_menu(message: Message, t: Translator) -> None:
    await message.answer(t("error.use_buttons"))

