"""The Telegram side of letter actions (services/letter_actions.py): the buttons' rows for a
letter's state, merging them into a message's keyboard without touching anyone else's rows,
the answers shown on a press, and the timer that takes Undo away when its time is up.

The Undo timer is per instance, in memory, and only cosmetic: the deadline itself is in the
database (`LetterMark.undo_until`), checked by whichever instance gets the press. If this
instance stops before the timer fires, the Undo button stays on the message, and a press after
the deadline is refused and replaces the button with the letter's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.attention import alert_keyboard
from bot.callbacks import LetterActCB
from bot.i18n import Catalog, Html, Translator
from bot.telegram_limits import Clock, SystemClock
from mail.folders import Role
from services.letter_actions import (
    Action,
    ActionResult,
    AlertActions,
    LetterState,
    LetterStateSync,
    Outcome,
)
from storage.models import Letter, LetterPlace

log = logging.getLogger(__name__)

Button = InlineKeyboardButton
PREFIX = LetterActCB.__prefix__ + ":"
FOLDER_CHARS = 60  # a folder name in a toast (Telegram: 200 characters in all)
PLACE_KEY = {
    LetterPlace.ARCHIVE: "act.state_archive",
    LetterPlace.TRASH: "act.state_trash",
    LetterPlace.JUNK: "act.state_junk",
    LetterPlace.GONE: "act.state_gone",
}


def _b(t: Translator, letter_id: int, action: Action, key: str) -> Button:
    return Button(text=t(key), callback_data=LetterActCB(letter_id=letter_id, action=action.value).pack())


def action_rows(t: Translator, state: LetterState, now: datetime) -> list[list[Button]]:
    """Rows for the letter's state: read/unread and flag/unflag, then the moves the mailbox
    has a folder for; after a move, where it went and Undo while there is time."""
    lid = state.letter_id
    if state.place is not LetterPlace.INBOX:
        row = [_b(t, lid, Action.STATE, PLACE_KEY[state.place])]
        if state.place is not LetterPlace.GONE and state.can_undo(now):
            row.append(_b(t, lid, Action.UNDO, "act.btn_undo"))
        return [row]
    rows = [[
        _b(t, lid, Action.UNREAD, "act.btn_unread") if state.seen else _b(t, lid, Action.READ, "act.btn_read"),
        _b(t, lid, Action.UNFLAG, "act.btn_unflag") if state.flagged else _b(t, lid, Action.FLAG, "act.btn_flag"),
    ]]
    moves = [
        _b(t, lid, action, key)
        for role, action, key in (
            (Role.ARCHIVE, Action.ARCHIVE, "act.btn_archive"),
            (Role.TRASH, Action.TRASH, "act.btn_trash"),
            (Role.JUNK, Action.JUNK, "act.btn_junk"),
        )
        if role in state.roles
    ]
    if moves:
        rows.append(moves)
    return rows


def _ours(button: Button) -> bool:
    return bool(button.callback_data and button.callback_data.startswith(PREFIX))


def other_rows(markup: InlineKeyboardMarkup | None) -> list[list[Button]]:
    """The keyboard's rows without the action buttons (Open, attachments, others' buttons)."""
    if markup is None:
        return []
    return [list(row) for row in markup.inline_keyboard if not any(_ours(b) for b in row)]


def merged(others: Sequence[Sequence[Button]], rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup:
    return kb.markup([*others, *rows])


def answer_text(t: Translator, result: ActionResult) -> str:
    """The short answer to a press (a toast: plain text, so folder names go in as they are)."""
    folder = Html((result.state.folder or "")[:FOLDER_CHARS])
    if result.outcome is Outcome.DONE:
        if result.action is Action.STATE:
            return t("act.in_inbox")
        if result.action in (Action.ARCHIVE, Action.TRASH, Action.JUNK):
            return t(f"act.done_{result.action.value}", folder=folder, seconds=int(result.undo_seconds))
        return t(f"act.done_{result.action.value}")
    if result.outcome is Outcome.ELSEWHERE:
        return t(f"act.in_{result.state.place.value}", folder=folder)
    return t(f"act.{result.outcome.value}", folder=folder)


class LetterActionsUI:
    """Shared by the handlers (dispatcher["letter_actions"]) and the notifier's alert hooks.
    `clock` (wall time and sleeps) is what tests drive."""

    def __init__(
        self, bot: Bot, catalog: Catalog, alerts: AlertActions, clock: Clock | None = None,
        sync: LetterStateSync | None = None,
    ) -> None:
        self.bot = bot
        self.catalog = catalog
        self.alerts = alerts
        self.sync = sync
        self.clock: Clock = clock or SystemClock()
        alerts.clock = self.clock
        if sync is not None:
            sync.clock = self.clock
        self._timers: dict[tuple[int, int], asyncio.Task[None]] = {}

    def set_clock(self, clock: Clock) -> None:
        self.clock = clock
        self.alerts.clock = clock
        if self.sync is not None:
            self.sync.clock = clock

    # ---- alerts ------------------------------------------------------------------------------
    async def alert_states(self, session: AsyncSession, letters: list[Letter]) -> dict[int, LetterState]:
        """The action buttons' state of new letters, read on the alert's connection; a letter
        missing here (the read failed) gets its alert without action buttons."""
        try:
            return await self.alerts.states_for_alerts(session, letters)
        except Exception:
            log.exception("mailbox %s: the alerts go without action buttons", letters[0].mailbox_id if letters else "?")
            return {}

    def extend_alert(
        self, t: Translator, letter: Letter, markup: InlineKeyboardMarkup, state: LetterState | None
    ) -> InlineKeyboardMarkup:
        """The alert's keyboard with the action rows (the Open row and others' rows kept)."""
        if state is None:
            return markup
        return merged(other_rows(markup), action_rows(t, state, self.clock.wall()))

    async def alert_sent(self, letter_id: int, chat_id: int, message_id: int) -> None:
        try:
            await self.alerts.alert_sent(letter_id, chat_id, message_id)
        except Exception:
            log.exception("letter %s: its alert message was not remembered", letter_id)

    async def letters_changed(self, mailbox_id: int, letter_ids: list[int], *, skip_message: int | None = None) -> None:
        """The server said these letters changed (read, flagged, deleted elsewhere), or a
        button on another message acted on them: their alerts' buttons are redrawn (with the
        Open row as the alert has it)."""
        if self.sync is None:
            return
        for view in await self.sync.alert_views(letter_ids):
            if view.message_id == skip_message:
                continue
            t = self.catalog.get(view.language)
            now = self.clock.wall()
            others = other_rows(alert_keyboard(
                t, view.state.letter_id, view.from_addr, reply_all=view.reply_all, code=view.code
            ))
            markup = merged(others, action_rows(t, view.state, now))
            try:
                await self.bot.edit_message_reply_markup(
                    chat_id=view.chat_id, message_id=view.message_id, reply_markup=markup
                )
            except TelegramAPIError as exc:  # deleted by the user, not modified
                log.info("letter %s: alert buttons not redrawn (%s)", view.state.letter_id, exc)
                continue
            if view.state.undo_until is not None and view.state.can_undo(now):
                # private chats: the chat is the user
                self.expire_undo(
                    view.chat_id, view.language, view.chat_id, view.message_id, view.state.letter_id,
                    others, view.state.undo_until,
                )

    # ---- Undo's time -------------------------------------------------------------------------
    def expire_undo(
        self, user_id: int, lang: str | None, chat_id: int, message_id: int, letter_id: int,
        others: list[list[Button]], until: datetime,
    ) -> None:
        """When Undo's time is up, show the letter's state without it."""
        key = (chat_id, message_id)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        task = asyncio.create_task(self._expire(user_id, lang, chat_id, message_id, letter_id, others, until))
        self._timers[key] = task
        task.add_done_callback(lambda done: self._timers.pop(key, None) if self._timers.get(key) is done else None)

    async def _expire(
        self, user_id: int, lang: str | None, chat_id: int, message_id: int, letter_id: int,
        others: list[list[Button]], until: datetime,
    ) -> None:
        await self.clock.sleep(max(0.0, (until - self.clock.wall()).total_seconds()))
        state = await self.alerts.user_state(user_id, letter_id)
        if state is None:
            return
        t = self.catalog.get(lang)
        markup = merged(others, action_rows(t, state, self.clock.wall()))
        with contextlib.suppress(TelegramAPIError):  # deleted, or not modified
            await self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=markup)

    async def close(self) -> None:
        timers = list(self._timers.values())
        for task in timers:
            task.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._timers.clear()
        await self.alerts.close()
