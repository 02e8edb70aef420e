"""Reconnect and Delete account. Every button names a mailbox id, checked against the owner.
The new password is taken from the message, the message is deleted at once, and the password
goes straight to the check: it is never put in FSM storage."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards as kb
from bot.callbacks import AccountCB
from bot.i18n import Html, Translator
from bot.render import check_failure, mailbox_summary, server_line
from bot.routing import RouteTable
from bot.secrets_input import delete_secret, take_password
from bot.server_input import ServerInputRefused, as_update, assign, parse_servers
from bot.states import ReconnectMailbox as R
from mail.types import MailCheckError, MailServers, Security, ServerSettings
from services.mailboxes import MailboxService, NotYourMailbox, servers_of
from storage.models import Mailbox, ServiceKind, User

log = logging.getLogger(__name__)
router = RouteTable("account")

# a server is answered with `host:port` (or both servers at once); the port states are from
# before that and are answered the same way (a conversation may still be in one of them)
FIELDS = {
    "rc_login": ("login", R.waiting_login),
    "rc_imap": ("imap", R.waiting_imap_host),
    "rc_smtp": ("smtp", R.waiting_smtp_host),
}
FIELD_STATES = {
    R.waiting_login.state: "login",
    R.waiting_imap_host.state: "imap",
    R.waiting_imap_port.state: "imap",
    R.waiting_smtp_host.state: "smtp",
    R.waiting_smtp_port.state: "smtp",
}


def _pending(mailbox: Mailbox, data: dict[str, Any]) -> tuple[str, MailServers]:
    """The account as it would be saved: stored values overlaid with the user's changes."""
    current = servers_of(mailbox)
    imap = ServerSettings(
        data.get("imap_host", current.imap.host),
        int(data.get("imap_port", current.imap.port)),
        Security(data.get("imap_sec", current.imap.security.value)),
    )
    smtp = ServerSettings(
        data.get("smtp_host", current.smtp.host),
        int(data.get("smtp_port", current.smtp.port)),
        Security(data.get("smtp_sec", current.smtp.security.value)),
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
        rows.append([b("rc_imap", "btn.change_imap_host"), b("rc_smtp", "btn.change_smtp_host")])
    rows.append([b("card", "btn.cancel")])
    return text, kb.markup(rows)


async def _show_menu(message: Message, t: Translator, mailbox: Mailbox, state: FSMContext, *, in_place: bool = False) -> None:
    """The Reconnect menu; `in_place`: edit the menu message the last question was asked in
    (after a changed field), a new message only when it can't be edited."""
    await state.set_state(R.choosing)
    data = await state.get_data()
    text, markup = _menu(t, mailbox, data)
    menu_id = data.get("rc_menu")
    if in_place and menu_id and message.bot is not None:
        try:
            await message.bot.edit_message_text(text=text, chat_id=message.chat.id, message_id=int(menu_id), reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                return
            log.debug("reconnect menu %s not editable: %s", menu_id, exc.message)
    sent = await message.answer(text, reply_markup=markup)
    await state.update_data(rc_menu=sent.message_id)


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
        await progress.edit_text(check_failure(t, exc, servers=servers))
        await _show_menu(message, t, mailbox, state)
        return
    await state.clear()
    await progress.edit_text(t("reconnect.done"))
    await message.answer(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))


CONFIRM_KEY = "confirm_delete"  # FSM data: {"mailbox_id": ..., "nonce": ...} of the current confirmation


async def _arm_delete(state: FSMContext, mailbox_id: int) -> str:
    """A fresh nonce for this confirmation: it replaces (and so disarms) any older one. Kept in
    the FSM data, which is shared by every instance when the FSM storage is Redis (several
    instances need that storage anyway: the wizard lives there too)."""
    nonce = secrets.token_urlsafe(6)
    await state.update_data({CONFIRM_KEY: {"mailbox_id": mailbox_id, "nonce": nonce}})
    return nonce


async def _disarm_delete(state: FSMContext, mailbox_id: int, nonce: str) -> bool:
    """Consume the confirmation: True only for the current one of this mailbox (once)."""
    data = await state.get_data()
    current = data.get(CONFIRM_KEY) or {}
    if not nonce or current.get("mailbox_id") != mailbox_id or current.get("nonce") != nonce:
        return False
    await state.update_data({CONFIRM_KEY: None})
    return True


@router.callback_query(AccountCB.filter(F.action.in_({"delete_yes", "delete_no"})))
async def on_delete_answer(
    cb: CallbackQuery, callback_data: AccountCB, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext
) -> None:
    """Yes or No on a delete confirmation: each works once, only on the confirmation it belongs
    to, and only while it is the current one (No disarms Yes)."""
    if not await _disarm_delete(state, callback_data.mailbox_id, callback_data.value):
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    try:
        mailbox = await mailboxes.owned(user.id, callback_data.mailbox_id)
    except NotYourMailbox:
        await cb.answer(t("error.not_your_mailbox"), show_alert=True)
        return
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    if callback_data.action == "delete_no":
        await cb.message.edit_text(mailbox_summary(t, mailbox), reply_markup=kb.account_card(t, mailbox))
        return
    email = mailbox.email
    await mailboxes.delete_account(user.id, mailbox.id)
    await state.clear()
    await cb.message.edit_text(t("delete.done", email=email), reply_markup=kb.connect_only(t))


@router.callback_query(AccountCB.filter(F.action.in_({"reconnect", "rc_save", "rc_password", "delete", *FIELDS})))
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
    action = callback_data.action
    data = await state.get_data()
    in_reconnect = await state.get_state() in {s.state for s in R.__states__} and data.get("mailbox_id") == mailbox.id
    if action not in {"reconnect", "delete"} and not in_reconnect:  # a button of a menu left behind
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    message = cb.message
    if action == "reconnect":
        await state.clear()
        await state.update_data(mailbox_id=mailbox.id)
        await _show_menu(message, t, mailbox, state)
    elif action == "delete":
        await state.clear()
        nonce = await _arm_delete(state, mailbox.id)

        def answer(action: str, key: str) -> kb.Button:
            return kb.Button(text=t(key), callback_data=AccountCB(mailbox_id=mailbox.id, action=action, value=nonce).pack())

        await message.answer(
            t("delete.confirm", email=mailbox.email),
            reply_markup=kb.markup([[answer("delete_yes", "btn.delete_yes")], [answer("delete_no", "btn.delete_no")]]),
        )
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
        if field == "login":
            question = t("reconnect.ask_login", current=login)
        else:  # the menu becomes the question, and comes back in its place after the answer
            server = servers.imap if field == "imap" else servers.smtp
            ssl_port, tls_port = (993, 143) if field == "imap" else (465, 587)
            question = t(
                "connect.ask_server", protocol=field.upper(), current=Html(server_line(t, server)),
                ssl_port=ssl_port, tls_port=tls_port,
            )
        await state.set_state(target)
        await state.update_data(rc_menu=message.message_id)
        cancel = kb.Button(text=t("btn.cancel"), callback_data=AccountCB(mailbox_id=mailbox.id, action="card").pack())
        await message.edit_text(question, reply_markup=kb.markup([[cancel]]))


@router.message(R.waiting_password)
async def on_new_password(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    password = await take_password(message, t)
    if password is not None:
        await _save(message, t, mailboxes, user, state, password=password)


@router.message(StateFilter(*FIELD_STATES), F.text)
async def on_field(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    field = FIELD_STATES.get(await state.get_state() or "", "login")
    text = (message.text or "").strip()
    update: dict[str, Any]
    if field == "login":
        if not 0 < len(text) <= 320 or any(c.isspace() for c in text):
            await message.answer(t("error.bad_login"))
            return
        update = {"login": text}
    else:
        try:
            found = parse_servers(text, allow_private=mailboxes.deps.guard.allow_private)
            update = as_update(assign(found, field))
        except ServerInputRefused as refused:
            await message.answer(t(refused.key, **refused.values))
            return
    await state.update_data(update)
    data = await state.get_data()
    try:
        mailbox = await mailboxes.owned(user.id, int(data.get("mailbox_id", 0)))
    except NotYourMailbox:
        await state.clear()
        await message.answer(t("error.not_your_mailbox"))
        return
    await _show_menu(message, t, mailbox, state, in_place=True)


@router.message(StateFilter(R.choosing))
async def on_text_in_menu(message: Message, t: Translator) -> None:
    """The menu leads to the password step: text typed here may be the password itself."""
    if message.text:
        await delete_secret(message, t)
        await message.answer(t("secret.unexpected_deleted"))
    else:
        await message.answer(t("error.use_buttons"))

