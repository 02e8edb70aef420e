"""The connect wizard: service -> e-mail -> login -> (servers) -> password -> check ->
signature -> alerts -> mobile -> business processes -> save.

Handlers only parse input, call `MailboxService`, and render. Every wizard button carries the
wizard's nonce, so a button from an older wizard (or a forged one) is refused. The password
is taken from the message, the message is deleted at once, and the password goes straight to
the service (which encrypts it): it is never put in FSM storage, a log or a reply.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards as kb
from bot.callbacks import MenuCB, ServiceCB, WizardCB
from bot.config import Settings
from bot.i18n import Html, Translator, on_off
from bot.render import check_failure, hint_text, mailbox_summary, server_line
from bot.routing import RouteTable
from bot.secrets_input import delete_secret, take_password
from bot.server_input import ServerInputRefused, as_update, assign, parse_servers
from bot.states import ConnectMailbox as S
from mail.types import FailureKind, MailCheckError, MailServers, Security, ServerSettings
from mail.validate import parse_email
from services.admin import company_for_address
from services.catalog import service_hint, service_servers
from services.mailboxes import (
    SIGNATURE_MAX,
    AccountInput,
    AlreadyConnected,
    MailboxService,
    NoDraft,
    Preferences,
)
from services.oauth import wizard_flow
from storage.models import ServiceKind, User

log = logging.getLogger(__name__)
router = RouteTable("connect")

AUTH_KINDS = {FailureKind.AUTH_FAILED, FailureKind.IMAP_DISABLED, FailureKind.APP_PASSWORD_REQUIRED}
# one step per server, answered with `host:port` (or both servers at once); the port states are
# from before that and are answered the same way (a conversation may still be in one of them)
SERVER_STEPS: dict[str, State] = {"imap": S.waiting_imap_host, "smtp": S.waiting_smtp_host}
SERVER_STATES = {
    S.waiting_imap_host.state: "imap",
    S.waiting_imap_port.state: "imap",
    S.waiting_smtp_host.state: "smtp",
    S.waiting_smtp_port.state: "smtp",
}
# where unexpected text may be a password (typed or pasted just before or after the password step)
SECRET_STEPS = {S.reviewing_servers.state, S.choosing_fix.state}
BUTTON_STATES = (
    S.choosing_service,
    S.reviewing_servers,
    S.choosing_fix,
    S.choosing_alerts,
    S.choosing_mobile,
    S.choosing_processes,
    S.confirming,
)


# ---- helpers -------------------------------------------------------------------------------
def _servers(data: dict[str, Any]) -> MailServers:
    return MailServers(
        ServerSettings(data["imap_host"], int(data["imap_port"]), Security(data["imap_sec"])),
        ServerSettings(data["smtp_host"], int(data["smtp_port"]), Security(data["smtp_sec"])),
    )


def _store_servers(servers: MailServers) -> dict[str, Any]:
    return {
        "imap_host": servers.imap.host,
        "imap_port": servers.imap.port,
        "imap_sec": servers.imap.security.value,
        "smtp_host": servers.smtp.host,
        "smtp_port": servers.smtp.port,
        "smtp_sec": servers.smtp.security.value,
    }


def _account(data: dict[str, Any]) -> AccountInput:
    return AccountInput(
        service_id=int(data["service_id"]),
        email=data["email"],
        login=data.get("login") or data["email"],
        servers=_servers(data),
    )


def _hint(t: Translator, data: dict[str, Any]) -> str:
    return hint_text(t, data.get("hint") or "", data.get("imap_path") or "")


def _is_other(data: dict[str, Any]) -> bool:
    return data.get("service_kind") == ServiceKind.OTHER.value


async def begin(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    """Start (or restart) the wizard: a fresh nonce invalidates every older wizard button."""
    try:
        await mailboxes.ensure_can_connect(user.id)
    except AlreadyConnected:
        await message.answer(t("connect.already"), reply_markup=kb.start_menu(t, connected=True))
        return
    await mailboxes.discard_draft(user.id)
    await state.clear()
    await state.set_data({"wiz": secrets.token_urlsafe(6)})
    await show(S.choosing_service, message, state, t, mailboxes)


async def show(step: State, message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    """Enter a step and show its prompt as a new message."""
    await state.set_state(step)
    data = await state.get_data()
    text, keyboard = await _render(step, data, t, mailboxes)
    sent = await message.answer(text, reply_markup=keyboard)
    if step == S.reviewing_servers:  # edited in place from now on (one review in the chat)
        await state.update_data(review_msg=sent.message_id)


async def _show_review(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    """Back to the server review: the review message is edited in place (a new one only when
    it can't be edited any more)."""
    await state.set_state(S.reviewing_servers)
    data = await state.get_data()
    review_id = data.get("review_msg")
    if review_id and message.bot is not None:
        text, keyboard = await _render(S.reviewing_servers, data, t, mailboxes)
        try:
            await message.bot.edit_message_text(
                text=text, chat_id=message.chat.id, message_id=int(review_id), reply_markup=keyboard
            )
            return
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                return
            log.debug("server review %s not editable: %s", review_id, exc.message)
    await show(S.reviewing_servers, message, state, t, mailboxes)


async def _render(
    step: State, data: dict[str, Any], t: Translator, mailboxes: MailboxService
) -> tuple[str, InlineKeyboardMarkup]:
    nonce = data["wiz"]
    nav = kb.nav_row(t, nonce)
    if step == S.choosing_service:
        items = await mailboxes.services.list_enabled()
        return t("connect.pick_service"), kb.services(t, nonce, items)
    if step == S.waiting_email:
        return t("connect.ask_email", service=data["service_name"]), kb.markup([nav])
    if step == S.waiting_login:
        use = kb.wiz(t, nonce, "login_default", "btn.use_login", login=data["email"])
        text = t("connect.ask_login", email=data["email"])
        rows = [[use], nav]
        if data.get("company_id") and _is_other(data):  # the address is at a company server's domain
            name = data.get("company_name", "")
            text = t("company.wizard_offer", service=name) + "\n\n" + text
            rows.insert(0, [kb.wiz(t, nonce, "company", "company.wizard_btn", str(data["company_id"]), service=name)])
        return text, kb.markup(rows)
    if step == S.reviewing_servers:
        servers = _servers(data)
        source = data.get("source") or "guess"
        text = t(
            "connect.review_servers",
            source=t(f"source.{source}"),
            imap=Html(server_line(t, servers.imap)),
            smtp=Html(server_line(t, servers.smtp)),
        )
        rows = [
            [kb.wiz(t, nonce, "servers_ok", "btn.servers_ok")],
            [kb.wiz(t, nonce, "edit", "btn.edit_imap_host", "imap"), kb.wiz(t, nonce, "edit", "btn.edit_smtp_host", "smtp")],
            [kb.wiz(t, nonce, "sec", "btn.imap_security", "imap", sec=t(f"security.{servers.imap.security.value}"))],
            [kb.wiz(t, nonce, "sec", "btn.smtp_security", "smtp", sec=t(f"security.{servers.smtp.security.value}"))],
            nav,
        ]
        return text, kb.markup(rows)
    if step.state in SERVER_STATES:
        proto = SERVER_STATES[step.state]
        server = _servers(data).imap if proto == "imap" else _servers(data).smtp
        ssl_port, tls_port = (993, 143) if proto == "imap" else (465, 587)
        text = t(
            "connect.ask_server", protocol=proto.upper(), current=Html(server_line(t, server)),
            ssl_port=ssl_port, tls_port=tls_port,
        )
        return text, kb.markup([nav])
    if step == S.waiting_password:
        text = t("connect.ask_password", login=data.get("login") or data["email"])
        if data.get("oauth"):
            text += "\n\n" + t("oauth.or_authorize", service=data["service_name"])
        hint = _hint(t, data)
        authorize = [kb.wiz(t, nonce, "oauth", "oauth.btn_authorize", service=data["service_name"])] if data.get("oauth") else []
        return (hint + "\n\n" + text if hint else text), kb.markup([authorize, nav])
    if step == S.waiting_signature:
        return t("connect.ask_signature", limit=SIGNATURE_MAX), kb.markup(
            [[kb.wiz(t, nonce, "no_signature", "btn.no_signature")], nav]
        )
    if step == S.choosing_alerts:
        return t("connect.ask_alerts"), kb.markup(
            [[kb.wiz(t, nonce, "alerts", "btn.notify", "1"), kb.wiz(t, nonce, "alerts", "btn.dont_notify", "0")], nav]
        )
    if step == S.choosing_mobile:
        return t("connect.ask_mobile"), kb.markup(
            [[kb.wiz(t, nonce, "mobile", "btn.mobile_sound", "1"), kb.wiz(t, nonce, "mobile", "btn.mobile_silent", "0")], nav]
        )
    if step == S.choosing_processes:
        return t("connect.ask_processes"), kb.markup(
            [[kb.wiz(t, nonce, "processes", "btn.allow", "1"), kb.wiz(t, nonce, "processes", "btn.deny", "0")], nav]
        )
    if step == S.confirming:
        text = t(
            "connect.confirm",
            email=data["email"],
            service=data["service_name"],
            signature=data.get("signature") or t("word.none"),
            alerts=on_off(t, data.get("notify", True)),
            sound=on_off(t, data.get("sound", True)),
            processes=on_off(t, data.get("processes", False)),
        )
        return text, kb.markup([[kb.wiz(t, nonce, "save", "btn.save")], nav])
    raise ValueError(f"no view for {step}")


def _previous(step: str | None, data: dict[str, Any]) -> State:
    other = _is_other(data)
    back: dict[str | None, State] = {
        S.waiting_email.state: S.choosing_service,
        S.waiting_login.state: S.waiting_email,
        S.reviewing_servers.state: S.waiting_login,
        S.waiting_password.state: S.reviewing_servers if other else S.waiting_login,
        S.choosing_fix.state: S.waiting_password,
        S.waiting_signature.state: S.waiting_password,
        S.choosing_alerts.state: S.waiting_signature,
        S.choosing_mobile.state: S.choosing_alerts,
        S.choosing_processes.state: S.choosing_mobile if data.get("notify", True) else S.choosing_alerts,
        S.confirming.state: S.choosing_processes,
    }
    for field_state in SERVER_STATES:
        back[field_state] = S.reviewing_servers if not data.get("has_secret") else S.waiting_password
    return back.get(step, S.choosing_service)


async def _fresh(cb: CallbackQuery, nonce: str, state: FSMContext, t: Translator) -> bool:
    """True when the button belongs to the wizard in progress; otherwise tell the user."""
    data = await state.get_data()
    if not data.get("wiz") or data.get("wiz") != nonce or await state.get_state() is None:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return False
    return True


async def _take(cb: CallbackQuery, nonce: str, state: FSMContext, t: Translator) -> Message | None:
    """Accept a wizard button: refuse stale ones, answer the query, retire the keyboard.
    Returns the message the button was on (None when refused or no longer accessible)."""
    if not await _fresh(cb, nonce, state, t):
        return None
    await cb.answer()
    await _retire(cb)
    return cb.message if isinstance(cb.message, Message) else None


async def _retire(cb: CallbackQuery) -> None:
    """Remove the keyboard of the message whose button was pressed (one answer per step)."""
    if isinstance(cb.message, Message) and cb.message.reply_markup is not None:
        try:
            await cb.message.edit_reply_markup(reply_markup=None)
        except Exception:  # the message may be too old to edit; the nonce still protects it
            log.debug("could not remove keyboard", exc_info=True)


async def _run_check(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    data = await state.get_data()
    progress = await message.answer(t("connect.checking"))
    try:
        await mailboxes.check_draft(user.id, _account(data))
    except MailCheckError as exc:
        await state.update_data(fail_kind=exc.kind.value, fail_protocol=exc.protocol.value)
        await state.set_state(S.choosing_fix)
        await progress.edit_text(
            check_failure(t, exc, hint=_hint(t, data), servers=_servers(data)),
            reply_markup=_fix_keyboard(t, data, exc),
        )
        return
    except NoDraft:
        await progress.edit_text(t("error.wizard_lost"))
        await state.clear()
        return
    await progress.edit_text(t("connect.check_ok"))
    await show(S.waiting_signature, message, state, t, mailboxes)


def _fix_keyboard(t: Translator, data: dict[str, Any], exc: MailCheckError) -> InlineKeyboardMarkup:
    nonce = data["wiz"]
    rows: list[list[kb.Button]] = []
    if exc.kind in AUTH_KINDS:
        rows.append([kb.wiz(t, nonce, "fix", "btn.fix_password", "password")])
        rows.append([kb.wiz(t, nonce, "fix", "btn.fix_login", "login"), kb.wiz(t, nonce, "fix", "btn.fix_email", "email")])
    elif _is_other(data):
        protos = [exc.protocol.value] + [o.protocol.value for o in exc.others if o.protocol != exc.protocol]
        rows.append([kb.wiz(t, nonce, "fix", f"btn.fix_{proto}_host", proto) for proto in protos])
        rows.append([kb.wiz(t, nonce, "fix", "btn.fix_servers", "servers")])
    rows.append([kb.wiz(t, nonce, "retry", "btn.retry")])
    rows.append([kb.wiz(t, nonce, "cancel", "btn.cancel")])
    return kb.markup(rows)


async def _after_field_edit(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    """After fixing a field: re-check at once when the password is already known."""
    data = await state.get_data()
    if data.get("has_secret"):
        await _run_check(message, state, t, mailboxes, user)
    else:
        await show(S.reviewing_servers, message, state, t, mailboxes)


# ---- entry points --------------------------------------------------------------------------
@router.callback_query(MenuCB.filter(F.action == "connect"))
async def on_connect(cb: CallbackQuery, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await _retire(cb)
        await begin(cb.message, state, t, mailboxes, user)


@router.message(Command("cancel"))
async def on_cancel(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    if await state.get_state() is None:
        await message.answer(t("cancel.nothing"))
        return
    await mailboxes.discard_draft(user.id)
    await state.clear()
    await message.answer(t("cancel.done"), reply_markup=kb.start_menu(t, connected=await mailboxes.current(user.id) is not None))


@router.message(StateFilter(S), Command("start", "settings", "connect", "inbox", "sent", "search"))
async def on_command_midway(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    """A command in the middle of the wizard: say so and show the same step again."""
    await message.answer(t("connect.in_progress"))
    step = await state.get_state()
    target = next((s for s in S.__states__ if s.state == step), S.choosing_service)
    await show(target, message, state, t, mailboxes)


@router.callback_query(WizardCB.filter(F.action == "cancel"))
async def on_cancel_button(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    await mailboxes.discard_draft(user.id)
    await state.clear()
    await message.answer(t("cancel.done"), reply_markup=kb.start_menu(t, connected=False))


@router.callback_query(WizardCB.filter(F.action == "back"))
async def on_back(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    data = await state.get_data()
    target = _previous(await state.get_state(), data)
    if target == S.waiting_password:
        await state.update_data(has_secret=False)
    if target == S.reviewing_servers:
        await _show_review(message, state, t, mailboxes)
        return
    await show(target, message, state, t, mailboxes)


# ---- service -------------------------------------------------------------------------------
@router.callback_query(ServiceCB.filter())
async def on_service(cb: CallbackQuery, callback_data: ServiceCB, state: FSMContext, t: Translator, mailboxes: MailboxService, settings: Settings | None = None) -> None:
    if not await _fresh(cb, callback_data.wiz, state, t):
        return
    if await state.get_state() != S.choosing_service.state:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    service = await mailboxes.get_service(callback_data.service_id)
    if service is None:
        await cb.answer(t("error.service_unavailable"), show_alert=True)
        return
    await cb.answer()
    await _retire(cb)
    await state.update_data(**await _service_data(service, t, mailboxes, settings))
    if isinstance(cb.message, Message):
        await show(S.waiting_email, cb.message, state, t, mailboxes)


async def _service_data(service: Any, t: Translator, mailboxes: MailboxService, settings: Settings | None) -> dict[str, Any]:
    """What the wizard keeps about the chosen service (and its prescribed servers)."""
    hint, imap_path = service_hint(service, t.lang)
    update: dict[str, Any] = {
        "service_id": service.id,
        "service_kind": service.kind,
        "service_name": service.name(t.lang),
        "hint": hint,
        "imap_path": imap_path,
        "has_secret": False,
        "oauth": await wizard_flow(mailboxes, settings, service),  # OAuth2 sign-in offered: "code" | "device" | None
    }
    servers = service_servers(service)
    if servers is not None:
        update.update(_store_servers(servers))
    return update


# ---- e-mail and login ----------------------------------------------------------------------
@router.message(S.waiting_email, F.text)
async def on_email(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    email = parse_email(message.text or "")
    if email is None:
        await message.answer(t("error.bad_email", value=(message.text or "")[:100]))
        return
    data = await state.get_data()
    old_email = data.get("email")
    login = data.get("login")
    update: dict[str, Any] = {"email": email}
    if not login or login == old_email:
        update["login"] = email
    if _is_other(data):  # Other, but a company server serves this domain: offer it
        company = await company_for_address(mailboxes.session, email)
        update["company_id"] = company.id if company is not None else None
        update["company_name"] = company.name(t.lang) if company is not None else None
    await state.update_data(**update)
    if data.get("has_secret"):
        await _after_field_edit(message, state, t, mailboxes, user)
        return
    await show(S.waiting_login, message, state, t, mailboxes)


async def _after_login(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    data = await state.get_data()
    if data.get("has_secret"):
        await _run_check(message, state, t, mailboxes, user)
        return
    if _is_other(data):
        await message.answer(t("connect.discovering"))
        proposal = await mailboxes.propose_servers(data["email"])
        if proposal is None:
            domain = data["email"].rsplit("@", 1)[1]
            guess = MailServers(
                ServerSettings(f"imap.{domain}", 993, Security.SSL),
                ServerSettings(f"smtp.{domain}", 465, Security.SSL),
            )
            await state.update_data(source="guess", **_store_servers(guess))
        else:
            await state.update_data(source=proposal.source, **_store_servers(proposal.servers))
        await show(S.reviewing_servers, message, state, t, mailboxes)
        return
    await show(S.waiting_password, message, state, t, mailboxes)


@router.message(S.waiting_login, F.text)
async def on_login(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    login = (message.text or "").strip()
    if not login or len(login) > 320 or any(ch.isspace() or ord(ch) < 32 for ch in login):
        await message.answer(t("error.bad_login"))
        return
    await state.update_data(login=login)
    await _after_login(message, state, t, mailboxes, user)


@router.callback_query(S.waiting_login, WizardCB.filter(F.action == "login_default"))
async def on_login_default(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    data = await state.get_data()
    await state.update_data(login=data["email"])
    await _after_login(message, state, t, mailboxes, user)


@router.callback_query(S.waiting_login, WizardCB.filter(F.action == "company"))
async def on_use_company(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService, settings: Settings | None = None) -> None:
    """Other -> the company server the address belongs to: its settings, no server questions."""
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    data = await state.get_data()
    value = callback_data.value
    service = await mailboxes.get_service(int(value)) if value.isdigit() and str(data.get("company_id")) == value else None
    if service is None or service.kind != ServiceKind.COMPANY.value:
        await message.answer(t("error.service_unavailable"))
        await state.update_data(company_id=None)
    else:
        await state.update_data(**await _service_data(service, t, mailboxes, settings), company_id=None)
    await show(S.waiting_login, message, state, t, mailboxes)


# ---- server settings (Other) ---------------------------------------------------------------
@router.callback_query(S.reviewing_servers, WizardCB.filter(F.action == "servers_ok"))
async def on_servers_ok(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    await show(S.waiting_password, message, state, t, mailboxes)


@router.callback_query(S.reviewing_servers, WizardCB.filter(F.action == "edit"))
async def on_edit_server(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    if not await _fresh(cb, callback_data.wiz, state, t):
        return
    target = SERVER_STEPS.get(callback_data.value)
    if target is None:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    await state.set_state(target)
    if isinstance(cb.message, Message):  # the review becomes the question, and comes back after it
        await state.update_data(review_msg=cb.message.message_id)
        text, keyboard = await _render(target, await state.get_data(), t, mailboxes)
        await cb.message.edit_text(text, reply_markup=keyboard)


@router.callback_query(S.reviewing_servers, WizardCB.filter(F.action == "sec"))
async def on_toggle_security(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    if not await _fresh(cb, callback_data.wiz, state, t):
        return
    if callback_data.value not in {"imap", "smtp"}:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    data = await state.get_data()
    proto = callback_data.value
    new = Security.STARTTLS if data[f"{proto}_sec"] == Security.SSL.value else Security.SSL
    defaults = {("imap", Security.SSL): 993, ("imap", Security.STARTTLS): 143, ("smtp", Security.SSL): 465, ("smtp", Security.STARTTLS): 587}
    update: dict[str, Any] = {f"{proto}_sec": new.value}
    old_default = defaults[(proto, Security(data[f"{proto}_sec"]))]
    if int(data[f"{proto}_port"]) == old_default:  # follow the well-known port unless customised
        update[f"{proto}_port"] = defaults[(proto, new)]
    await state.update_data(**update)
    if isinstance(cb.message, Message):
        text, keyboard = await _render(S.reviewing_servers, await state.get_data(), t, mailboxes)
        await cb.message.edit_text(text, reply_markup=keyboard)


async def _servers_typed(
    message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User, proto: str | None
) -> None:
    """Server settings typed at the review (`proto` None) or when asked for one server."""
    data = await state.get_data()
    try:
        found = parse_servers(message.text or "", allow_private=mailboxes.deps.guard.allow_private, strict=proto is None)
        update = as_update(assign(found, proto))
    except ServerInputRefused as refused:
        if proto is None and refused.not_a_server:  # at the review, just before the password: may be one
            await delete_secret(message, t)
            await message.answer(t("connect.unexpected_text_deleted"))
            return
        await message.answer(t(refused.key, **refused.values))
        return
    await state.update_data(update, source="manual")
    if data.get("has_secret"):  # fixing after a failed check: check again at once
        await _run_check(message, state, t, mailboxes, user)
    else:
        await _show_review(message, state, t, mailboxes)


@router.message(S.reviewing_servers, F.text)
async def on_servers_at_review(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await _servers_typed(message, state, t, mailboxes, user, None)


@router.message(StateFilter(*SERVER_STATES), F.text)
async def on_server(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    await _servers_typed(message, state, t, mailboxes, user, SERVER_STATES.get(await state.get_state() or ""))


# ---- password and check --------------------------------------------------------------------
@router.message(S.waiting_password)
async def on_password(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    password = await take_password(message, t)  # whatever was sent may be a secret: deleted first
    if password is None:
        return
    data = await state.get_data()
    try:
        await mailboxes.store_secret(user.id, _account(data), password)
    except AlreadyConnected:
        await state.clear()
        await message.answer(t("connect.already"))
        return
    del password
    await state.update_data(has_secret=True)
    await _run_check(message, state, t, mailboxes, user)


@router.callback_query(S.choosing_fix, WizardCB.filter(F.action == "fix"))
async def on_fix(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    if not await _fresh(cb, callback_data.wiz, state, t):
        return
    targets: dict[str, State] = {"password": S.waiting_password, "login": S.waiting_login, "email": S.waiting_email, "servers": S.reviewing_servers, **SERVER_STEPS}
    target = targets.get(callback_data.value)
    if target is None:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    await _retire(cb)
    if target in (S.waiting_password, S.reviewing_servers):
        await state.update_data(has_secret=False)
    if isinstance(cb.message, Message):
        await show(target, cb.message, state, t, mailboxes)


@router.callback_query(S.choosing_fix, WizardCB.filter(F.action == "retry"))
async def on_retry(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    await _run_check(message, state, t, mailboxes, user)


# ---- signature and preferences -------------------------------------------------------------
@router.message(S.waiting_signature, F.text)
async def on_signature(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    signature = (message.text or "").strip()
    if len(signature) > SIGNATURE_MAX:
        await message.answer(t("error.signature_too_long", limit=SIGNATURE_MAX, length=len(signature)))
        return
    await state.update_data(signature=signature)
    await message.answer(t("connect.signature_saved", signature=signature))
    await show(S.choosing_alerts, message, state, t, mailboxes)


@router.callback_query(S.waiting_signature, WizardCB.filter(F.action == "no_signature"))
async def on_no_signature(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    await state.update_data(signature="")
    await show(S.choosing_alerts, message, state, t, mailboxes)


@router.callback_query(WizardCB.filter(F.action.in_({"alerts", "mobile", "processes"})))
async def on_preference(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    if not await _fresh(cb, callback_data.wiz, state, t):
        return
    expected = {"alerts": S.choosing_alerts, "mobile": S.choosing_mobile, "processes": S.choosing_processes}[callback_data.action]
    if await state.get_state() != expected.state or callback_data.value not in {"0", "1"}:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    await _retire(cb)
    flag = callback_data.value == "1"
    if callback_data.action == "alerts":
        await state.update_data(notify=flag)
        nxt = S.choosing_mobile if flag else S.choosing_processes
    elif callback_data.action == "mobile":
        await state.update_data(sound=flag)
        nxt = S.choosing_processes
    else:
        await state.update_data(processes=flag)
        nxt = S.confirming
    if isinstance(cb.message, Message):
        await show(nxt, cb.message, state, t, mailboxes)


@router.callback_query(S.confirming, WizardCB.filter(F.action == "save"))
async def on_save(cb: CallbackQuery, callback_data: WizardCB, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User) -> None:
    message = await _take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    if not isinstance(cb.message, Message):
        return
    data = await state.get_data()
    prefs = Preferences(
        signature=data.get("signature", ""),
        notify=data.get("notify", True),
        notify_sound=data.get("sound", True),
        use_in_processes=data.get("processes", False),
    )
    progress = await cb.message.answer(t("connect.importing"))
    try:
        result = await mailboxes.finish(user.id, _account(data), prefs)
    except MailCheckError as exc:
        await state.update_data(fail_kind=exc.kind.value, fail_protocol=exc.protocol.value)
        await state.set_state(S.choosing_fix)
        await progress.edit_text(check_failure(t, exc, hint=_hint(t, data), servers=_servers(data)), reply_markup=_fix_keyboard(t, data, exc))
        return
    except NoDraft:
        await state.clear()
        await progress.edit_text(t("error.wizard_lost"))
        return
    await state.clear()
    await progress.edit_text(
        mailbox_summary(t, result.mailbox, imported=result.imported, title_key="connect.done"),
        reply_markup=kb.start_menu(t, connected=True),
    )


# ---- text where a button is expected -------------------------------------------------------
@router.message(StateFilter(*BUTTON_STATES))
async def on_text_instead_of_button(message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService) -> None:
    step = await state.get_state()
    if step in SECRET_STEPS and message.text:  # right before or after the password: may be one
        await delete_secret(message, t)
        await message.answer(t("secret.unexpected_deleted"))
    else:
        await message.answer(t("error.use_buttons"))
    if step == S.choosing_fix.state:  # its buttons are on the failure message just above
        return
    if step == S.reviewing_servers.state:
        await _show_review(message, state, t, mailboxes)
        return
    target = next((s for s in S.__states__ if s.state == step), S.choosing_service)
    await show(target, message, state, t, mailboxes)


@router.message(StateFilter(S))
async def on_non_text(message: Message, t: Translator) -> None:
    """A sticker, photo or file where text is expected."""
    await message.answer(t("error.need_text"))

