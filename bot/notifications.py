"""The Telegram side of the watcher's notifications (mail.watcher.WatchNotifier).

New letters: one alert each, with an Open button; silent when the user chose no sound on
mobile; none when alerts are off (the letter is still imported).

Exactly once, across restarts and a fleet of instances (the letter row's `alert_state`, see
storage.models.AlertState):

* :class:`bot.claim_guard.ClaimGuard` (for ``_alert``), a session request middleware registered *after* the limiter, runs right
  before the HTTP request leaves (the limiter has granted the slot). It claims the letter
  (pending -> sending, with this instance's id) in its own committed transaction; a letter
  that is not pending any more (sent, or claimed by another instance) is not sent. Right
  after the answer the outcome is written:
  - sent: ``sent``;
  - 403 (the user blocked the bot): ``skipped``, and the rest of the user's alerts too;
  - it certainly did not go out (429, connection refused, a 5xx answered by the server, no
    slot within the limiter's wait, the instance is stopping): ``pending`` again; the limiter
    may retry at once (the guard claims again), else the retry timer sends it later, in
    order (:meth:`ChatNotifier.run_retries`, every ``retry_every`` seconds), up to
    services.watching.MAX_ALERT_ATTEMPTS times;
  - the request may have arrived without an answer (a timeout, a dropped connection):
    ``uncertain``; the guard refuses the limiter's retry, it is never sent again;
  - any other 4xx: ``rejected`` with Telegram's words.
* A graceful stop (:meth:`ChatNotifier.close`) takes no new sends, waits up to ``grace``
  seconds for the requests in flight and records their outcome. A row left ``sending`` by
  an instance that is gone (SIGKILL, power, a request still unanswered after the grace) is
  found by the retry timer of a live instance and becomes ``uncertain``: at most once, the
  user may miss that one alert but never gets it twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram.exceptions import (
    TelegramAPIError,
)
from aiogram.types import InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.attention import AlertAttention, alert_keyboard
from bot.claim_guard import ClaimedSend, install_claim_guard
from bot.i18n import Catalog, Html, Translator
from bot.letter_view import render_alert
from bot.render import failure_reason, when
from bot.sender import SendResult, SendStatus, TelegramSender
from bot.telegram_limits import Priority, interactive
from mail.compose import others_addressed
from mail.types import LetterSummary, MailCheckError
from services.letters import summary_of
from services.watching import AlertData
from storage.models import AlertState, Letter

log = logging.getLogger(__name__)


class AlertNotClaimed(TelegramAPIError):
    """The letter's alert is not pending any more (sent, or being sent by another instance)."""


class AlertStopping(TelegramAPIError):
    """The instance is stopping: the slot was granted but the request is not made."""


class AlertUncertainRetry(TelegramAPIError):
    """The guard refuses to resend a request whose first attempt may have been delivered."""


_alert: ContextVar[_AlertAttempt | None] = ContextVar("alert_attempt", default=None)


@dataclass
class _AlertAttempt(ClaimedSend):
    """One letter's alert being sent; the guard reports what happened on the wire."""

    data: AlertData
    letter_id: int
    owner: str
    stopping: Callable[[], bool]
    requests: int = 0
    in_flight: bool = False
    recording: bool = False  # answered; the outcome is being written
    uncertain: str = ""
    released: str = ""  # back to pending, with this reason
    not_claimed: bool = False
    refusals = (AlertUncertainRetry, AlertStopping, AlertNotClaimed)
    not_claimed_text = "the alert is not pending any more"

    async def claim(self) -> bool:
        return await self.data.claim(self.letter_id, self.owner)

    async def release(self, reason: str) -> None:
        await self.data.unclaim(self.letter_id, self.owner, reason)


class ChatNotifier:
    """One per process. With several instances each sends the alerts of the mailboxes it
    watches; the claim in the database is what keeps two from sending the same one."""

    def __init__(
        self,
        data: AlertData,
        sender: TelegramSender,
        catalog: Catalog,
        *,
        instance_id: str = "local",
        grace: float = 10.0,
        retry_every: float = 30.0,
    ) -> None:
        self.data = data
        self.sender = sender
        self.catalog = catalog
        self.instance_id = instance_id
        self.grace = grace
        self.retry_every = retry_every
        # set by the app in a fleet: which mailboxes this instance watches, who is alive
        self.held: Callable[[], Collection[int]] | None = None
        self.live: Callable[[], Awaitable[Collection[str]]] | None = None
        self._again: set[int] = set()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._attempts: dict[int, _AlertAttempt] = {}  # mailbox id -> its send under way
        self._stopping = False
        self._retries: asyncio.Task[None] | None = None
        # rules, quiet hours and bursts (bot/attention.py); None: every letter alerted as before
        self.attention: AlertAttention | None = None
        # set by the app (bot/letter_actions.py): the alert's action buttons, and which
        # message carries them (for the state shown to follow the server)
        # alert_states reads the buttons' state of new letters on the alert's connection,
        # extend_alert adds their rows
        self.alert_states: Callable[[AsyncSession, list[Letter]], Awaitable[dict[int, Any]]] | None = None
        self.extend_alert: Callable[[Translator, Letter, InlineKeyboardMarkup, Any], InlineKeyboardMarkup] | None = None
        self.alert_sent: Callable[[int, int, int], Awaitable[None]] | None = None
        self.on_letters_changed: Callable[[int, list[int]], Awaitable[None]] | None = None
        install_claim_guard(sender.bot, _alert)

    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        """Queue the alerts and return at once: the watcher goes back to IDLE while the
        sender paces the messages (about one a second per chat)."""
        self._schedule(mailbox_id)

    async def letters_changed(self, mailbox_id: int, letter_ids: list[int]) -> None:
        """The server says these letters changed (mail.watcher step 5): their alerts' buttons follow."""
        if self.on_letters_changed is not None:
            await self.on_letters_changed(mailbox_id, letter_ids)

    async def pending_for(self, mailbox_ids: list[int]) -> None:
        """Mailboxes this instance just took over: alerts their previous holder left pending."""
        gained = set(mailbox_ids)
        for mailbox_id in await self.data.mailboxes_with_pending():
            if mailbox_id in gained:
                self._schedule(mailbox_id)

    async def recover(self, *, at_start: bool = False) -> None:
        """Alerts left `sending` by an instance that is gone become `uncertain` (never resent);
        at start, this instance's own too (no send of this process is under way yet)."""
        live = list(await self.live()) if self.live is not None else [self.instance_id]
        if self.instance_id not in live:
            live.append(self.instance_id)
        found = await self.data.recover_interrupted(live, own=self.instance_id if at_start else None)
        for mailbox_id, letter_id in found:
            log.warning(
                "mailbox %s: the alert for letter %s was on its way when its instance stopped; "
                "it may have arrived and is not sent again", mailbox_id, letter_id,
            )

    async def resend_pending(self) -> None:
        """Alerts still pending (an earlier attempt certainly failed, or a stop came first),
        for the mailboxes this instance watches (all, outside a fleet)."""
        held = set(self.held()) if self.held is not None else None
        for mailbox_id in await self.data.mailboxes_with_pending():
            if held is None or mailbox_id in held:
                self._schedule(mailbox_id)

    def run_retries(self) -> asyncio.Task[None]:
        """Every retry_every seconds: recover interrupted sends, resend pending alerts."""
        if self._retries is None or self._retries.done():
            self._retries = asyncio.create_task(self._retry_loop(), name="alert-retries")
        return self._retries

    async def _retry_loop(self) -> None:
        while not self._stopping:
            try:
                await self.recover()
                await self.resend_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert retry pass failed")
            await asyncio.sleep(self.retry_every)

    async def close(self) -> None:
        """A graceful stop: no new sends; the requests on their way get up to `grace` seconds
        to be answered and recorded; the rest stays pending for the next start."""
        self._stopping = True
        if self._retries is not None:
            self._retries.cancel()
        waiting = []
        for mailbox_id, task in list(self._running.items()):
            attempt = self._attempts.get(mailbox_id)
            if attempt is not None and (attempt.in_flight or attempt.recording):
                waiting.append(task)
            else:
                task.cancel()
        if waiting:
            log.info("waiting up to %.0f s for %d alerts on their way", self.grace, len(waiting))
            _done, late = await asyncio.wait(waiting, timeout=self.grace)
            for task in late:
                task.cancel()
        tasks = [*self._running.values(), *([self._retries] if self._retries else [])]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _schedule(self, mailbox_id: int) -> None:
        if self._stopping:
            return
        self._again.add(mailbox_id)
        if mailbox_id not in self._running:
            self._running[mailbox_id] = asyncio.create_task(self._drain(mailbox_id))

    async def _drain(self, mailbox_id: int) -> None:
        """One worker per mailbox sends every pending alert, oldest first, then stops."""
        interactive.set(False)  # unsolicited messages: paced per chat (this task's own context)
        try:
            while mailbox_id in self._again and not self._stopping:
                self._again.discard(mailbox_id)
                try:
                    await self._alert_pending(mailbox_id, None)
                except Exception:
                    log.exception("alerts for mailbox %s failed; they stay pending", mailbox_id)
        finally:
            self._running.pop(mailbox_id, None)
            self._attempts.pop(mailbox_id, None)

    async def _alert_pending(self, mailbox_id: int, uids: list[int] | None) -> None:
        # everything the alerts show, on one connection (a few round trips in all)
        loud: dict[int, bool] = {}
        states: dict[int, Any] = {}
        async with self.data.reading() as session:
            target, pending = await self.data.target_and_pending(mailbox_id, uids, session)
            if target is None or not pending:
                return
            if not target.notify or not target.active:
                await self.data.mark_alerted([letter.id for letter in pending])
                return
            if self.attention is not None:  # muted settle, held wait for the digest, a burst goes as one
                sorted_ = await self.attention.sort(target, pending, session)
                if sorted_.grouped:
                    await self.attention.send_group(target, sorted_.alerts, lambda: self._stopping)
                    return
                pending = [letter for letter, _ in sorted_.alerts]
                loud = {letter.id: is_loud for letter, is_loud in sorted_.alerts}
            if self.alert_states is not None and pending:
                states = await self.alert_states(session, pending)
        t = self.catalog.get(target.language)
        for letter in pending:
            if self._stopping:
                return
            attempt = _AlertAttempt(self.data, letter.id, self.instance_id, lambda: self._stopping)
            self._attempts[mailbox_id] = attempt
            markup = alert_keyboard(
                t, letter.id, letter.from_addr, reply_all=others_addressed(letter.to_addrs, target.email), code=letter.code
            )
            if self.extend_alert is not None:
                markup = self.extend_alert(t, letter, markup, states.get(letter.id))
            token = _alert.set(attempt)
            try:
                result = await self.sender.send_message(
                    target.user_id,
                    render_alert(t, summary_of(letter)),
                    reply_markup=markup,
                    disable_notification=not loud.get(letter.id, target.notify_sound),
                )
            finally:
                _alert.reset(token)
            if attempt.not_claimed:
                continue  # sent, or being sent, by another instance
            if attempt.requests == 0:
                return  # it never left (stopping, no slot in time): pending, retried later
            attempt.recording = True
            try:
                if not await self._record(letter.id, attempt, result, pending):
                    return
            finally:
                attempt.recording = False
            if self.alert_sent is not None and result.ok and result.message_id is not None:
                await self.alert_sent(letter.id, target.user_id, result.message_id)

    async def _record(
        self, letter_id: int, attempt: _AlertAttempt, result: SendResult, pending: list[Letter]
    ) -> bool:
        """Write the outcome of a claimed send; False: send no more of this mailbox now."""
        me = self.instance_id
        if result.status == SendStatus.SENT:
            await self.data.finish(letter_id, me, AlertState.SENT)
        elif result.status == SendStatus.BLOCKED:
            # the user blocked the bot: no more alerts for them; the letters stay imported
            await self.data.finish(letter_id, me, AlertState.SKIPPED, result.reason)
            await self.data.mark_alerted([x.id for x in pending])
            return False
        elif attempt.uncertain:
            log.warning("alert for letter %s may or may not have arrived (%s); not resent", letter_id, attempt.uncertain)
            await self.data.finish(letter_id, me, AlertState.UNCERTAIN, attempt.uncertain)
        elif attempt.released:
            log.warning("alert for letter %s not delivered (%s); retried later", letter_id, attempt.released)
            return False  # keep the order: the later ones wait for the retry
        else:
            log.warning("alert for letter %s refused: %s", letter_id, result.reason)
            await self.data.finish(letter_id, me, AlertState.REJECTED, result.reason)
        return True

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None:
        target = await self.data.target(mailbox_id)
        if target is None or not target.active:
            return
        t = self.catalog.get(target.language)
        reason = failure_reason(t, error, oauth=target.oauth2)  # an OAuth2 account signs in again
        await self.sender.send_message(
            target.user_id,
            t("alert.broken_oauth" if target.oauth2 else "alert.broken", email=target.email, reason=Html(reason)),
            reply_markup=kb.reconnect_button(t, mailbox_id),
            priority=Priority.RECONNECT,  # after new-mail alerts, before broadcasts
        )

    async def outage(self, mailbox_id: int, since: datetime) -> None:
        target = await self.data.target(mailbox_id)
        if target is None or target.outage_notified:
            return
        await self.data.set_outage_notified(mailbox_id, True)
        if target.active:
            t = self.catalog.get(target.language)
            await self.sender.send_message(
                target.user_id, t("alert.outage", email=target.email, since=when(since)), priority=Priority.RECONNECT
            )

    async def recovered(self, mailbox_id: int) -> None:
        target = await self.data.target(mailbox_id)
        if target is None or not target.outage_notified:
            return
        await self.data.set_outage_notified(mailbox_id, False)
        if target.active:
            t = self.catalog.get(target.language)
            await self.sender.send_message(
                target.user_id, t("alert.recovered", email=target.email), priority=Priority.RECONNECT
            )
