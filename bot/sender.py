"""Background messages to users (new-mail alerts, later broadcasts) through one facade.

Every request still goes through the bot session's :class:`~bot.telegram_limits.TelegramLimiter`
(installed here if the bot has none), so pacing, flood pauses and retries are the same as for
handler replies. What this adds:

* a :class:`SendResult` instead of exceptions: ``sent`` (with ``message_id``), ``blocked``
  (403: the user blocked the bot or was deactivated) or ``failed`` (with a reason);
* ``uncertain`` on a failure after which the message may still have arrived (a 5xx, a
  timeout, a connection lost after the request left): the limiter does not resend such a
  request, and neither should the caller (see ``bot.telegram_limits.may_have_arrived``);
* the ``on_blocked(chat_id)`` hook, called once per chat when Telegram first answers 403, so
  the service layer can mark the user inactive; afterwards nothing more is sent to that chat
  until :meth:`TelegramSender.unblock` (call it when the user writes to the bot again).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError
from aiogram.types import BufferedInputFile, Message

from bot.telegram_limits import (
    LimitConfig,
    Priority,
    TelegramLimiter,
    install_limiter,
    may_have_arrived,
)
from bot.telegram_limits import priority as current_priority

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # Telegram's limit for files sent by bots
MAX_CAPTION_CHARS = 1024
REASON_MAX = 300

BlockedHook = Callable[[int], Awaitable[None]]


class SendStatus(str, enum.Enum):
    SENT = "sent"
    BLOCKED = "blocked"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class SendResult:
    status: SendStatus
    message_id: int | None = None
    reason: str = ""
    uncertain: bool = False  # failed, but may have arrived: never send it again

    @property
    def ok(self) -> bool:
        return self.status is SendStatus.SENT

    @classmethod
    def sent(cls, message_id: int) -> SendResult:
        return cls(SendStatus.SENT, message_id)

    @classmethod
    def blocked(cls, reason: str = "") -> SendResult:
        return cls(SendStatus.BLOCKED, None, reason)

    @classmethod
    def failed(cls, reason: str, *, uncertain: bool = False) -> SendResult:
        return cls(SendStatus.FAILED, None, reason[:REASON_MAX], uncertain)


class TelegramSender:
    def __init__(
        self,
        bot: Bot,
        *,
        on_blocked: BlockedHook | None = None,
        limits: LimitConfig | None = None,
    ) -> None:
        """``limits`` only matters when the bot has no limiter yet (one is installed)."""
        self.bot = bot
        self.limiter: TelegramLimiter = install_limiter(bot, limits)
        self._on_blocked = on_blocked
        self._blocked: set[int] = set()

    # --- blocked chats ---
    def is_blocked(self, chat_id: int) -> bool:
        return chat_id in self._blocked

    def unblock(self, chat_id: int) -> None:
        """The user talks to the bot again: sending to the chat is allowed again."""
        self._blocked.discard(chat_id)

    @property
    def blocked_chats(self) -> frozenset[int]:
        return frozenset(self._blocked)

    async def _mark_blocked(self, chat_id: int, exc: TelegramForbiddenError) -> SendResult:
        reason = exc.message
        if chat_id in self._blocked:
            return SendResult.blocked(reason)
        self._blocked.add(chat_id)
        log.info("chat %s refuses messages: %s", chat_id, reason)
        if self._on_blocked is not None:
            try:
                await self._on_blocked(chat_id)
            except Exception:
                log.exception("on_blocked hook failed for chat %s", chat_id)
        return SendResult.blocked(reason)

    # --- sending ---
    async def _send(
        self, chat_id: int, prio: Priority, call: Callable[[], Awaitable[Message]]
    ) -> SendResult:
        if chat_id in self._blocked:
            return SendResult.blocked("the user blocked the bot")
        token = current_priority.set(prio)
        try:
            message = await call()
        except TelegramForbiddenError as exc:
            return await self._mark_blocked(chat_id, exc)
        except TelegramAPIError as exc:
            log.warning("sending to chat %s failed: %s", chat_id, exc)
            return SendResult.failed(f"{type(exc).__name__}: {exc.message}", uncertain=may_have_arrived(exc))
        finally:
            current_priority.reset(token)
        return SendResult.sent(message.message_id)

    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        reply_markup: Any = None,
        disable_notification: bool = False,
        priority: Priority = Priority.ALERT,
    ) -> SendResult:
        """Send an HTML text (the bot's default parse mode)."""
        if not text.strip():
            return SendResult.failed("empty text")
        return await self._send(
            chat_id,
            priority,
            lambda: self.bot.send_message(
                chat_id,
                text,
                reply_markup=reply_markup,
                disable_notification=disable_notification,
            ),
        )

    async def send_document(
        self,
        chat_id: int,
        filename: str,
        data: bytes,
        *,
        caption: str | None = None,
        reply_markup: Any = None,
        disable_notification: bool = False,
        priority: Priority = Priority.ALERT,
    ) -> SendResult:
        """Upload ``data`` as a file named ``filename`` (caption is HTML, ≤ 1024 characters)."""
        if not data:
            return SendResult.failed("empty file")
        if len(data) > MAX_UPLOAD_BYTES:
            return SendResult.failed(f"file too large for Telegram ({len(data)} bytes)")
        document = BufferedInputFile(data, filename=filename or "file")
        return await self._send(
            chat_id,
            priority,
            lambda: self.bot.send_document(
                chat_id,
                document,
                caption=caption,
                reply_markup=reply_markup,
                disable_notification=disable_notification,
            ),
        )
