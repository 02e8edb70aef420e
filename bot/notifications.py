"""The Telegram side of the watcher's notifications (mail.watcher.WatchNotifier).

New letters: one alert each, with an Open button; silent when the user chose no sound on
mobile; none when alerts are off (the letter is still imported). A letter is marked alerted
only once its alert went out (or was not wanted), so a crash between storing and alerting
resends it at the next start instead of losing it, and nothing is alerted twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from bot import keyboards as kb
from bot.i18n import Catalog, Html
from bot.letter_view import render_alert
from bot.render import failure_reason, when
from bot.sender import SendStatus, TelegramSender
from bot.telegram_limits import interactive
from mail.types import LetterSummary, MailCheckError
from services.letters import summary_of
from services.watching import AlertData

log = logging.getLogger(__name__)


class ChatNotifier:
    def __init__(self, data: AlertData, sender: TelegramSender, catalog: Catalog) -> None:
        self.data = data
        self.sender = sender
        self.catalog = catalog
        self._again: set[int] = set()
        self._running: dict[int, asyncio.Task[None]] = {}

    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None:
        """Queue the alerts and return at once: the watcher goes back to IDLE while the
        sender paces the messages (about one a second per chat)."""
        self._schedule(mailbox_id)

    async def resend_pending(self) -> None:
        """At start-up: alerts that were stored but not sent before a stop."""
        for mailbox_id in await self.data.mailboxes_with_pending():
            self._schedule(mailbox_id)

    async def close(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _schedule(self, mailbox_id: int) -> None:
        self._again.add(mailbox_id)
        if mailbox_id not in self._running:
            self._running[mailbox_id] = asyncio.create_task(self._drain(mailbox_id))

    async def _drain(self, mailbox_id: int) -> None:
        """One worker per mailbox sends every pending alert, oldest first, then stops."""
        interactive.set(False)  # unsolicited messages: paced per chat (this task's own context)
        try:
            while mailbox_id in self._again:
                self._again.discard(mailbox_id)
                try:
                    await self._alert_pending(mailbox_id, None)
                except Exception:
                    log.exception("alerts for mailbox %s failed; they stay pending", mailbox_id)
        finally:
            self._running.pop(mailbox_id, None)

    async def _alert_pending(self, mailbox_id: int, uids: list[int] | None) -> None:
        target = await self.data.target(mailbox_id)
        if target is None:
            return
        pending = await self.data.pending(mailbox_id, uids)
        if not target.notify or not target.active:
            await self.data.mark_alerted([letter.id for letter in pending])
            return
        t = self.catalog.get(target.language)
        for letter in pending:
            result = await self.sender.send_message(
                target.user_id,
                render_alert(t, summary_of(letter)),
                reply_markup=kb.open_letter(t, letter.id),
                disable_notification=not target.notify_sound,
            )
            if result.status == SendStatus.BLOCKED:
                # the user blocked the bot: no more alerts for them; the letters stay imported
                await self.data.mark_alerted([x.id for x in pending])
                return
            if result.status == SendStatus.SENT:
                await self.data.mark_alerted([letter.id])
            else:
                log.warning("alert for letter %s not delivered: %s", letter.id, result.reason)

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
        )

    async def outage(self, mailbox_id: int, since: datetime) -> None:
        target = await self.data.target(mailbox_id)
        if target is None or target.outage_notified:
            return
        await self.data.set_outage_notified(mailbox_id, True)
        if target.active:
            t = self.catalog.get(target.language)
            await self.sender.send_message(target.user_id, t("alert.outage", email=target.email, since=when(since)))

    async def recovered(self, mailbox_id: int) -> None:
        target = await self.data.target(mailbox_id)
        if target is None or not target.outage_notified:
            return
        await self.data.set_outage_notified(mailbox_id, False)
        if target.active:
            t = self.catalog.get(target.language)
            await self.sender.send_message(target.user_id, t("alert.recovered", email=target.email))
