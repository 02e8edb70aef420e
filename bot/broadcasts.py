"""The Telegram side of outage broadcasts: one job per confirmed broadcast sends its pending
delivery rows (services/broadcasts.py) through the bot's one rate-limited sender.

* Every notice goes through :class:`~bot.sender.TelegramSender` at ``Priority.BULK`` and
  per-chat pacing (the job's context is not interactive), so the limiter keeps the bot under
  Telegram's limits and serves new-mail alerts and replies first.
* :class:`bot.claim_guard.ClaimGuard` (for ``_attempt``), a session request middleware registered *after* the limiter, runs
  right before the HTTP request leaves, i.e. once the limiter has granted the slot. For a
  broadcast message it commits the row as ``sending`` there (not while the request waits
  for a slot, which can take seconds), so a row is ``sending`` only while its request is in
  flight. Its outcome is written right after the answer.
* What a failed request means for the row:
  - 429 (the limiter pauses the bot and retries), no slot within the limiter's wait: the
    message certainly did not go out; the row goes back to ``pending`` for a later pass;
  - 403: ``blocked`` (the sender's hook marks the user inactive);
  - other 4xx: ``failed`` with Telegram's words;
  - 5xx, timeouts, a dropped connection: the request may have been delivered; the limiter
    would retry it, the guard refuses that retry and the row is ``failed`` (uncertain). At
    most once, never twice.
* ``close()`` (a normal stop) stops taking rows, lets requests in flight finish (a few
  seconds at most), releases the lease and leaves the broadcast ``sending``: another
  instance (or the next start) resumes it. Rows left ``sending`` by a crash are uncertain:
  see services/broadcasts.py.
* Several instances (fleet-safe): a job first claims the broadcast's lease in the database
  and renews it every third of ``lease_ttl``; a request leaves only while the lease holds
  (the row's claim checks it), and a job whose renewal fails stops at once. Every instance
  looks for broadcasts without a live runner every ``check_every`` seconds (and at start)
  and takes over those whose lease ran out; only then are the rows left ``sending`` by the
  dead runner marked uncertain, never a live runner's.
* The admin's progress message is edited in place every ``progress_every`` seconds
  (sent / failed / blocked / left, rate per second) with a Stop button, and once more at the
  end. Edits do not spend the sending budget.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.middlewares.base import NextRequestMiddlewareType
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.callbacks import AdminCB
from bot.claim_guard import install_claim_guard
from bot.i18n import Catalog, Html, Translator
from bot.sender import SendStatus, TelegramSender
from bot.telegram_limits import Clock, Priority, SystemClock, interactive, priority
from services.broadcasts import (
    AUDIENCE_ALL,
    UNCERTAIN_PREFIX,
    Counts,
    DeliveryQueue,
    Item,
    JobInfo,
    Outcome,
)
from storage.models import BroadcastState

log = logging.getLogger(__name__)

MAX_PASSES = 5  # rounds over rows sent back to pending (429s, no slot) before giving up


class UncertainRetry(TelegramAPIError):
    """The guard refuses to resend a request whose first attempt may have been delivered."""


class NotClaimed(TelegramAPIError):
    """The row is no longer pending (cancelled, or taken by another process)."""


class Stopping(TelegramAPIError):
    """The job is stopping: the slot was granted but the request is not made."""


_attempt: ContextVar[_Attempt | None] = ContextVar("broadcast_attempt", default=None)


@dataclass
class _Attempt:
    """One delivery row being sent; the guard reports what happened on the wire."""

    queue: DeliveryQueue
    delivery_id: int
    stopping: Callable[[], bool]
    lease_holds: Callable[[], bool] | None = None  # False once the runner's lease may be gone
    requests: int = 0  # requests that left (or may have left)
    in_flight: bool = False
    uncertain: bool = False  # a request may have been delivered without an answer
    uncertain_reason: str = ""
    refused: BaseException | None = None  # Telegram's definite "no" on the last request
    not_claimed: bool = False

    async def around(self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]) -> Any:
        if self.uncertain:
            raise UncertainRetry(method=method, message="an earlier attempt may have been delivered; not resent")
        if self.stopping():
            raise Stopping(method=method, message="the broadcast is stopping")
        self.in_flight = True
        try:
            if self.lease_holds is not None and not self.lease_holds():
                self.not_claimed = True  # another instance may take the broadcast over any moment
                raise NotClaimed(method=method, message="the runner's lease is running out")
            if not await self.queue.mark_sending(self.delivery_id):
                self.not_claimed = True
                raise NotClaimed(method=method, message="the delivery is not pending any more")
            self.requests += 1
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                self.refused = exc  # certainly not delivered; the limiter retries after the pause
                await self.queue.mark_pending(self.delivery_id, f"429: retry after {exc.retry_after}")
                raise
            except TelegramNetworkError as exc:
                if isinstance(exc.__cause__, aiohttp.ClientConnectorError):
                    self.refused = exc  # never connected: nothing was sent
                    await self.queue.mark_pending(self.delivery_id, exc.message)
                else:
                    self._unsure(exc)
                raise
            except TelegramServerError as exc:
                self._unsure(exc)
                raise
            except TelegramAPIError as exc:
                self.refused = exc
                raise
        finally:
            self.in_flight = False

    def _unsure(self, exc: TelegramAPIError) -> None:
        self.uncertain = True
        self.uncertain_reason = f"{type(exc).__name__}: {exc.message}"




def notice_text(t: Translator, text: str) -> str:
    """The notice as a user sees it (``text`` is the admin's message as Telegram HTML)."""
    return t("admin.bc_notice", text=Html(text))


def audience_label(t: Translator, audience: str, service_name: str | None) -> str:
    if audience == AUDIENCE_ALL:
        return t("admin.bc_audience_all")
    return t("admin.bc_audience_service", service=service_name or audience)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def progress_text(t: Translator, info: JobInfo, counts: Counts, *, rate: float, elapsed: float, state: str) -> str:
    service_name = info.service.name(t.lang) if info.service is not None else None
    values: dict[str, Any] = {
        "audience": audience_label(t, info.audience, service_name),
        "sent": counts.sent,
        "failed": counts.failed - counts.uncertain,  # the uncertain ones have a line of their own
        "blocked": counts.blocked,
        "left": counts.left,
        "total": counts.total,
        "rate": f"{rate:.1f}",
        "elapsed": _duration(elapsed),
    }
    key = {
        BroadcastState.SENDING.value: "admin.bc_progress",
        BroadcastState.DONE.value: "admin.bc_done",
        BroadcastState.CANCELLED.value: "admin.bc_cancelled",
    }.get(state, "admin.bc_progress")
    text = t(key, **values)
    if counts.uncertain:
        text += "\n" + t("admin.bc_uncertain", count=counts.uncertain)
    return text


def stop_markup(t: Translator, broadcast_id: int) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(
        text=t("admin.bc_btn_stop"), callback_data=AdminCB(section="bc", action="stop", item=broadcast_id).pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


@dataclass
class _Job:
    runner: BroadcastRunner
    broadcast_id: int
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    deliveries: dict[asyncio.Task[None], _Attempt | None] = field(default_factory=dict)
    info: JobInfo | None = None
    started: float = 0.0
    sent_at_start: int = 0
    lease_lost: bool = False
    lease_until: datetime = field(default_factory=lambda: datetime.min.replace(tzinfo=UTC))
    last_text: str = ""
    progress_gone: bool = False  # the admin deleted the progress message: stop editing it

    def stop(self) -> None:
        """Take no more rows; deliveries still waiting for a slot give up (their rows stay
        pending), requests in flight finish."""
        self.stopping = True
        for task, attempt in list(self.deliveries.items()):
            if attempt is None or (not attempt.in_flight and attempt.requests == 0):
                task.cancel()  # still waiting for a slot: nothing left, the row stays pending

    async def run(self) -> None:
        interactive.set(False)  # unsolicited messages: paced per chat
        priority.set(Priority.BULK)  # alerts and replies go first
        runner = self.runner
        queue = runner.queue
        now = runner.clock.wall()
        if not await queue.claim(self.broadcast_id, runner.instance_id, now, runner.lease_ttl):
            return  # another instance is sending it (its lease holds), or it is over
        self.lease_until = now + timedelta(seconds=runner.lease_ttl)
        lease = asyncio.create_task(self._keep_lease(), name=f"broadcast-{self.broadcast_id}-lease")
        killed = False
        try:
            await self._run_claimed()
        except asyncio.CancelledError:
            killed = True  # like a crash: the lease runs out by itself, then another instance goes on
            raise
        finally:
            lease.cancel()
            if not killed:
                await asyncio.gather(lease, return_exceptions=True)
                if not self.lease_lost:
                    await queue.release(self.broadcast_id, runner.instance_id)

    async def _keep_lease(self) -> None:
        runner = self.runner
        while True:
            await runner.clock.sleep(runner.lease_ttl / 3)
            now = runner.clock.wall()
            try:
                ok = await runner.queue.renew(self.broadcast_id, runner.instance_id, now, runner.lease_ttl)
            except Exception:
                log.warning("broadcast %s: lease renewal failed", self.broadcast_id, exc_info=True)
                ok = False
            if ok:
                self.lease_until = now + timedelta(seconds=runner.lease_ttl)
            else:
                # taken over, stopped, or the database is out of reach: stop sending at once
                # (requests in flight finish; the next check takes it back if it is free)
                self.lease_lost = True
                self.stop()
                return

    def _lease_holds(self) -> bool:
        """Our lease, as last renewed, has more than a sixth of its time left (renewals come
        every third): past that, another instance may take over at any moment."""
        margin = timedelta(seconds=self.runner.lease_ttl / 6)
        return not self.lease_lost and self.runner.clock.wall() < self.lease_until - margin

    async def _run_claimed(self) -> None:
        runner = self.runner
        queue = runner.queue
        uncertain = await queue.recover_interrupted(self.broadcast_id)
        if uncertain:
            log.warning(
                "broadcast %s: %d deliveries were in flight when its last runner stopped; not resent",
                self.broadcast_id, uncertain,
            )
        self.info = await queue.info(self.broadcast_id)
        if self.info is None:
            return
        self.started = runner.clock.monotonic()
        self.sent_at_start = (await queue.counts(self.broadcast_id)).sent
        progress = asyncio.create_task(self._progress_loop(), name=f"broadcast-{self.broadcast_id}-progress")
        try:
            for _ in range(MAX_PASSES):
                fed = await self._pass()
                if self.stopping or fed == 0:
                    break
                if await queue.state(self.broadcast_id) != BroadcastState.SENDING.value:
                    break
            if not self.stopping:
                if (await queue.counts(self.broadcast_id)).pending:
                    await queue.give_up_pending(self.broadcast_id, "not sent: Telegram's rate limit did not let it out")
                await queue.finish(self.broadcast_id)
        finally:
            leftovers = [*self.deliveries, progress]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        # a normal end (done, or cancelled by the admin): the last word on the progress message
        if await queue.state(self.broadcast_id) != BroadcastState.SENDING.value:
            await self._show_progress(final=True)

    async def _pass(self) -> int:
        """Send every row pending now, at most ``concurrency`` at a time; returns how many."""
        runner = self.runner
        slots = asyncio.Semaphore(runner.concurrency)
        after = 0
        fed = 0
        tasks: set[asyncio.Task[None]] = set()
        while not self.stopping:
            items = await runner.queue.next_items(self.broadcast_id, after, runner.batch)
            if not items:
                break
            after = items[-1].delivery_id
            for item in items:
                await slots.acquire()
                if self.stopping:
                    slots.release()
                    break
                task = asyncio.create_task(self._deliver(item))
                self.deliveries[task] = None
                tasks.add(task)

                def finished(done: asyncio.Task[None]) -> None:
                    slots.release()
                    tasks.discard(done)
                    self.deliveries.pop(done, None)

                task.add_done_callback(finished)
                fed += 1
        if tasks:
            await asyncio.gather(*list(tasks), return_exceptions=True)
        return fed

    async def _deliver(self, item: Item) -> None:
        try:
            await self._send(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast %s: delivery %s failed; it stays pending", self.broadcast_id, item.delivery_id)

    async def _send(self, item: Item) -> None:
        runner = self.runner
        assert self.info is not None
        t = runner.catalog.get(item.language)
        attempt = _Attempt(runner.queue, item.delivery_id, lambda: self.stopping, self._lease_holds)
        current = asyncio.current_task()
        if current is not None:
            self.deliveries[current] = attempt
        token = _attempt.set(attempt)
        try:
            result = await runner.sender.send_message(
                item.user_id, notice_text(t, self.info.text), priority=Priority.BULK
            )
        finally:
            _attempt.reset(token)
        if attempt.not_claimed:
            return
        queue = runner.queue
        if result.status is SendStatus.SENT:
            await queue.mark_done(item.delivery_id, Outcome.SENT, message_id=result.message_id)
        elif result.status is SendStatus.BLOCKED:
            await queue.mark_done(item.delivery_id, Outcome.BLOCKED, error=result.reason or "blocked")
        elif attempt.uncertain:
            await queue.mark_done(item.delivery_id, Outcome.FAILED, error=f"{UNCERTAIN_PREFIX}: {attempt.uncertain_reason}")
        elif attempt.requests == 0 or isinstance(attempt.refused, TelegramRetryAfter | TelegramNetworkError):
            # it never left (no slot in time, stopping) or flood control refused it: a later pass
            await queue.mark_pending(item.delivery_id, result.reason)
        else:
            await queue.mark_done(item.delivery_id, Outcome.FAILED, error=result.reason)

    # ---- progress ----------------------------------------------------------------------------
    async def _progress_loop(self) -> None:
        while True:
            await self.runner.clock.sleep(self.runner.progress_every)
            try:
                await self._show_progress(final=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("broadcast %s: progress update failed", self.broadcast_id, exc_info=True)

    async def _show_progress(self, *, final: bool) -> None:
        runner = self.runner
        info = await runner.queue.info(self.broadcast_id)
        if self.progress_gone or info is None or info.progress_chat_id is None or info.progress_message_id is None:
            return
        counts = await runner.queue.counts(self.broadcast_id)
        elapsed = max(0.001, runner.clock.monotonic() - self.started)
        rate = max(0, counts.sent - self.sent_at_start) / elapsed
        if final and info.started_at is not None and info.finished_at is not None:
            elapsed = max(0.001, (info.finished_at - info.started_at).total_seconds())
        t = runner.catalog.get(info.admin_language)
        text = progress_text(t, info, counts, rate=rate, elapsed=elapsed, state=info.state)
        if text == self.last_text:
            return
        markup = None if final else stop_markup(t, self.broadcast_id)
        try:
            await runner.sender.bot.edit_message_text(
                text=text,
                chat_id=info.progress_chat_id,
                message_id=info.progress_message_id,
                reply_markup=markup,
            )
            self.last_text = text
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                self.last_text = text
            else:
                self.progress_gone = True
                log.warning("broadcast %s: progress message not editable: %s", self.broadcast_id, exc.message)
        except TelegramAPIError as exc:
            log.warning("broadcast %s: progress edit failed: %s", self.broadcast_id, exc)


class BroadcastRunner:
    """One per bot process (bot.app.build_app); ``dispatcher["broadcasts"]`` for handlers.

    Fleet-safe: any number of instances may run one on the same database; a broadcast is
    sent by the instance holding its lease (see the module docstring)."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: TelegramSender,
        catalog: Catalog,
        concurrency: int = 16,
        batch: int = 500,
        progress_every: float = 2.0,
        close_grace: float = 10.0,
        clock: Clock | None = None,
        instance_id: str | None = None,
        lease_ttl: float = 30.0,
        check_every: float = 10.0,
    ) -> None:
        self.queue = DeliveryQueue(sessionmaker)
        self.sender = sender
        self.catalog = catalog
        self.concurrency = max(1, concurrency)
        self.batch = max(1, batch)
        self.progress_every = progress_every
        self.close_grace = close_grace
        self.clock: Clock = clock or SystemClock()
        self.instance_id = instance_id or uuid.uuid4().hex
        self.lease_ttl = lease_ttl
        self.check_every = check_every
        self._jobs: dict[int, _Job] = {}
        self._watch: asyncio.Task[None] | None = None
        self.checks = 0  # periodic take-over checks done (tests wait for the next one)
        install_claim_guard(sender.bot, _attempt)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The running jobs' tasks and the take-over watch (cancelling them all is what a crash
        looks like to the queue and to the other instances)."""
        tasks = [job.task for job in self._jobs.values() if job.task is not None and not job.task.done()]
        if self._watch is not None and not self._watch.done():
            tasks.append(self._watch)
        return tasks

    def running(self, broadcast_id: int) -> bool:
        job = self._jobs.get(broadcast_id)
        return job is not None and job.task is not None and not job.task.done()

    def start(self, broadcast_id: int) -> None:
        if self.running(broadcast_id):
            return
        job = _Job(self, broadcast_id)
        job.task = asyncio.create_task(self._guarded(job), name=f"broadcast-{broadcast_id}")
        self._jobs[broadcast_id] = job

    async def _guarded(self, job: _Job) -> None:
        try:
            await job.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("broadcast %s stopped by an error; it resumes at the next start", job.broadcast_id)
        finally:
            if self._jobs.get(job.broadcast_id) is job:
                self._jobs.pop(job.broadcast_id, None)

    async def resume(self) -> list[int]:
        """At start-up, then every ``check_every`` seconds (a task started here): every
        broadcast still ``sending`` without a live runner (no lease, or one that ran out)
        continues here where it stopped. Returns the ids this pass started."""
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watch_loop(), name="broadcasts-watch")
        return await self._take_over()

    async def _take_over(self) -> list[int]:
        resumed = []
        for broadcast_id in await self.queue.claimable_ids(self.clock.wall(), self.instance_id):
            if self.running(broadcast_id):
                continue
            self.start(broadcast_id)  # the job claims the lease; of two instances, one wins
            resumed.append(broadcast_id)
        if resumed:
            log.info("resuming broadcasts %s", resumed)
        return resumed

    async def _watch_loop(self) -> None:
        while True:
            await self.clock.sleep(self.check_every)
            try:
                await self._take_over()
            except Exception:
                log.warning("looking for broadcasts to resume failed", exc_info=True)
            self.checks += 1

    async def stop(self, broadcast_id: int, *, wait: bool = True) -> None:
        """The admin cancelled it (the service set the state): stop taking rows; the job
        writes its final progress when the requests in flight are answered."""
        job = self._jobs.get(broadcast_id)
        if job is None or job.task is None:
            return
        job.stop()
        if wait:
            await asyncio.wait({job.task}, timeout=self.close_grace)

    async def close(self) -> None:
        """A normal stop: in-flight requests finish, the rest stays pending for the next start."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
            self._watch = None
        jobs = list(self._jobs.values())
        for job in jobs:
            job.stop()
        tasks = [job.task for job in jobs if job.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.close_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.clear()

