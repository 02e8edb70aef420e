"""/admin: services on/off, company servers, feature flags, status, outage broadcasts; and the
OAuth2 commands /oauth_flag on|off and /oauth_client (see README, OAuth2 sign-in).

Only the Telegram ids in Settings.admin_ids get anything here: the router itself carries the
`IsAdmin` filter (messages and buttons), so no handler can forget it. For anyone else neither
the command nor a (forged) admin button matches, so the ordinary "unknown command" reply (or
the current wizard step) and the ordinary stale-button answer come from the other routers.
One handler per button action (`AdminCB.filter(F.action == ...)`); an unknown action matches
nothing and gets the ordinary stale-button answer too.

Screens are edited in place when a button is pressed; what the admin must type (a company
server's fields, the notice) is asked in a new message, /cancel leaves such a step.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import F
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts import BroadcastRunner, audience_label, notice_text, progress_text, stop_markup
from bot.callbacks import AdminCB
from bot.config import Settings
from bot.filters import IsAdmin
from bot.i18n import Translator, on_off
from bot.render import DETAIL_MAX, when
from bot.routing import RouteTable
from mail.types import Protocol, ServerSettings
from services.admin import (
    AdminService,
    CompanyInput,
    InUse,
    NotFound,
    ProbeReport,
    company_server,
    parse_domains,
    parse_name,
    parse_server,
    server_text,
)
from services.broadcasts import (
    AUDIENCE_ALL,
    TEXT_MAX,
    Audience,
    BroadcastProblem,
    BroadcastService,
    JobInfo,
    NoRecipients,
    NotDraft,
)
from services.deps import MailDeps
from services.hooks import after_commit
from services.mailboxes import MailboxService
from services.oauth import OAuthService
from storage.models import Broadcast, BroadcastState, Service, User

log = logging.getLogger(__name__)
router = RouteTable("admin", message_filters=(IsAdmin(),), callback_filters=(IsAdmin(),))

COMPANY_STEPS = ("name", "domains", "imap", "smtp")


class AdminInput(StatesGroup):
    company_field = State()  # data: adm_field, adm_company (0: a new server), adm_new
    broadcast_text = State()  # data: adm_bc (a draft being re-worded) or none


def button(section: str, action: str) -> Any:
    """The filter of the one handler for an admin button."""
    return AdminCB.filter((F.section == section) & (F.action == action))


# ---- small helpers -------------------------------------------------------------------------
def _b(t: Translator, key: str, section: str, action: str, item: int = 0, value: str = "", **fmt: Any) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=t(key, **fmt), callback_data=AdminCB(section=section, action=action, item=item, value=value).pack()
    )


def _markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[row for row in rows if row])


def _back(t: Translator, section: str = "menu", action: str = "show", item: int = 0) -> list[InlineKeyboardButton]:
    return [_b(t, "btn.back", section, action, item)]


def _deps(mailboxes: MailboxService) -> MailDeps:
    return mailboxes.deps


def _admin(session: AsyncSession, mailboxes: MailboxService, settings: Settings) -> AdminService:
    return AdminService(session, _deps(mailboxes), settings)


async def _show(cb: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Replace the screen the button was on (or send it anew when that message is gone)."""
    if isinstance(cb.message, Message):
        try:
            await cb.message.edit_text(text, reply_markup=markup)
            return
        except Exception as exc:  # "not modified", or too old to edit
            if "not modified" in str(exc):
                return
            log.debug("could not edit the admin screen", exc_info=True)
        await cb.message.answer(text, reply_markup=markup)


def _server_line(t: Translator, server: ServerSettings | None) -> str:
    if server is None:
        return t("word.none")
    return f"{server.host}:{server.port} · {t(f'security.{server.security.value}')}"


# ---- the menu ------------------------------------------------------------------------------
def _menu(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [_b(t, "admin.btn_services", "svc", "list")],
        [_b(t, "admin.btn_companies", "co", "list")],
        [_b(t, "admin.btn_flags", "flag", "list")],
        [_b(t, "admin.btn_status", "status", "show")],
        [_b(t, "admin.btn_broadcast", "bc", "new")],
    ]
    return t("admin.menu"), _markup(rows)


@router.message(Command("admin"))
async def on_admin(message: Message, state: FSMContext, t: Translator) -> None:
    if await state.get_state() in {s.state for s in AdminInput.__states__}:
        await state.clear()
    text, markup = _menu(t)
    await message.answer(text, reply_markup=markup)


@router.message(StateFilter(AdminInput), Command("cancel"))
async def on_cancel_input(message: Message, state: FSMContext, t: Translator) -> None:
    await state.clear()
    text, markup = _menu(t)
    await message.answer(t("admin.input_cancelled") + "\n\n" + text, reply_markup=markup)


@router.callback_query(button("menu", "show"))
async def on_menu(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer()
    await _show(cb, *_menu(t))


@router.callback_query(button("menu", "cancel"))
async def on_menu_cancel(cb: CallbackQuery, state: FSMContext, t: Translator) -> None:
    """Cancel under a question the admin was to answer by typing: leave that step."""
    await cb.answer()
    if await state.get_state() in {s.state for s in AdminInput.__states__}:
        await state.clear()
    await _show(cb, *_menu(t))


# ---- standard services ---------------------------------------------------------------------
async def _services_screen(t: Translator, admin: AdminService) -> tuple[str, InlineKeyboardMarkup]:
    rows = []
    for row in await admin.standard_services():
        icon = "✅" if row.service.enabled else "🚫"
        rows.append([_b(t, "admin.svc_btn", "svc", "open", row.service.id, icon=icon, service=row.service.name(t.lang), count=row.accounts)])
    rows.append(_back(t))
    return t("admin.svc_title"), _markup(rows)


async def _service_card(t: Translator, admin: AdminService, service: Service, back: str = "svc") -> tuple[str, InlineKeyboardMarkup]:
    total, accounts = await admin.accounts(service.id)
    lines = [
        t(
            "admin.svc_card",
            service=service.name(t.lang),
            state=t("admin.in_wizard") if service.enabled else t("admin.not_in_wizard"),
            count=total,
        )
    ]
    for box in accounts:
        lines.append(t("admin.account_line", email=box.email, state=t(f"state.{box.state}")))
    if total > len(accounts):
        lines.append(t("admin.accounts_more", count=total - len(accounts)))
    toggle = "admin.btn_hide" if service.enabled else "admin.btn_show"
    rows = [[_b(t, toggle, back, "toggle", service.id)], _back(t, back, "list")]
    return "\n".join(lines), _markup(rows)


@router.callback_query(button("svc", "list"))
async def on_services(cb: CallbackQuery, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings) -> None:
    await cb.answer()
    await _show(cb, *await _services_screen(t, _admin(session, mailboxes, settings)))


@router.callback_query(button("svc", "open"))
async def on_service_open(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    try:
        service = await admin.service(callback_data.item)
    except NotFound:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    await _show(cb, *await _service_card(t, admin, service))


@router.callback_query(button("svc", "toggle"))
async def on_service_toggle(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    try:
        service = await admin.service(callback_data.item)
        service = await admin.set_enabled(service.id, not service.enabled)
    except NotFound:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    key = "admin.toast_shown" if service.enabled else "admin.toast_hidden"
    await cb.answer(t(key, service=service.name(t.lang)))
    await _show(cb, *await _service_card(t, admin, service))


# ---- company servers -----------------------------------------------------------------------
async def _companies_screen(t: Translator, admin: AdminService) -> tuple[str, InlineKeyboardMarkup]:
    rows = []
    companies = await admin.companies()
    for row in companies:
        icon = "🏢" if row.service.enabled else "🚫"
        rows.append([_b(t, "admin.co_btn", "co", "open", row.service.id, icon=icon, service=row.service.name(t.lang), count=row.accounts)])
    rows.append([_b(t, "admin.co_btn_add", "co", "add")])
    rows.append(_back(t))
    text = t("admin.co_title") + ("" if companies else "\n\n" + t("admin.co_none"))
    return text, _markup(rows)


async def _company_card(t: Translator, admin: AdminService, service: Service) -> tuple[str, InlineKeyboardMarkup]:
    total, _ = await admin.accounts(service.id, limit=0)
    text = t(
        "admin.co_card",
        service=service.name(t.lang),
        code=service.code,
        domains=", ".join(service.domain_list) or t("word.none"),
        imap=_server_line(t, company_server(service, Protocol.IMAP)),
        smtp=_server_line(t, company_server(service, Protocol.SMTP)),
        state=t("admin.in_wizard") if service.enabled else t("admin.not_in_wizard"),
        count=total,
    )
    sid = service.id
    rows = [
        [_b(t, "admin.co_btn_test", "co", "test", sid)],
        [_b(t, "admin.co_btn_name", "co", "edit", sid, "name"), _b(t, "admin.co_btn_domains", "co", "edit", sid, "domains")],
        [_b(t, "admin.co_btn_imap", "co", "edit", sid, "imap"), _b(t, "admin.co_btn_smtp", "co", "edit", sid, "smtp")],
        [_b(t, "admin.btn_hide" if service.enabled else "admin.btn_show", "co", "toggle", sid)],
        [_b(t, "admin.co_btn_remove", "co", "del", sid)],
        _back(t, "co", "list"),
    ]
    return text, _markup(rows)


def _cancel_row(t: Translator) -> list[InlineKeyboardButton]:
    return [_b(t, "btn.cancel", "menu", "cancel")]


async def _ask_company_field(message: Message, state: FSMContext, t: Translator, field: str, current: str = "") -> None:
    await state.set_state(AdminInput.company_field)
    await state.update_data(adm_field=field)
    text = t(f"admin.co_ask_{field}")
    if current:
        text += "\n\n" + t("admin.co_current", value=current)
    await message.answer(text, reply_markup=_markup([_cancel_row(t)]))


def _field_value(service: Service, field: str) -> str:
    if field == "name":
        return service.name_en
    if field == "domains":
        return ", ".join(service.domain_list)
    server = company_server(service, Protocol.IMAP if field == "imap" else Protocol.SMTP)
    return server_text(server) if server is not None else ""


def _test_report(t: Translator, service: Service, reports: list[ProbeReport]) -> str:
    lines = [t("admin.co_test_title", service=service.name(t.lang))]
    for report in reports:
        proto = report.protocol.value.upper()
        where = _server_line(t, report.server)
        if report.ok:
            lines.append(t("admin.co_test_ok", protocol=proto, server=where, tls=report.tls_version or "TLS", greeting=report.greeting))
            continue
        kind = report.kind.value if report.kind is not None else "protocol"
        lines.append(t("admin.co_test_fail", protocol=proto, server=where) + "\n" + t(f"fail.{kind}", protocol=proto))
        if report.detail and report.server_said:
            lines.append(t("fail.server_said", detail=report.detail[:DETAIL_MAX]))
    all_ok = bool(reports) and all(r.ok for r in reports)
    lines.append("")
    lines.append(t("admin.co_test_all_ok") if all_ok else t("admin.co_test_some_failed"))
    return "\n".join(lines)


async def _company(cb: CallbackQuery, admin: AdminService, t: Translator, sid: int) -> Service | None:
    """The company server a button names, or None after the stale-button answer."""
    try:
        service = await admin.service(sid)
    except NotFound:
        service = None
    if service is None or service.kind != "company":
        await cb.answer(t("error.stale_button"), show_alert=True)
        return None
    return service


@router.callback_query(button("co", "list"))
async def on_companies(cb: CallbackQuery, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings) -> None:
    await cb.answer()
    await _show(cb, *await _companies_screen(t, _admin(session, mailboxes, settings)))


@router.callback_query(button("co", "add"))
async def on_company_add(cb: CallbackQuery, state: FSMContext, t: Translator) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await state.update_data(adm_company=0, adm_new={})
        await _ask_company_field(cb.message, state, t, "name")


@router.callback_query(button("co", "open"))
async def on_company_open(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    service = await _company(cb, admin, t, callback_data.item)
    if service is None:
        return
    await cb.answer()
    await _show(cb, *await _company_card(t, admin, service))


@router.callback_query(button("co", "toggle"))
async def on_company_toggle(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    service = await _company(cb, admin, t, callback_data.item)
    if service is None:
        return
    try:
        service = await admin.set_enabled(service.id, not service.enabled)
    except NotFound:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    key = "admin.toast_shown" if service.enabled else "admin.toast_hidden"
    await cb.answer(t(key, service=service.name(t.lang)))
    await _show(cb, *await _company_card(t, admin, service))


@router.callback_query(button("co", "edit"))
async def on_company_edit(
    cb: CallbackQuery,
    callback_data: AdminCB,
    state: FSMContext,
    t: Translator,
    session: AsyncSession,
    mailboxes: MailboxService,
    settings: Settings,
) -> None:
    field = callback_data.value
    service = await _company(cb, _admin(session, mailboxes, settings), t, callback_data.item)
    if service is None:
        return
    if field not in COMPANY_STEPS:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        await state.update_data(adm_company=service.id, adm_new=None)
        await _ask_company_field(cb.message, state, t, field, _field_value(service, field))


@router.callback_query(button("co", "test"))
async def on_company_test(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    service = await _company(cb, admin, t, callback_data.item)
    if service is None:
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        progress = await cb.message.answer(t("admin.co_testing", service=service.name(t.lang)))
        reports = await admin.test_company(service.id)
        await progress.edit_text(_test_report(t, service, reports), reply_markup=_markup([_back(t, "co", "open", service.id)]))


@router.callback_query(button("co", "del"))
async def on_company_remove(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    service = await _company(cb, admin, t, callback_data.item)
    if service is None:
        return
    sid = service.id
    total, _ = await admin.accounts(sid, limit=0)
    if total:
        await cb.answer(t("admin.co_in_use", count=total), show_alert=True)
        return
    await cb.answer()
    text = t("admin.co_remove_confirm", service=service.name(t.lang))
    await _show(cb, text, _markup([[_b(t, "admin.co_btn_remove_yes", "co", "del_yes", sid)], _back(t, "co", "open", sid)]))


@router.callback_query(button("co", "del_yes"))
async def on_company_remove_confirmed(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    admin = _admin(session, mailboxes, settings)
    service = await _company(cb, admin, t, callback_data.item)
    if service is None:
        return
    name = service.name(t.lang)
    try:
        await admin.remove_company(service.id)
    except InUse as exc:
        await cb.answer(t("admin.co_in_use", count=exc.accounts), show_alert=True)
        return
    except NotFound:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    await cb.answer(t("admin.co_removed", service=name))
    await _show(cb, *await _companies_screen(t, admin))


@router.message(AdminInput.company_field, F.text, ~F.text.startswith("/"))
async def on_company_field(
    message: Message, state: FSMContext, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    data = await state.get_data()
    field = data.get("adm_field")
    text = message.text or ""
    value: Any
    if field == "name":
        value = parse_name(text)
    elif field == "domains":
        value = parse_domains(text)
    elif field in {"imap", "smtp"}:
        value = parse_server(text, Protocol(field))
    else:
        await state.clear()
        return
    if value is None:
        await message.answer(t(f"admin.co_bad_{field}"), reply_markup=_markup([_cancel_row(t)]))
        return
    admin = _admin(session, mailboxes, settings)
    sid = int(data.get("adm_company") or 0)
    if not sid:  # adding: collect the fields one by one
        new = dict(data.get("adm_new") or {})
        new[field] = server_text(value) if isinstance(value, ServerSettings) else value
        position = COMPANY_STEPS.index(field)
        if position + 1 < len(COMPANY_STEPS):
            await state.update_data(adm_new=new)
            await _ask_company_field(message, state, t, COMPANY_STEPS[position + 1])
            return
        imap = parse_server(new["imap"], Protocol.IMAP)
        smtp = parse_server(new["smtp"], Protocol.SMTP)
        assert imap is not None and smtp is not None
        service = await admin.add_company(CompanyInput(new["name"], list(new["domains"]), imap, smtp))
        await state.clear()
        card, markup = await _company_card(t, admin, service)
        await message.answer(t("admin.co_added", service=service.name(t.lang)) + "\n\n" + card, reply_markup=markup)
        return
    try:
        if field == "name":
            service = await admin.rename_company(sid, value)
        elif field == "domains":
            service = await admin.set_domains(sid, value)
        else:
            service = await admin.set_server(sid, Protocol(field), value)
    except NotFound:
        await state.clear()
        await message.answer(t("error.stale_button"))
        return
    await state.clear()
    card, markup = await _company_card(t, admin, service)
    await message.answer(t("admin.co_saved") + "\n\n" + card, reply_markup=markup)


# ---- feature flags -------------------------------------------------------------------------
async def _flags_screen(t: Translator, admin: AdminService) -> tuple[str, InlineKeyboardMarkup]:
    lines = [t("admin.flags_title")]
    rows = []
    for index, flag in enumerate(await admin.flags()):
        lines.append("")
        lines.append(t("admin.flag_line", name=flag.name, state=on_off(t, flag.effective)))
        if flag.configured:
            lines.append(t("admin.flag_configured", name=flag.name, state=on_off(t, flag.effective)))
            if flag.stored is not None and flag.stored != flag.effective:
                lines.append(t("admin.flag_stored_ignored", state=on_off(t, flag.stored)))
            continue
        lines.append(t("admin.flag_from_chat") if flag.stored is not None else t("admin.flag_default"))
        key = "admin.flag_btn_off" if flag.effective else "admin.flag_btn_on"
        rows.append([_b(t, key, "flag", "set", index, "0" if flag.effective else "1", name=flag.name)])
    rows.append(_back(t))
    return "\n".join(lines), _markup(rows)


@router.callback_query(button("flag", "list"))
async def on_flags(cb: CallbackQuery, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings) -> None:
    await cb.answer()
    await _show(cb, *await _flags_screen(t, _admin(session, mailboxes, settings)))


@router.callback_query(button("flag", "set"))
async def on_flag_set(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings, user: User
) -> None:
    admin = _admin(session, mailboxes, settings)
    flags = await admin.flags()
    if not 0 <= callback_data.item < len(flags) or callback_data.value not in {"0", "1"}:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    flag = flags[callback_data.item]
    if flag.configured:
        await cb.answer(t("admin.flag_configured", name=flag.name, state=on_off(t, flag.effective)), show_alert=True)
    else:
        flag = await admin.set_flag(flag.name, callback_data.value == "1", by=user.id)
        await cb.answer(t("admin.flag_line", name=flag.name, state=on_off(t, flag.effective)))
    await _show(cb, *await _flags_screen(t, admin))


# ---- status --------------------------------------------------------------------------------
async def _status_screen(t: Translator, admin: AdminService) -> tuple[str, InlineKeyboardMarkup]:
    status = await admin.status()
    lines = [
        t(
            "admin.status",
            users=status.users,
            active=status.active_users,
            blocked=status.blocked_users,
            connected=status.connected,
            reconnecting=status.reconnecting,
            broken=status.broken,
        )
    ]
    if status.per_service:
        lines.append("")
        lines.append(t("admin.status_per_service"))
        for row in status.per_service:
            lines.append(
                t(
                    "admin.status_service",
                    service=row.service.name(t.lang),
                    connected=row.connected,
                    reconnecting=row.reconnecting,
                    broken=row.broken,
                )
            )
    lines.append("")
    if status.last_errors:
        lines.append(t("admin.status_errors"))
        for err in status.last_errors:
            lines.append(
                t(
                    "admin.status_error",
                    email=err.email,
                    service=err.service.name(t.lang) if err.service is not None else "?",
                    state=t(f"state.{err.state}"),
                    since=when(err.since),
                    error=err.error[:200],
                )
            )
    else:
        lines.append(t("admin.status_no_errors"))
    rows = [[_b(t, "admin.btn_refresh", "status", "show")], _back(t)]
    return "\n".join(lines), _markup(rows)


@router.callback_query(button("status", "show"))
async def on_status(
    cb: CallbackQuery, t: Translator, session: AsyncSession, mailboxes: MailboxService, settings: Settings
) -> None:
    await cb.answer()
    await _show(cb, *await _status_screen(t, _admin(session, mailboxes, settings)))


# ---- outage broadcast ----------------------------------------------------------------------
def _audience_value(audience: Audience) -> str:
    return "all" if audience.service is None else f"s{audience.service.id}"


def _audience_name(t: Translator, audience: Audience) -> str:
    return audience_label(t, audience.key, audience.service.name(t.lang) if audience.service else None)


async def _audience_picker(t: Translator, bcs: BroadcastService, broadcast_id: int) -> tuple[str, InlineKeyboardMarkup]:
    rows = []
    for audience in await bcs.audiences():
        label = _audience_name(t, audience)
        rows.append([_b(t, "admin.bc_btn_audience", "bc", "aud", broadcast_id, _audience_value(audience), audience=label, count=audience.reachable)])
    rows.append([_b(t, "admin.bc_btn_discard", "bc", "drop", broadcast_id)])
    return t("admin.bc_pick_audience"), _markup(rows)


def _confirm_screen(t: Translator, broadcast: Broadcast, audience: Audience) -> tuple[str, InlineKeyboardMarkup]:
    """The preview (the notice exactly as users get it) and the question, in ONE message: each
    admin action costs one message (Telegram allows about one a second per chat)."""
    bid = broadcast.id
    text = "\n\n".join([
        t("admin.bc_preview_intro"),
        notice_text(t, broadcast.text),
        "➖➖➖",
        t("admin.bc_confirm", audience=_audience_name(t, audience), count=audience.reachable, skipped=audience.inactive),
    ])
    rows = []
    if audience.reachable:
        rows.append([_b(t, "admin.bc_btn_send", "bc", "go", bid, count=audience.reachable)])
    else:
        text += "\n\n" + t("admin.bc_nobody")
    rows += [
        [_b(t, "admin.bc_btn_change_audience", "bc", "audpick", bid), _b(t, "admin.bc_btn_change_text", "bc", "retext", bid)],
        [_b(t, "admin.bc_btn_discard", "bc", "drop", bid)],
    ]
    return text, _markup(rows)


async def _progress_now(t: Translator, bcs: BroadcastService, broadcast: Broadcast) -> str:
    counts = await bcs.counts(broadcast.id)
    service = await bcs.service_of(broadcast.audience)
    info = JobInfo(
        broadcast_id=broadcast.id, text=broadcast.text, audience=broadcast.audience, state=broadcast.state,
        admin_language=t.lang, service=service, progress_chat_id=broadcast.progress_chat_id,
        progress_message_id=broadcast.progress_message_id, started_at=broadcast.started_at, finished_at=broadcast.finished_at,
    )
    elapsed = 0.0
    if broadcast.started_at is not None and broadcast.finished_at is not None:
        elapsed = (broadcast.finished_at - broadcast.started_at).total_seconds()
    return progress_text(t, info, counts, rate=0.0, elapsed=elapsed, state=broadcast.state)


async def _ask_text(message: Message, state: FSMContext, t: Translator, broadcast_id: int | None) -> None:
    await state.set_state(AdminInput.broadcast_text)
    await state.update_data(adm_bc=broadcast_id)
    await message.answer(t("admin.bc_ask_text", limit=TEXT_MAX), reply_markup=_markup([_cancel_row(t)]))


async def _refuse(cb: CallbackQuery, t: Translator, exc: Exception) -> None:
    """The answer to a broadcast button whose broadcast is gone, sent or has nobody to reach."""
    if isinstance(exc, NotDraft):
        await cb.answer(t("admin.bc_already_sent"), show_alert=True)
    elif isinstance(exc, NoRecipients):
        await cb.answer(t("admin.bc_nobody"), show_alert=True)
    else:
        await cb.answer(t("error.stale_button"), show_alert=True)


async def _draft(cb: CallbackQuery, t: Translator, bcs: BroadcastService, broadcast_id: int) -> Broadcast | None:
    """The draft a button acts on, or None after the answer (gone, or already sent)."""
    try:
        broadcast = await bcs.get(broadcast_id)
    except (NotFound, BroadcastProblem) as exc:
        await _refuse(cb, t, exc)
        return None
    if broadcast.state != BroadcastState.DRAFT.value:
        await cb.answer(t("admin.bc_already_sent"), show_alert=True)
        return None
    return broadcast


@router.callback_query(button("bc", "new"))
async def on_broadcast_new(cb: CallbackQuery, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    bcs = BroadcastService(session)
    message = cb.message if isinstance(cb.message, Message) else None
    running = await bcs.sending_now()
    if running is not None and message is not None:
        await cb.answer(t("admin.bc_busy"), show_alert=True)
        await message.answer(await _progress_now(t, bcs, running), reply_markup=stop_markup(t, running.id))
        return
    await cb.answer()
    if message is not None:
        await _ask_text(message, state, t, None)


@router.callback_query(button("bc", "stop"))
async def on_broadcast_stop(
    cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession, broadcasts: BroadcastRunner | None = None
) -> None:
    bcs = BroadcastService(session)
    bid = callback_data.item
    try:
        broadcast = await bcs.get(bid)
        stopped = await bcs.cancel(bid)
    except (NotFound, BroadcastProblem) as exc:
        await _refuse(cb, t, exc)
        return
    await cb.answer(t("admin.bc_stopping") if stopped else t("admin.bc_already_over"))
    if stopped and broadcasts is not None and broadcasts.running(bid):
        runner = broadcasts
        after_commit(session, lambda: runner.stop(bid, wait=False))
    else:  # nothing runs it in this process: the final word now
        await _show(cb, await _progress_now(t, bcs, broadcast), None)


@router.callback_query(button("bc", "aud"))
async def on_broadcast_audience(cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession) -> None:
    bcs = BroadcastService(session)
    broadcast = await _draft(cb, t, bcs, callback_data.item)
    if broadcast is None:
        return
    value = callback_data.value
    try:
        if value == "all":
            key = AUDIENCE_ALL
        elif value.startswith("s") and value[1:].isdigit():
            key = await bcs.service_audience_key(int(value[1:]))
        else:
            raise NotFound(value)
        audience = await bcs.set_audience(broadcast.id, key)
    except (NotDraft, NoRecipients, NotFound, BroadcastProblem) as exc:
        await _refuse(cb, t, exc)
        return
    await cb.answer()
    await _show(cb, *_confirm_screen(t, broadcast, audience))


@router.callback_query(button("bc", "audpick"))
async def on_broadcast_audiences(cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession) -> None:
    bcs = BroadcastService(session)
    broadcast = await _draft(cb, t, bcs, callback_data.item)
    if broadcast is None:
        return
    await cb.answer()
    await _show(cb, *await _audience_picker(t, bcs, broadcast.id))


@router.callback_query(button("bc", "retext"))
async def on_broadcast_retext(cb: CallbackQuery, callback_data: AdminCB, state: FSMContext, t: Translator, session: AsyncSession) -> None:
    broadcast = await _draft(cb, t, BroadcastService(session), callback_data.item)
    if broadcast is None:
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        await _ask_text(cb.message, state, t, broadcast.id)


@router.callback_query(button("bc", "drop"))
async def on_broadcast_drop(cb: CallbackQuery, callback_data: AdminCB, t: Translator, session: AsyncSession) -> None:
    bcs = BroadcastService(session)
    broadcast = await _draft(cb, t, bcs, callback_data.item)
    if broadcast is None:
        return
    try:
        await bcs.discard(broadcast.id)
    except (NotDraft, NotFound, BroadcastProblem) as exc:
        await _refuse(cb, t, exc)
        return
    await cb.answer()
    await _show(cb, t("admin.bc_discarded"), None)


@router.callback_query(button("bc", "go"))
async def on_broadcast_go(
    cb: CallbackQuery,
    callback_data: AdminCB,
    t: Translator,
    session: AsyncSession,
    user: User,
    broadcasts: BroadcastRunner | None = None,
) -> None:
    bcs = BroadcastService(session)
    broadcast = await _draft(cb, t, bcs, callback_data.item)
    if broadcast is None:
        return
    bid = broadcast.id
    try:
        total = await bcs.confirm(bid)  # (refreshes `broadcast`: the same row)
    except (NotDraft, NoRecipients, NotFound, BroadcastProblem) as exc:
        await _refuse(cb, t, exc)
        return
    await cb.answer(t("admin.bc_started", count=total))
    if isinstance(cb.message, Message):
        message = cb.message
        await _show(cb, await _progress_now(t, bcs, broadcast), stop_markup(t, bid))
        await bcs.set_progress_message(bid, message.chat.id, message.message_id)
    log.info("admin %s confirmed broadcast %s to %s (%d rows)", user.id, bid, broadcast.audience, total)
    if broadcasts is not None:
        runner = broadcasts

        async def start() -> None:
            runner.start(bid)

        after_commit(session, start)


@router.message(AdminInput.broadcast_text, F.text, ~F.text.startswith("/"))
async def on_broadcast_text(message: Message, state: FSMContext, t: Translator, session: AsyncSession, user: User) -> None:
    plain = message.text or ""
    if len(plain) > TEXT_MAX:
        await message.answer(t("admin.bc_too_long", limit=TEXT_MAX, length=len(plain)), reply_markup=_markup([_cancel_row(t)]))
        return
    text = message.html_text  # the admin's formatting, as Telegram HTML (escaped)
    bcs = BroadcastService(session)
    data = await state.get_data()
    await state.clear()
    draft_id = data.get("adm_bc")
    if draft_id:
        try:
            broadcast = await bcs.set_text(int(draft_id), text)
        except BroadcastProblem:
            await message.answer(t("admin.bc_already_sent"))
            return
        audience = await bcs.audience(broadcast.audience)
        confirm, markup = _confirm_screen(t, broadcast, audience)
        await message.answer(confirm, reply_markup=markup)
        return
    broadcast = await bcs.create(user.id, text)
    picker, markup = await _audience_picker(t, bcs, broadcast.id)
    await message.answer(picker, reply_markup=markup)


@router.message(StateFilter(AdminInput), ~F.text)
async def on_input_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("admin.need_text"))


# ---- OAuth2: the flag and the clients (commands) ----------------------------------------------------------------------
@router.message(Command("oauth_flag"))
async def on_oauth_flag(message: Message, command: CommandObject, t: Translator, settings: Settings, mailboxes: MailboxService, user: User) -> None:
    arg = (command.args or "").strip().lower()
    svc = OAuthService(mailboxes.session, mailboxes.deps, settings)
    if arg not in {"on", "off"}:
        state = on_off(t, await svc.flag_enabled())
        await message.answer(t("oauth.admin_flag_state", state=state) + "\n" + t("oauth.admin_flag_usage"))
        return
    wanted = arg == "on"
    effective = await svc.set_flag(wanted, by=user.id)
    log.info("admin %s set %s to %s (effective %s)", user.id, "enablePostmanOauth2", wanted, effective)
    if effective != wanted:
        await message.answer(t("oauth.admin_flag_config_wins", wanted=on_off(t, wanted), state=on_off(t, effective)))
    else:
        await message.answer(t("oauth.admin_flag_state", state=on_off(t, effective)))


@router.message(Command("oauth_client"))
async def on_oauth_client(message: Message, command: CommandObject, t: Translator, settings: Settings, mailboxes: MailboxService, user: User) -> None:
    # the message carries a client secret: delete it before anything else
    try:
        await message.delete()
    except Exception:
        log.warning("could not delete the /oauth_client message in chat %s", message.chat.id)
    args = (command.args or "").split()
    codes = ", ".join(s.code for s in await mailboxes.services.list_all())
    if len(args) < 3:
        await message.answer(t("oauth.admin_client_usage", codes=codes))
        return
    code, client_id, secret, *rest = args
    authorize_url = token_url = device_url = None
    scopes: list[str] = []
    if rest:
        if len(rest) < 2:
            await message.answer(t("oauth.admin_client_usage", codes=codes))
            return
        authorize_url = None if rest[0] == "-" else rest[0]
        token_url = rest[1]
        rest = rest[2:]
        if rest and (rest[0] == "-" or rest[0].lower().startswith(("https://", "http://"))):
            device_url = None if rest[0] == "-" else rest[0]
            rest = rest[1:]
        scopes = rest
    svc = OAuthService(mailboxes.session, mailboxes.deps, settings)
    try:
        service = await svc.configure_client(
            code, client_id, None if secret == "-" else secret,  # noqa: S105 - "-" = public client
            authorize_url=authorize_url, token_url=token_url, device_url=device_url, scopes=scopes,
        )
    except LookupError:
        await message.answer(t("oauth.admin_client_unknown_service", code=code, codes=codes))
        return
    except ValueError as exc:
        await message.answer(t("oauth.admin_client_bad", problem=str(exc)[:200]))
        return
    del secret
    setup = svc.setup_for(service)
    text = t(
        "oauth.admin_client_saved",
        service=service.name(t.lang),
        client_id=client_id,
        flow=t(f"oauth.flow_{setup.flow}" if setup is not None else "oauth.flow_none"),
    )
    if settings.public_url:
        text += "\n" + t("oauth.admin_client_redirect", uri=svc.redirect_uri())
    if setup is not None and not await svc.flag_enabled():  # saved, but nobody sees it yet
        text += "\n\n" + t("oauth.admin_client_flag_config_off" if settings.oauth_flag_configured else "oauth.admin_client_flag_off")
    log.info("admin %s configured the OAuth2 client of service %s", user.id, service.code)
    await message.answer(text)


__all__ = ["router", "AdminInput"]
