"""Every CallbackData fits Telegram's 64-byte limit with its largest values."""

from __future__ import annotations

import pytest
from aiogram.filters.callback_data import CallbackData

from bot.callbacks import (
    ALL_CALLBACKS,
    AccountCB,
    AdminCB,
    ComposeCB,
    DraftCB,
    InboxCB,
    LangCB,
    LetterActCB,
    LetterCB,
    MenuCB,
    QuietCB,
    RuleCB,
    SearchCB,
    SentCB,
    ServiceCB,
    WizardCB,
)

BIG_ID = 2**63 - 1
NONCE = "A" * 8  # secrets.token_urlsafe(6) gives 8 characters

LARGEST: dict[type[CallbackData], CallbackData] = {
    MenuCB: MenuCB(action="settings"),
    LangCB: LangCB(code="ru"),
    ServiceCB: ServiceCB(wiz=NONCE, service_id=BIG_ID),
    WizardCB: WizardCB(wiz=NONCE, action="login_default", value="use_in_processes"),
    AccountCB: AccountCB(mailbox_id=BIG_ID, action="use_in_processes", value="use_in_processes"),
    LetterCB: LetterCB(letter_id=BIG_ID, action="att", part="1.2.3.4.5.6.7.8.9.10"),
    InboxCB: InboxCB(page=2**31 - 1),
    SentCB: SentCB(page=2**31 - 1),
    AdminCB: AdminCB(section="status", action="del_yes", item=BIG_ID, value="enablePostmanOauth2"),
    # letter and rule ids are 32-bit integer columns
    RuleCB: RuleCB(action="kind", item=2**31 - 1, letter=2**31 - 1, page=2**31 - 1, value="subject.mute"),
    QuietCB: QuietCB(action="window", value="America/Argentina/ComodRivadavia"),
    SearchCB: SearchCB(action="cancel", sid=NONCE, page=2**31 - 1),
    ComposeCB: ComposeCB(letter_id=BIG_ID, mode="reply"),
    DraftCB: DraftCB(draft="f" * 8, action="cancel"),
    LetterActCB: LetterActCB(letter_id=BIG_ID, action="archive"),  # the longest action name
}


def test_every_callback_is_covered() -> None:
    assert set(LARGEST) == set(ALL_CALLBACKS)


@pytest.mark.parametrize("cb", list(LARGEST.values()), ids=lambda c: type(c).__name__)
def test_fits_64_bytes(cb: CallbackData) -> None:
    packed = cb.pack()
    assert len(packed.encode("utf-8")) <= 64, packed
    assert type(cb).unpack(packed) == cb


def test_prefixes_are_unique() -> None:
    prefixes = [cls.__prefix__ for cls in ALL_CALLBACKS]
    assert len(prefixes) == len(set(prefixes))
