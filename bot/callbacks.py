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


class SearchCB(CallbackData, prefix="sr"):
    """Search: ask for the words, or a page of the last search. `sid` names that search (kept
    in the presser's own FSM data with its words): a button of an older search says so."""

    action: str  # "ask" | "page" | "cancel"
    sid: str = ""
    page: int = 0


class RuleCB(CallbackData, prefix="r"):
    """Alert rules (handlers/rules.py): mute from an alert ("ms" sender / "md" domain, `item` =
    the letter), "undo" (`item` = the rule, `letter` = the alert's letter), the Rules screen
    ("list" / "del" with `page`), adding ("add" / "kind" with `value` = "sender.mute" ...).
    Every letter and rule id is checked against the presser."""

    action: str
    item: int = 0
    letter: int = 0
    page: int = 0
    value: str = ""


class QuietCB(CallbackData, prefix="q"):
    """Quiet hours and grouping (handlers/quiet.py); `value`: a time zone offered, a window
    "1320-480", a mode or a threshold. Values are validated again when pressed."""

    action: str
    value: str = ""


class ComposeCB(CallbackData, prefix="cmp"):
    """Answer a letter: `mode` "reply" | "all" | "fwd". The letter id is checked against the
    owner when the draft starts and again when it is sent."""

    letter_id: int
    mode: str


class DraftCB(CallbackData, prefix="dft"):
    """A button of the draft under review: "send" | "text" | "rcpt" | "cancel". `draft` is the
    draft's id: the buttons of an older (sent, cancelled, expired) draft do nothing."""

    draft: str
    action: str


class LetterActCB(CallbackData, prefix="la"):
    """Mark read/unread, flag, Archive, Delete, Spam, Undo on a received letter
    (services.letter_actions.Action). The letter id is checked against the owner."""

    letter_id: int
    action: str


ALL_CALLBACKS: tuple[type[CallbackData], ...] = (
    MenuCB, LangCB, ServiceCB, WizardCB, AccountCB, LetterCB, InboxCB, SentCB, AdminCB,
    RuleCB, QuietCB, SearchCB, ComposeCB, DraftCB, LetterActCB,
)
