"""Every CallbackData of the bot, in one place. Each one fits Telegram's 64-byte limit
(tests/test_callbacks.py proves it with the largest values) and every handler that acts on an
account checks that the account belongs to the user who pressed the button."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class MenuCB(CallbackData, prefix="m"):
    """Top-level menu: connect, settings, mail settings, language menu."""

    action: str  # "connect" | "settings" | "mail" | "lang"


class LangCB(CallbackData, prefix="l"):
    code: str  # "en" | "ru"


class ServiceCB(CallbackData, prefix="s"):
    """Service picked in the wizard. `wiz` is the wizard's nonce: buttons of an older wizard
    (or a forged one) are refused."""

    wiz: str
    service_id: int


class WizardCB(CallbackData, prefix="w"):
    """A button inside the connect wizard. `value` carries a small choice (e.g. "ssl")."""

    wiz: str
    action: str
    value: str = ""


class AccountCB(CallbackData, prefix="a"):
    """A button acting on a stored mailbox (settings). `mailbox_id` is checked against the owner."""

    mailbox_id: int
    action: str
    value: str = ""


class LetterCB(CallbackData, prefix="e"):
    """Open a letter, or download one of its attachments (`part` is the IMAP section).
    The letter id is checked against the owner: a forged id opens nothing."""

    letter_id: int
    action: str = "open"  # "open" | "att"
    part: str = ""


class InboxCB(CallbackData, prefix="i"):
    page: int


class SentCB(CallbackData, prefix="snt"):
    """A page of the letters sent from the bot (no ids: the list is always the presser's own)."""

    page: int


class AdminCB(CallbackData, prefix="adm"):
    """A button of the /admin menu. The admin router's filter checks that the presser is an
    admin (for anyone else it matches nothing: the ordinary stale-button answer); one handler
    per (section, action)."""

    section: str  # "menu" | "svc" | "co" | "flag" | "status" | "bc"
    action: str
    item: int = 0  # a service, company server or broadcast id
    value: str = ""


class LetterActCB(CallbackData, prefix="la"):
    """Mark read/unread, flag, Archive, Delete, Spam, Undo on a received letter
    (services.letter_actions.Action). The letter id is checked against the owner."""

    letter_id: int
    action: str


ALL_CALLBACKS: tuple[type[CallbackData], ...] = (
    MenuCB, LangCB, ServiceCB, WizardCB, AccountCB, LetterCB, InboxCB, SentCB, AdminCB, LetterActCB,
)
