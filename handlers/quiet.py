"""Quiet hours and alert grouping (/settings → 🌙 Quiet hours): the time zone (offered from the
user's language, or typed as an IANA name or a UTC offset), the window (offered or typed as
"22:00-08:00"), silent or held for one digest at the window's end, VIP letters breaking
through, and from how many letters at once alerts are grouped. Values from buttons are
validated again by services.rules.QuietService."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.callbacks import MenuCB, QuietCB
from bot.i18n import Translator, on_off
from bot.routing import RouteTable
from bot.states import QuietInput
from services.attention import BURST_CHOICES, Prefs, hhmm, window_end, zone_of
from services.rules import WINDOW_OFFERS, ZONE_OFFERS, QuietError, QuietService
from storage.models import AttentionPrefs, User

router = RouteTable("quiet")


def _screen(t: Translator, row: AttentionPrefs | None) -> tuple[str, InlineKeyboardMarkup]:
    prefs = Prefs.of(row)
    zone = prefs.timezone or t("attn.zone_unset")
    if prefs.has_quiet:
        assert prefs.quiet_start is not None and prefs.quiet_end is not None
        window = f"{hhmm(prefs.quiet_start)}–{hhmm(prefs.quiet_end)}"
    else:
        window = t("word.off")
    mode = t(f"attn.mode_{prefs.quiet_mode}")
    burst = str(prefs.burst_threshold) if prefs.burst_threshold else t("word.off")
    lines = [t("attn.quiet_title", zone=zone, window=window, mode=mode,
               vip=on_off(t, prefs.vip_breaks_quiet), burst=burst)]
    now = datetime.now(UTC)
    if prefs.has_quiet and prefs.quiet_now(now):
        assert prefs.quiet_start is not None and prefs.quiet_end is not None
        end = window_end(now, zone_of(prefs.timezone), prefs.quiet_start, prefs.quiet_end)
        if end is not None:
            lines.append(t("attn.quiet_now", until=end.astimezone(zone_of(prefs.timezone)).strftime("%H:%M")))

    def b(action: str, label: str, value: str = "") -> kb.Button:
        return kb.Button(text=label, callback_data=QuietCB(action=action, value=value).pack())

    other_mode = "silent" if prefs.quiet_mode == "hold" else "hold"
    following = BURST_CHOICES[(BURST_CHOICES.index(prefs.burst_threshold) + 1) % len(BURST_CHOICES)] \
        if prefs.burst_threshold in BURST_CHOICES else BURST_CHOICES[0]
    rows = [
        [b("tz", t("attn.btn_zone", zone=zone))],
        [b("win", t("attn.btn_window", window=window))],
        [b("mode", t("attn.btn_mode", mode=mode), other_mode)],
        [b("vip", t("attn.btn_vip", state=on_off(t, prefs.vip_breaks_quiet)))],
        [b("burst", t("attn.btn_burst", value=burst), str(following))],
    ]
    if prefs.has_quiet:
        rows.append([b("off", t("attn.btn_quiet_off"))])
    rows.append([kb.Button(text=t("btn.back"), callback_data=MenuCB(action="settings").pack())])
    return "\n\n".join(lines), kb.markup(rows)


def _zones_menu(t: Translator) -> InlineKeyboardMarkup:
    offers = ZONE_OFFERS.get(t.lang, ZONE_OFFERS["en"])
    buttons = [kb.Button(text=name, callback_data=QuietCB(action="tzset", value=name).pack()) for name in offers]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append([kb.Button(text=t("btn.cancel"), callback_data=QuietCB(action="show").pack())])
    return kb.markup(rows)


def _windows_menu(t: Translator) -> InlineKeyboardMarkup:
    buttons = [
        kb.Button(text=f"{hhmm(a)}–{hhmm(b)}", callback_data=QuietCB(action="winset", value=f"{a}-{b}").pack())
        for a, b in WINDOW_OFFERS
    ]
    return kb.markup([buttons[:2], buttons[2:],
                      [kb.Button(text=t("btn.cancel"), callback_data=QuietCB(action="show").pack())]])


async def _edit_or_send(cb: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    if not isinstance(cb.message, Message):
        return
    try:
        await cb.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            await cb.message.answer(text, reply_markup=markup)


@router.callback_query(QuietCB.filter(F.action == "show"))
async def on_show(cb: CallbackQuery, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    if await state.get_state() in {QuietInput.waiting_zone.state, QuietInput.waiting_window.state}:
        await state.clear()
    await cb.answer()
    await _edit_or_send(cb, *_screen(t, await QuietService(session).current(user.id)))


@router.callback_query(QuietCB.filter(F.action == "tz"))
async def on_zone_menu(cb: CallbackQuery, t: Translator, state: FSMContext) -> None:
    await cb.answer()
    await state.set_state(QuietInput.waiting_zone)
    await _edit_or_send(cb, t("attn.ask_zone"), _zones_menu(t))


@router.callback_query(QuietCB.filter(F.action == "win"))
async def on_window_menu(cb: CallbackQuery, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    row = await QuietService(session).current(user.id)
    if row is None or row.timezone is None:
        await cb.answer(t("attn.err_no_zone"), show_alert=True)
        await state.set_state(QuietInput.waiting_zone)
        await _edit_or_send(cb, t("attn.ask_zone"), _zones_menu(t))
        return
    await cb.answer()
    await state.set_state(QuietInput.waiting_window)
    await _edit_or_send(cb, t("attn.ask_window", zone=row.timezone), _windows_menu(t))


@router.callback_query(QuietCB.filter(F.action.in_({"tzset", "winset", "mode", "vip", "burst", "off"})))
async def on_change(cb: CallbackQuery, callback_data: QuietCB, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    quiet = QuietService(session)
    action, value = callback_data.action, callback_data.value
    try:
        if action == "tzset":
            row = await quiet.set_zone(user.id, value)
        elif action == "winset":
            start, _, end = value.partition("-")
            if not (start.isdigit() and end.isdigit()):
                raise QuietError("bad_window")
            row = await quiet.set_window_minutes(user.id, int(start), int(end))
        elif action == "mode":
            row = await quiet.set_mode(user.id, value)
        elif action == "vip":
            row = await quiet.toggle_vip(user.id)
        elif action == "burst":
            if not value.isdigit() or len(value) > 3:
                raise QuietError("bad_choice")
            row = await quiet.set_burst(user.id, int(value))
        else:
            row = await quiet.quiet_off(user.id)
    except QuietError as exc:
        await cb.answer(t(f"attn.err_{exc.reason}"), show_alert=True)
        return
    await state.clear()
    await cb.answer(t("settings.saved"))
    await _edit_or_send(cb, *_screen(t, row))


@router.callback_query(QuietCB.filter())
async def on_unknown(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer(t("error.stale_button"), show_alert=True)


@router.message(QuietInput.waiting_zone, F.text)
async def on_zone_text(message: Message, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    try:
        row = await QuietService(session).set_zone(user.id, message.text or "")
    except QuietError as exc:
        await message.answer(t(f"attn.err_{exc.reason}"))
        return  # still waiting for a zone
    await state.clear()
    await message.answer(t("settings.saved"))
    text, markup = _screen(t, row)
    await message.answer(text, reply_markup=markup)


@router.message(QuietInput.waiting_window, F.text)
async def on_window_text(message: Message, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    try:
        row = await QuietService(session).set_window(user.id, message.text or "")
    except QuietError as exc:
        await message.answer(t(f"attn.err_{exc.reason}"))
        return
    await state.clear()
    await message.answer(t("settings.saved"))
    text, markup = _screen(t, row)
    await message.answer(text, reply_markup=markup)


@router.message(QuietInput.waiting_zone)
@router.message(QuietInput.waiting_window)
async def on_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("error.need_text"))
