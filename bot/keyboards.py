"""Inline keyboards. Labels come from the user's translator; callback data from bot.callbacks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import (
    AccountCB,
    ComposeCB,
    DraftCB,
    InboxCB,
    LangCB,
    LetterCB,
    MenuCB,
    QuietCB,
    RuleCB,
    SearchCB,
    ServiceCB,
    WizardCB,
)
from bot.i18n import Translator, on_off
from storage.models import Mailbox, Service

Button = InlineKeyboardButton


def markup(rows: Iterable[Sequence[Button]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[list(row) for row in rows if row])


def start_menu(t: Translator, connected: bool) -> InlineKeyboardMarkup:
    first = (
        Button(text=t("btn.mail_settings"), callback_data=MenuCB(action="mail").pack())
        if connected
        else Button(text=t("btn.connect"), callback_data=MenuCB(action="connect").pack())
    )
    return markup([[first], [Button(text=t("btn.settings"), callback_data=MenuCB(action="settings").pack())]])


def settings_menu(t: Translator) -> InlineKeyboardMarkup:
    return markup(
        [
            [Button(text=t("btn.mail"), callback_data=MenuCB(action="mail").pack())],
            [Button(text=t("btn.language"), callback_data=MenuCB(action="lang").pack())],
            *attention_rows(t),
        ]
    )


def attention_rows(t: Translator) -> list[list[Button]]:
    """Settings: alert rules (handlers/rules.py), quiet hours and grouping (handlers/quiet.py)."""
    return [[
        Button(text=t("attn.btn_rules"), callback_data=RuleCB(action="list").pack()),
        Button(text=t("attn.btn_quiet"), callback_data=QuietCB(action="show").pack()),
    ]]


def language_menu() -> InlineKeyboardMarkup:
    return markup(
        [
            [
                Button(text="English", callback_data=LangCB(code="en").pack()),
                Button(text="Русский", callback_data=LangCB(code="ru").pack()),
            ]
        ]
    )


def connect_only(t: Translator) -> InlineKeyboardMarkup:
    return markup([[Button(text=t("btn.connect"), callback_data=MenuCB(action="connect").pack())]])


def wiz(t: Translator, nonce: str, action: str, label_key: str, value: str = "", **fmt: object) -> Button:
    return Button(text=t(label_key, **fmt), callback_data=WizardCB(wiz=nonce, action=action, value=value).pack())


def nav_row(t: Translator, nonce: str, back: bool = True) -> list[Button]:
    row = [wiz(t, nonce, "cancel", "btn.cancel")]
    if back:
        row.insert(0, wiz(t, nonce, "back", "btn.back"))
    return row


def services(t: Translator, nonce: str, items: Sequence[Service]) -> InlineKeyboardMarkup:
    buttons = [
        Button(text=s.name(t.lang), callback_data=ServiceCB(wiz=nonce, service_id=s.id).pack()) for s in items
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append(nav_row(t, nonce, back=False))
    return markup(rows)


def account_card(t: Translator, mailbox: Mailbox) -> InlineKeyboardMarkup:
    def b(action: str, label: str) -> Button:
        return Button(text=label, callback_data=AccountCB(mailbox_id=mailbox.id, action=action).pack())

    return markup(
        [
            [b("signature", t("btn.edit_signature"))],
            [b("notify", t("btn.toggle_notify", state=on_off(t, mailbox.notify)))],
            [b("notify_sound", t("btn.toggle_sound", state=on_off(t, mailbox.notify_sound)))],
            [b("use_in_processes", t("btn.toggle_processes", state=on_off(t, mailbox.use_in_processes)))],
            [b("reconnect", t("btn.reconnect")), b("delete", t("btn.delete_account"))],
            [Button(text=t("btn.inbox"), callback_data=InboxCB(page=0).pack()),
             Button(text=t("btn.language"), callback_data=MenuCB(action="lang").pack())],
        ]
    )


def signature_edit(t: Translator, mailbox_id: int) -> InlineKeyboardMarkup:
    return markup(
        [
            [Button(text=t("btn.no_signature"), callback_data=AccountCB(mailbox_id=mailbox_id, action="sig_clear").pack())],
            [Button(text=t("btn.back"), callback_data=AccountCB(mailbox_id=mailbox_id, action="card").pack())],
        ]
    )


def reconnect_button(t: Translator, mailbox_id: int) -> InlineKeyboardMarkup:
    return markup([[Button(text=t("btn.reconnect"), callback_data=AccountCB(mailbox_id=mailbox_id, action="reconnect").pack())]])


def open_letter(t: Translator, letter_id: int, *, reply_all: bool = False) -> InlineKeyboardMarkup:
    return markup([[Button(text=t("btn.open"), callback_data=LetterCB(letter_id=letter_id).pack())],
                   compose_row(t, letter_id, reply_all=reply_all)])


# ---- answering a letter (handlers/compose.py) ------------------------------------------------
def compose_row(t: Translator, letter_id: int, *, reply_all: bool) -> list[Button]:
    """Reply / Reply all / Forward under an alert or an opened letter."""
    def b(mode: str, key: str) -> Button:
        return Button(text=t(key), callback_data=ComposeCB(letter_id=letter_id, mode=mode).pack())

    row = [b("reply", "compose.btn_reply")]
    if reply_all:
        row.append(b("all", "compose.btn_reply_all"))
    row.append(b("fwd", "compose.btn_forward"))
    return row


def draft_review(t: Translator, draft_id: str) -> InlineKeyboardMarkup:
    def b(action: str, key: str) -> Button:
        return Button(text=t(key), callback_data=DraftCB(draft=draft_id, action=action).pack())

    return markup([
        [b("send", "compose.btn_send")],
        [b("text", "compose.btn_edit_text"), b("rcpt", "compose.btn_add_recipients")],
        [b("cancel", "compose.btn_cancel")],
    ])


def draft_cancel(t: Translator, draft_id: str) -> InlineKeyboardMarkup:
    return markup([[Button(text=t("compose.btn_cancel"), callback_data=DraftCB(draft=draft_id, action="cancel").pack())]])


def with_copy_code(t: Translator, keyboard: InlineKeyboardMarkup, code: str | None) -> InlineKeyboardMarkup:
    """An alert's keyboard plus, when the letter carries a one-time code, a button that copies
    it (Bot API `copy_text`, at most 256 characters; codes are at most mail.codes.CODE_MAX)."""
    if not code:
        return keyboard
    copy = Button(text=t("codes.btn_copy", code=code), copy_text=CopyTextButton(text=code[:256]))
    return InlineKeyboardMarkup(inline_keyboard=[[copy], *keyboard.inline_keyboard])


def search_row(t: Translator) -> list[Button]:
    """The Search button under /inbox (asks for the words)."""
    return [Button(text=t("search.btn_search"), callback_data=SearchCB(action="ask").pack())]


def with_rows(keyboard: InlineKeyboardMarkup | None, *rows: Sequence[Button]) -> InlineKeyboardMarkup:
    """A keyboard with more rows at the bottom."""
    return markup([*(keyboard.inline_keyboard if keyboard else []), *rows])
