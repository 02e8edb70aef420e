"""Alert rules: 🔕 Mute sender / Mute domain on an alert (with ↩️ Undo right after), and the
Rules screen in /settings (list with delete buttons, paged; add a rule by sender, domain or a
word in the subject, as mute or VIP). Every letter and rule id from a button is checked
against the presser by services.rules.RuleService (someone else's id is "not found")."""

from __future__ import annotations

import logging

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.attention import alert_markup, undo_markup
from bot.callbacks import MenuCB, RuleCB
from bot.i18n import Translator
from bot.routing import RouteTable
from bot.states import RuleInput
from services.attention import RuleAction, RuleKind
from services.rules import MAX_INPUT, RuleError, RuleNotFound, RulePage, RuleService
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("rules")
PER_PAGE = 8
KINDS = {f"{k.value}.{a.value}": (k.value, a.value) for k in RuleKind for a in RuleAction}


def _rules_screen(t: Translator, page: RulePage) -> tuple[str, InlineKeyboardMarkup]:
    if not page.rules:
        text = t("attn.rules_empty")
    else:
        lines = [t("attn.rules_title", count=page.total, page=page.page + 1, pages=page.pages)]
        first = page.page * page.per_page
        for n, rule in enumerate(page.rules, first + 1):
            lines.append(t(f"attn.rule_{rule.action}", n=n, kind=t(f"attn.kind_{rule.kind}"), value=rule.value))
        text = "\n".join(lines)
    rows: list[list[kb.Button]] = []
    delete = [
        kb.Button(text=f"❌ {n}", callback_data=RuleCB(action="del", item=rule.id, page=page.page).pack())
        for n, rule in enumerate(page.rules, page.page * page.per_page + 1)
    ]
    rows += [delete[i : i + 4] for i in range(0, len(delete), 4)]
    nav = []
    if page.page > 0:
        nav.append(kb.Button(text=t("attn.btn_newer"), callback_data=RuleCB(action="list", page=page.page - 1).pack()))
    if page.page + 1 < page.pages:
        nav.append(kb.Button(text=t("attn.btn_older"), callback_data=RuleCB(action="list", page=page.page + 1).pack()))
    rows.append(nav)
    rows.append([kb.Button(text=t("attn.btn_add_rule"), callback_data=RuleCB(action="add").pack())])
    rows.append([kb.Button(text=t("btn.back"), callback_data=MenuCB(action="settings").pack())])
    return text, kb.markup(rows)


def _kinds_menu(t: Translator) -> InlineKeyboardMarkup:
    rows = [
        [kb.Button(text=t(f"attn.btn_{key.replace('.', '_')}"), callback_data=RuleCB(action="kind", value=key).pack())
         for key in (f"{kind}.{action}" for kind in RuleKind)]
        for action in RuleAction
    ]
    rows.append([kb.Button(text=t("btn.cancel"), callback_data=RuleCB(action="list").pack())])
    return kb.markup(rows)


async def _edit_or_send(cb: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    if not isinstance(cb.message, Message):
        return
    try:
        await cb.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            await cb.message.answer(text, reply_markup=markup)


async def _set_markup(cb: CallbackQuery, markup: InlineKeyboardMarkup) -> None:
    """The alert's buttons in place; an alert Telegram no longer lets us edit keeps its old
    ones (the rule is saved either way, and the answer said so)."""
    if not isinstance(cb.message, Message):
        return
    try:
        await cb.message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest as exc:
        log.info("alert %s: buttons not changed: %s", cb.message.message_id, exc.message)


@router.callback_query(RuleCB.filter(F.action.in_({"ms", "md"})))
async def on_mute(cb: CallbackQuery, callback_data: RuleCB, t: Translator, session: AsyncSession, user: User) -> None:
    kind = RuleKind.SENDER if callback_data.action == "ms" else RuleKind.DOMAIN
    try:
        rule, previous = await RuleService(session).mute_from_letter(user.id, callback_data.item, kind)
    except RuleNotFound:
        await cb.answer(t("attn.not_found"), show_alert=True)
        return
    except RuleError as exc:
        await cb.answer(t(f"attn.err_{exc.reason}", limit=MAX_INPUT), show_alert=True)
        return
    await cb.answer(t(f"attn.muted_{rule.kind}", value=rule.value))
    await _set_markup(cb, undo_markup(t, callback_data.item, rule.id, previous))


@router.callback_query(RuleCB.filter(F.action == "undo"))
async def on_undo(cb: CallbackQuery, callback_data: RuleCB, t: Translator, session: AsyncSession, user: User) -> None:
    try:
        address = await RuleService(session).undo(user.id, callback_data.item, callback_data.value, callback_data.letter)
    except RuleNotFound:
        await cb.answer(t("attn.not_found"), show_alert=True)
        return
    await cb.answer(t("attn.unmuted"))
    if address:
        await _set_markup(cb, alert_markup(t, callback_data.letter, address))


@router.callback_query(RuleCB.filter(F.action == "list"))
async def on_list(cb: CallbackQuery, callback_data: RuleCB, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    if await state.get_state() == RuleInput.waiting_value.state:
        await state.clear()
    page = await RuleService(session).page(user.id, callback_data.page, PER_PAGE)
    await cb.answer()
    await _edit_or_send(cb, *_rules_screen(t, page))


@router.callback_query(RuleCB.filter(F.action == "del"))
async def on_delete(cb: CallbackQuery, callback_data: RuleCB, t: Translator, session: AsyncSession, user: User) -> None:
    rules = RuleService(session)
    try:
        await rules.delete(user.id, callback_data.item)
    except RuleNotFound:
        await cb.answer(t("attn.not_found"), show_alert=True)
        return
    await cb.answer(t("attn.deleted"))
    await _edit_or_send(cb, *_rules_screen(t, await rules.page(user.id, callback_data.page, PER_PAGE)))


@router.callback_query(RuleCB.filter(F.action == "add"))
async def on_add(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer()
    await _edit_or_send(cb, t("attn.pick_kind"), _kinds_menu(t))


@router.callback_query(RuleCB.filter(F.action == "kind"))
async def on_kind(cb: CallbackQuery, callback_data: RuleCB, t: Translator, state: FSMContext) -> None:
    if callback_data.value not in KINDS:
        await cb.answer(t("error.stale_button"), show_alert=True)
        return
    kind, action = KINDS[callback_data.value]
    await cb.answer()
    await state.set_state(RuleInput.waiting_value)
    await state.update_data(rule_kind=kind, rule_action=action)
    cancel = kb.markup([[kb.Button(text=t("btn.cancel"), callback_data=RuleCB(action="list").pack())]])
    if isinstance(cb.message, Message):
        await cb.message.answer(t(f"attn.ask_{kind}"), reply_markup=cancel)


@router.callback_query(RuleCB.filter())
async def on_unknown(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer(t("error.stale_button"), show_alert=True)


@router.message(RuleInput.waiting_value, F.text)
async def on_value(message: Message, t: Translator, session: AsyncSession, user: User, state: FSMContext) -> None:
    data = await state.get_data()
    kind, action = str(data.get("rule_kind", "")), str(data.get("rule_action", ""))
    rules = RuleService(session)
    try:
        rule = await rules.add(user.id, kind, message.text or "", action)
    except RuleError as exc:
        await message.answer(t(f"attn.err_{exc.reason}", limit=MAX_INPUT))
        return  # still waiting for a value
    await state.clear()
    await message.answer(t(f"attn.rule_saved_{rule.action}", kind=t(f"attn.kind_{rule.kind}"), value=rule.value))
    text, markup = _rules_screen(t, await rules.page(user.id, 0, PER_PAGE))
    await message.answer(text, reply_markup=markup)


@router.message(RuleInput.waiting_value)
async def on_value_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("error.need_text"))
