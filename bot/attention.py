"""The Telegram side of alert rules, quiet hours and bursts (services/attention.py decides).

* The alert's extra row: 🔕 Mute sender / Mute domain (and ↩️ Undo right after muting).
* A grouped alert: a batch of letters waiting at once ("12 new letters", the first few with
  Open buttons) sent as ONE message.
* The quiet-hours digest: the letters held during the window, sent when it ends as one
  digest (the count, then the letters with Open buttons), split over several messages only
  where Telegram's limits (4,096 characters, 100 buttons) demand it.

Exactly once, like single alerts (bot/notifications.py): each message's letters are claimed in
the database (pending or held -> sending, by this instance) right before its request leaves,
through a claim guard of its own ContextVar, and the outcome is written right after the
answer. A message that may have arrived without an answer makes its letters ``uncertain``
(never resent); one that certainly did not go out puts them back (pending, or held for the
next digest pass). A restart loses no held letter (they are rows in the database) and sends
no letter of a digest twice (a letter claimed for a digest is not held any more).

Which instance sends a digest: :class:`DigestRunner` only looks at the mailboxes this
instance leases (``held``, the fleet's share), and the claim decides any race anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from aiogram.exceptions import (
    TelegramAPIError,
)
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.callbacks import InboxCB, LetterCB, RuleCB
from bot.claim_guard import ClaimedSend, install_claim_guard
from bot.i18n import Catalog, Translator
from bot.letter_view import MAX_MESSAGE, sender_text, shorten, visible_len
from bot.sender import SendResult, SendStatus, TelegramSender
from bot.telegram_limits import SystemClock, interactive
from services.attention import AttentionData, Clock, Plan, plan
from services.watching import AlertData, AlertTarget
from storage.models import AlertState, Letter

log = logging.getLogger(__name__)

GROUP_LISTED = 5  # letters named in a grouped alert (the rest are counted, and in /inbox)
DIGEST_LISTED = 200  # letters named in a digest; the rest are counted
DIGEST_BUTTONS = 50  # Open buttons per digest message (Telegram allows 100)
BUTTONS_PER_ROW = 5
LINE_SENDER = 48
LINE_SUBJECT = 90
DIGEST_EVERY = 30.0  # seconds between looks at held letters


# --------------------------------------------------------------------------- keyboards
def rule_rows(t: Translator, letter_id: int, from_addr: str) -> list[list[kb.Button]]:
    """The alert's Mute row (none for a letter without a sender address)."""
    if "@" not in (from_addr or ""):
        return []
    return [[
        kb.Button(text=t("attn.btn_mute_sender"), callback_data=RuleCB(action="ms", item=letter_id).pack()),
        kb.Button(text=t("attn.btn_mute_domain"), callback_data=RuleCB(action="md", item=letter_id).pack()),
    ]]


def alert_markup(t: Translator, letter_id: int, from_addr: str, *, reply_all: bool = False) -> InlineKeyboardMarkup:
    """The single alert's keyboard: Open and Reply/Forward (kb.open_letter) plus the Mute row."""
    base = kb.open_letter(t, letter_id, reply_all=reply_all)
    return kb.markup([*base.inline_keyboard, *rule_rows(t, letter_id, from_addr)])


def alert_keyboard(t: Translator, letter_id: int, from_addr: str, *, reply_all: bool, code: str | None) -> InlineKeyboardMarkup:
    """Every single alert's keyboard before the letter's action rows (bot/letter_actions.py):
    the one-time code's copy button, Open, Reply/Forward and the Mute row. One builder for the
    alert and for its redraw when the server changes the letter, so no row is lost then."""
    return kb.with_copy_code(t, alert_markup(t, letter_id, from_addr, reply_all=reply_all), code)


def undo_markup(t: Translator, letter_id: int, rule_id: int, previous: str) -> InlineKeyboardMarkup:
    """Right after muting from an alert: Open, and Undo (back to ``previous``: "" = no rule)."""
    base = kb.open_letter(t, letter_id)
    undo = kb.Button(
        text=t("attn.btn_undo"),
        callback_data=RuleCB(action="undo", item=rule_id, letter=letter_id, value=previous).pack(),
    )
    return kb.markup([*base.inline_keyboard, [undo]])


# --------------------------------------------------------------------------- rendering
def letter_line(t: Translator, n: int, letter: Letter) -> str:
    sender = sender_text(letter.from_name, letter.from_addr, limit=LINE_SENDER)
    subject = shorten(letter.subject, LINE_SUBJECT) or t("letter.no_subject")
    return t("attn.line", n=n, sender=shorten(sender, LINE_SENDER) or t("letter.unknown_sender"), subject=subject)


def _open_buttons(numbered: Sequence[tuple[int, Letter]]) -> list[list[kb.Button]]:
    buttons = [
        kb.Button(text=f"📖 {n}", callback_data=LetterCB(letter_id=letter.id).pack()) for n, letter in numbered
    ]
    return [buttons[i : i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]


def render_group(t: Translator, letters: Sequence[Letter]) -> tuple[str, InlineKeyboardMarkup]:
    """One alert for a burst: the count, the first GROUP_LISTED letters, Open buttons, Inbox."""
    shown = list(enumerate(letters[:GROUP_LISTED], 1))
    lines = [t("attn.group_title", count=len(letters))]
    lines += [letter_line(t, n, letter) for n, letter in shown]
    if len(letters) > GROUP_LISTED:
        lines.append(t("attn.more", count=len(letters) - GROUP_LISTED))
    rows = _open_buttons(shown)
    rows.append([kb.Button(text=t("btn.inbox"), callback_data=InboxCB(page=0).pack())])
    return "\n".join(lines), kb.markup(rows)


@dataclass
class DigestPart:
    text: str
    markup: InlineKeyboardMarkup
    letter_ids: list[int] = field(default_factory=list)


def render_digest(t: Translator, letters: Sequence[Letter], *, limit: int = MAX_MESSAGE) -> list[DigestPart]:
    """The digest as messages: the first starts with the count; each holds at most ``limit``
    visible characters and DIGEST_BUTTONS buttons; letters past DIGEST_LISTED are counted in
    the last one (and their alerts settled with it)."""
    title = t("attn.digest_title", count=len(letters))
    listed = list(enumerate(letters[:DIGEST_LISTED], 1))
    rest = list(letters[DIGEST_LISTED:])
    more = t("attn.more", count=len(rest)) if rest else ""
    reserve = visible_len(more) + 1 if more else 0
    parts: list[DigestPart] = []
    lines: list[str] = [title]
    numbered: list[tuple[int, Letter]] = []
    used = visible_len(title)

    def close() -> None:
        parts.append(DigestPart("\n".join(lines), kb.markup(_open_buttons(numbered)), [x.id for _, x in numbered]))

    for n, letter in listed:
        line = letter_line(t, n, letter)
        size = visible_len(line) + 1
        if numbered and (used + size + reserve > limit or len(numbered) >= DIGEST_BUTTONS):
            close()
            lines, numbered, used = [], [], 0
        lines.append(line)
        numbered.append((n, letter))
        used += size
    if more:
        lines.append(more)
    close()
    parts[-1].letter_ids.extend(x.id for x in rest)
    return parts


# --------------------------------------------------------------------------- claimed sends
class GroupNotClaimed(TelegramAPIError):
    """None of the message's letters is waiting any more (settled or claimed elsewhere)."""


class GroupStopping(TelegramAPIError):
    """The instance is stopping: the request is not made."""


class GroupUncertainRetry(TelegramAPIError):
    """A resend of a request whose first attempt may have been delivered is refused."""


_group: ContextVar[_GroupAttempt | None] = ContextVar("group_attempt", default=None)


@dataclass
class _GroupAttempt(ClaimedSend):
    """One grouped alert or digest message; the guard claims its letters right before the
    request leaves and reports what happened on the wire."""

    data: AttentionData
    letter_ids: list[int]
    owner: str
    source: AlertState  # where the letters wait: pending (burst) or held (digest)
    stopping: Callable[[], bool]
    claimed: list[int] = field(default_factory=list)
    requests: int = 0
    in_flight: bool = False
    uncertain: str = ""
    released: str = ""
    not_claimed: bool = False
    refusals = (GroupUncertainRetry, GroupStopping, GroupNotClaimed)
    not_claimed_text = "the letters are not waiting any more"

    async def claim(self) -> bool:
        self.claimed = await self.data.claim(self.letter_ids, self.owner, self.source)
        return bool(self.claimed)

    async def release(self, reason: str) -> None:
        await self.data.release(self.claimed, self.owner, self.source, reason)


class GroupSender:
    """Sends grouped alerts and digests with their letters claimed (see the module doc)."""

    def __init__(self, data: AttentionData, sender: TelegramSender, catalog: Catalog, *, instance_id: str) -> None:
        self.data = data
        self.sender = sender
        self.catalog = catalog
        self.instance_id = instance_id
        install_claim_guard(sender.bot, _group)

    async def send_claimed(
        self,
        chat_id: int,
        text: str,
        markup: InlineKeyboardMarkup,
        letter_ids: list[int],
        source: AlertState,
        *,
        silent: bool,
        stopping: Callable[[], bool],
    ) -> bool:
        """Send one message for ``letter_ids``; False: stop sending this batch now (it did not
        go out and is retried later, or the user blocked the bot)."""
        attempt = _GroupAttempt(self.data, letter_ids, self.instance_id, source, stopping)
        token = _group.set(attempt)
        try:
            result = await self.sender.send_message(chat_id, text, reply_markup=markup, disable_notification=silent)
        finally:
            _group.reset(token)
        if attempt.not_claimed:
            return True  # settled elsewhere: nothing to record
        if attempt.requests == 0:
            return False  # never left (stopping, no slot in time): still waiting, retried later
        return await self._record(attempt, result)

    async def _record(self, attempt: _GroupAttempt, result: SendResult) -> bool:
        me, ids = self.instance_id, attempt.claimed
        if result.status == SendStatus.SENT:
            await self.data.settle(ids, me, AlertState.SENT)
        elif result.status == SendStatus.BLOCKED:
            await self.data.settle(ids, me, AlertState.SKIPPED, result.reason)
            return False
        elif attempt.uncertain:
            log.warning("grouped alert for %d letters may or may not have arrived (%s); not resent", len(ids), attempt.uncertain)
            await self.data.settle(ids, me, AlertState.UNCERTAIN, attempt.uncertain)
        elif attempt.released:
            log.warning("grouped alert for %d letters not delivered (%s); retried later", len(ids), attempt.released)
            return False
        else:
            log.warning("grouped alert for %d letters refused: %s", len(ids), result.reason)
            await self.data.settle(ids, me, AlertState.REJECTED, result.reason)
        return True


class AlertAttention:
    """What bot.notifications.ChatNotifier asks before alerting a batch: rules, quiet hours
    and grouping (services.attention.plan on the injected clock), and the grouped send."""

    def __init__(self, data: AttentionData, group: GroupSender, clock: Clock | None = None) -> None:
        self.data = data
        self.group = group
        self.clock: Clock = clock or SystemClock()

    async def sort(self, target: AlertTarget, pending: list[Letter], session: AsyncSession | None = None) -> Plan[Letter]:
        """Muted letters settle (skipped), held ones wait for the digest; the plan says how
        the rest go (one by one, loud or silent, or as one grouped alert). The rules are read
        on ``session`` when given (the alert's own reads, services.watching.AlertData.reading)."""
        index, prefs = await self.data.facts(target.user_id, session)
        result = plan(pending, index, prefs, sound=target.notify_sound, now=self.clock.wall())
        await self.data.mute(result.muted)
        await self.data.hold(result.held)
        return result

    async def send_group(
        self, target: AlertTarget, alerts: list[tuple[Letter, bool]], stopping: Callable[[], bool]
    ) -> None:
        t = self.catalog_t(target)
        letters = [letter for letter, _ in alerts]
        text, markup = render_group(t, letters)
        loud = any(is_loud for _, is_loud in alerts)
        await self.group.send_claimed(
            target.user_id, text, markup, [x.id for x in letters], AlertState.PENDING,
            silent=not loud, stopping=stopping,
        )

    def catalog_t(self, target: AlertTarget) -> Translator:
        return self.group.catalog.get(target.language)


class DigestRunner:
    """Every DIGEST_EVERY seconds (on the injected clock): for each mailbox this instance
    watches that has held letters, when the user's quiet window is over (or quiet hours were
    turned off, or changed to silent), send the digest. Alerts switched off meanwhile: the
    held letters settle as skipped. Per instance; the claims in the database keep it right
    in a fleet."""

    def __init__(
        self,
        data: AttentionData,
        alert_data: AlertData,
        group: GroupSender,
        *,
        clock: Clock | None = None,
        every: float = DIGEST_EVERY,
        held: Callable[[], Collection[int]] | None = None,
    ) -> None:
        self.data = data
        self.alert_data = alert_data
        self.group = group
        self.clock: Clock = clock or SystemClock()
        self.every = every
        self.held = held
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def run(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="quiet-digests")
        return self._task

    async def close(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        interactive.set(False)  # unsolicited messages: paced per chat
        while not self._stopping:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("quiet-hours digest pass failed")
            await self.clock.sleep(self.every)

    async def tick(self) -> int:
        """One pass; returns the number of digests sent."""
        now = self.clock.wall()
        mine = set(self.held()) if self.held is not None else None
        sent = 0
        for mailbox_id in await self.data.mailboxes_with_held():
            if self._stopping:
                break
            if mine is not None and mailbox_id not in mine:
                continue
            target = await self.alert_data.target(mailbox_id)
            if target is None:
                continue
            letters = await self.data.held(mailbox_id)
            if not letters:
                continue
            if not target.notify or not target.active:
                await self.data.skip_held([x.id for x in letters], "alerts off")
                continue
            _index, prefs = await self.data.facts(target.user_id)
            if prefs.quiet_mode == "hold" and prefs.quiet_now(now):
                continue  # still quiet
            if await self.send_digest(target, letters):
                sent += 1
        return sent

    async def send_digest(self, target: AlertTarget, letters: list[Letter]) -> bool:
        t = self.group.catalog.get(target.language)
        parts = render_digest(t, letters)
        log.info("mailbox %s: quiet hours over, a digest of %d letters in %d messages", target.mailbox_id, len(letters), len(parts))
        for part in parts:
            if not await self.group.send_claimed(
                target.user_id, part.text, part.markup, part.letter_ids, AlertState.HELD,
                silent=not target.notify_sound, stopping=lambda: self._stopping,
            ):
                return False
        return True
