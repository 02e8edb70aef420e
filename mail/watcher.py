"""Mailbox watcher: one supervised IDLE connection per account.

`WatcherPool` runs one asyncio task per watched account. Each task loops over sessions:

1. read `WatchStore.target()` (fresh: credentials may have changed), log in, SELECT INBOX;
2. state CONNECTED (and `recovered()` if an outage had been announced);
3. UIDVALIDITY differs from the stored one (or nothing is stored yet): rebaseline, i.e. fetch
   the newest `rebaseline_limit` letters and `record(rebaseline=True)`, no alerts.
   Otherwise catch up: `fetch_new` UID > highest_uid in rounds of `fetch_limit`, `record()`
   each round, alert what `record()` returned;
4. IDLE on INBOX; when the server announces new mail (``* n EXISTS``) leave IDLE (DONE),
   catch up as in 3, re-enter IDLE. IDLE is re-issued every `idle_refresh` seconds.
5. When, during IDLE, the server announces that letters changed (``* n FETCH (FLAGS ...)``,
   ``* n EXPUNGE``, ``* VANISHED``: another client read, flagged, deleted or moved one) and a
   `letter_sync` is set: leave IDLE, ask it which UIDs it shows to the user, ``UID FETCH
   <those> (UID FLAGS)`` in one command and hand it the answer (a UID missing: gone); what
   changed goes to the notifier's `letters_changed` (the alerts' buttons follow). The same
   look is taken once after every (re)connect and catch-up, for what changed meanwhile. A
   flag change announced while no IDLE runs (during a catch-up) waits for the next look; an
   EXPUNGE is noticed whenever it comes (the watcher never expunges, so it is always news).

Only what `record()` returns is alerted, so the store's dedup (UIDVALIDITY + UID) is what
makes "never twice" hold across reconnects and restarts; "never lost" holds because progress
(`highest_uid`) only moves forward together with the stored letters.

Dead connections are found fast: every IDLE start, DONE and FETCH/SEARCH has
`command_timeout`, every wait also ends when the socket closes (`client.closed`) or the
server says BYE. A connection that went silent (NAT dropped the flow, a frozen peer) is found
at the next IDLE refresh: DONE gets no answer within `command_timeout`. So silence is
detected within idle_refresh + command_timeout. The old socket is always closed before a new
one is opened.

New-mail announcements are read by a small protocol (`_Tap`) between the transport and the
connection's protocol, not from aioimaplib's IDLE queue: aioimaplib drops an untagged EXISTS
that arrives while a FETCH or SEARCH runs (it belongs to no pending command), which would
lose a letter delivered during a catch-up until the next one. The tap also timestamps the
last server push (`last_push_at`, used by the benchmark) and runs IDLE / DONE itself (see
`_Tap`); every other command goes through aioimaplib.

Failures:

* transient (network, refused, timeouts, BYE, server restart, TLS hiccups, store errors):
  state RECONNECTING, retry after an exponential backoff with jitter (backoff_min ..
  backoff_max), reset after a healthy session (connected for `healthy_after` seconds). If
  the failures last longer than `outage_after`: `outage()` once, then `recovered()` once when
  connected again.
* authentication (AUTH_FAILED, IMAP_DISABLED, APP_PASSWORD_REQUIRED): one confirming retry
  (`auth_retries`, as Delta Chat does: a single refusal can be a provider hiccup), then state
  BROKEN, `broken()` once, the task ends. `restart()` starts over. A refusal that says it is
  temporary (RFC 5530 ``[UNAVAILABLE]``, ``[SERVERBUG]``, ``[INUSE]``, ``[LIMIT]``,
  "temporary") is transient.

All (re)connects of a pool are paced (`connect_rate` per second) so that a mass
disconnect (our network, a provider restart) doesn't turn into thousands of TLS handshakes in
the same second; `start_many` staggers the start-up on top of that.

Memory per watched account (bench/memory.py, README): a `_Slot`, one task of ours and the
tap; an IDLE wait is one bare future (`_Slot.waiter`, woken by the tap) rather than an
asyncio.Event and a task, and IDLE itself is sent and ended by the tap rather than by
aioimaplib's idle_start (a task, a command with an Event, a timer): about 5.5 KiB less per
account. Then aioimaplib's protocol (about 5 KiB with its asyncio objects), the socket and
its asyncio transport (2.6 KiB) and, with TLS, the SSL object (mostly OpenSSL's memory). TLS
is `mail.tls.TLSProtocol`, not asyncio's TLS transport, whose fixed 256 KiB read buffer per
connection was 80 % of it before. tests/test_watch_memory.py pins the totals. No letters are
kept: each catch-up round is handed to the store and dropped.

No aiogram and no SQLAlchemy here: persistence and alerts come in through WatchStore and
WatchNotifier, implemented by the service layer. Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from mail.actions import Flags, flags_of
from mail.imap import LOGOUT_TIMEOUT, close_imap, open_imap, select_inbox
from mail.importer import fetch_latest, fetch_new, parse_select
from mail.netguard import HostGuard, as_mail_error
from mail.types import (
    Credentials,
    FailureKind,
    LetterSummary,
    MailCheckError,
    ServerSettings,
)
from mail.types import Protocol as MailProtocol

log = logging.getLogger(__name__)

IMAP = MailProtocol.IMAP
AUTH_KINDS = frozenset(
    {FailureKind.AUTH_FAILED, FailureKind.IMAP_DISABLED, FailureKind.APP_PASSWORD_REQUIRED}
)
# RFC 5530 response codes (and Dovecot's "Temporary authentication failure") that say a
# refused login is temporary. Deliberately narrow: retrying a wrong password forever can get
# the account locked by the provider.
_TEMPORARY = re.compile(r"\[(?:UNAVAILABLE|SERVERBUG|INUSE|LIMIT)\]|temporary", re.IGNORECASE)
_NEW_MAIL = re.compile(rb"\* \d+ (?:EXISTS|RECENT)\b")
_CHANGED = re.compile(rb"\* (?:\d+ (?:FETCH|EXPUNGE)\b|VANISHED\b)", re.IGNORECASE)
_TAIL = 32
STOP_TIMEOUT = 5.0
ERROR_MAX = 500


class ConnState(str, enum.Enum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    BROKEN = "broken"


@dataclass(frozen=True)
class WatchTarget:
    mailbox_id: int
    imap: ServerSettings
    creds: Credentials
    uidvalidity: int | None
    highest_uid: int | None


class WatchStore(Protocol):
    async def target(self, mailbox_id: int) -> WatchTarget | None:
        """Read fresh before every (re)connect; None: the account is gone (stop quietly)."""
        ...

    async def record(
        self,
        mailbox_id: int,
        uidvalidity: int,
        highest_uid: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]:
        """Persist letters + progress atomically; return the letters not stored before
        (dedup by uidvalidity + uid). rebaseline=True: replace the letters, alert nothing."""
        ...

    async def set_state(self, mailbox_id: int, state: ConnState, error: str | None) -> None: ...


class WatchNotifier(Protocol):
    async def new_letters(self, mailbox_id: int, letters: list[LetterSummary]) -> None: ...

    async def broken(self, mailbox_id: int, error: MailCheckError) -> None: ...

    async def outage(self, mailbox_id: int, since: datetime) -> None: ...

    async def recovered(self, mailbox_id: int) -> None: ...


class LetterSync(Protocol):
    """Optional (WatcherPool.letter_sync): the letters whose state the user sees, and what
    the server says of them now. The notifier may have `letters_changed(mailbox_id, ids)`."""

    async def tracked(self, mailbox_id: int, uidvalidity: int) -> list[int]:
        """INBOX UIDs worth looking at (a bounded, recent few)."""
        ...

    async def observed(self, mailbox_id: int, uidvalidity: int, flags: dict[int, Flags | None]) -> list[int]:
        """Record the server's flags (None: gone); the ids of the letters whose state changed."""
        ...


@dataclass
class WatchConfig:
    idle_refresh: float = 290.0  # re-issue IDLE at least every 5 minutes
    command_timeout: float = 15.0  # every IDLE start / DONE / SEARCH / FETCH
    connect_timeout: float = 15.0  # connect + TLS + greeting + login
    backoff_min: float = 2.0
    backoff_max: float = 80.0
    jitter: float = 0.25  # each delay is multiplied by 1 +- jitter
    outage_after: float = 1800.0
    fetch_limit: int = 500  # max letters fetched per catch-up round
    rebaseline_limit: int = 50
    # additions (defaults keep the behaviour described above)
    auth_retries: int = 1  # confirming retries before an authentication failure is final
    healthy_after: float = 60.0  # a session connected this long resets the backoff
    connect_rate: float = 100.0  # pool-wide (re)connect attempts per second; 0 = unpaced
    poll_interval: float = 60.0  # servers without IDLE: look for new mail this often


Opener = Callable[[WatchTarget], Awaitable[Any]]


class _Slot:
    """Per-account state. Kept small on purpose: one per watched account."""

    __slots__ = (
        "mailbox_id",
        "task",
        "state",
        "error",
        "client",
        "hint",
        "waiter",
        "last_push_at",
        "connected_at",
        "outage_since",
        "outage_wall",
        "outage_sent",
        "idle",
        "stopped",
        "changed",
    )

    def __init__(self, mailbox_id: int) -> None:
        self.mailbox_id = mailbox_id
        # set before the task is cancelled: a cancellation can be lost (Python 3.11's wait_for
        # returns an inner result that completed at the same moment), and a task that lost it
        # must not go on to open (or keep) a session nobody watches: it checks this flag
        self.stopped = False
        self.task: asyncio.Task[None] | None = None
        self.state: ConnState | None = None
        self.error: str | None = None
        self.client: Any = None
        self.hint = False  # the server announced new mail
        # while waiting for news: woken by an announcement, a BYE or the connection's end
        # (a bare future rather than an asyncio.Event and a task per wait: see the module doc)
        self.waiter: asyncio.Future[None] | None = None
        self.last_push_at: float | None = None  # time.monotonic() of the last announcement
        self.connected_at: float | None = None
        self.outage_since: float | None = None
        self.outage_wall: datetime | None = None
        self.outage_sent = False
        self.idle: bool | None = None  # the server offers IDLE (None: not connected yet)
        self.changed = False  # during IDLE the server said letters changed (flags, expunge)


class _Tap(asyncio.Protocol):
    """Between the transport and the connection's own protocol: passes everything through,
    notes every ``* n EXISTS`` / ``* n RECENT`` the server sends, whatever command runs.

    It also runs the IDLE command itself (`idle()`, `done()`): while IDLE is on, the server's
    lines stay here (a BYE is still passed on) instead of going to aioimaplib, whose own
    IDLE costs a task, a command object with an asyncio.Event and a timer per connection
    (about 3 KiB while idling). aioimaplib has no command pending meanwhile, and its tag
    counter gives the tag."""

    __slots__ = ("inner", "slot", "tail", "transport", "idle_tag", "idle_state", "buf", "reply")

    def __init__(self, inner: asyncio.BaseProtocol, slot: _Slot, transport: Any) -> None:
        self.inner: Any = inner
        self.slot = slot
        self.tail = b""
        self.transport = transport
        self.idle_tag = b""
        self.idle_state = _NOT_IDLE
        self.buf = b""  # an incomplete line, while IDLE is on
        self.reply: asyncio.Future[bytes] | None = None  # "+" or the tagged reply, awaited

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        chunk = self.tail + data
        if (b" EXISTS" in chunk or b" RECENT" in chunk) and _NEW_MAIL.search(chunk):
            self.slot.last_push_at = time.monotonic()
            self.slot.hint = True
            self.tail = b""
            _wake(self.slot)
        else:
            self.tail = chunk[-_TAIL:]
        if b"EXPUNGE" in chunk or b"VANISHED" in chunk:
            self.slot.changed = True  # _wake follows when IDLE is on (_idle_lines)
        if self.idle_state == _NOT_IDLE:
            self.inner.data_received(data)
        else:
            self._idle_lines(data)
        if b"BYE" in chunk:  # the connection's protocol noted it (wire.bye_seen)
            _wake(self.slot)

    # ------------------------------------------------------------------ IDLE
    async def idle(self, tag: str) -> None:
        """Send IDLE and wait for the server's "+"; MailCheckError if it refuses."""
        self.idle_tag = tag.encode("ascii") + b" "
        self.idle_state = _IDLE_STARTING
        self.buf = b""
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.write(self.idle_tag + b"IDLE\r\n")
        line = await self.reply
        if line.startswith(self.idle_tag):
            raise MailCheckError(
                IMAP, FailureKind.PROTOCOL, f"IDLE refused: {_line_text(line)}", server_said=True
            )

    async def done(self) -> None:
        """Send DONE (unless sent already) and wait for IDLE's tagged reply."""
        if self.idle_state == _NOT_IDLE:
            return
        if self.idle_state == _IDLING:
            self.idle_state = _IDLE_ENDING
            self.reply = asyncio.get_running_loop().create_future()
            self.transport.write(b"DONE\r\n")
        assert self.reply is not None
        line = await self.reply
        if not line[len(self.idle_tag) :].upper().startswith(b"OK"):
            raise MailCheckError(IMAP, FailureKind.PROTOCOL, f"DONE: {_line_text(line)}")

    def _idle_lines(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\n")
            if end < 0:
                self.buf = buf[-_MAX_IDLE_LINE:]
                return
            line, buf = buf[: end + 1], buf[end + 1 :]
            if line.startswith(self.idle_tag):  # IDLE's tagged reply: IDLE is over
                self.idle_state = _NOT_IDLE
                self.buf = b""
                self._answer(line.rstrip(b"\r\n"))
                if buf:
                    self.inner.data_received(buf)
                return
            if line.startswith(b"+") and self.idle_state == _IDLE_STARTING:
                self.idle_state = _IDLING
                self._answer(line)
            elif line[:5].upper() == b"* BYE":
                self.inner.data_received(line)  # the connection's protocol notes the BYE
            elif _CHANGED.match(line):  # flags changed, a letter expunged: see letter_sync
                self.slot.changed = True
                _wake(self.slot)

    def _answer(self, line: bytes) -> None:
        reply = self.reply
        if reply is not None and not reply.done():
            reply.set_result(line)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        _wake(self.slot)


_NOT_IDLE, _IDLE_STARTING, _IDLING, _IDLE_ENDING = range(4)
_MAX_IDLE_LINE = 16 * 1024


def _line_text(line: bytes) -> str:
    return line.decode("utf-8", "replace").strip()[:500]


def _wake(slot: _Slot) -> None:
    waiter = slot.waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def _tap_of(client: Any) -> Any:
    """The connection's `_Tap` (None before the session installed it)."""
    transport = getattr(client.protocol, "transport", None)
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _Tap) else None


class _StoreFailure(Exception):
    """The store or the notifier failed (not the mail server): transient, retried."""


def _error_text(exc: MailCheckError) -> str:
    return f"{exc.kind.value}: {exc.detail}".strip().rstrip(":")[:ERROR_MAX]


def is_auth_failure(exc: MailCheckError) -> bool:
    """An authentication failure the user must fix (not a temporary refusal)."""
    return exc.kind in AUTH_KINDS and not _TEMPORARY.search(exc.detail or "")


class _Superseded(Exception):
    """This task's session is not wanted any more (see _superseded)."""


def _superseded(slot: _Slot) -> bool:
    """The running task was told to stop, or another task has taken the slot over (a restart
    while this one was still finishing): it must end without a session of its own."""
    return slot.stopped or slot.task is not asyncio.current_task()


class WatcherPool:
    """One supervised IDLE task per account. See the module doc for the behaviour."""

    def __init__(
        self,
        store: WatchStore,
        notifier: WatchNotifier,
        *,
        ssl_context: ssl.SSLContext,
        guard: HostGuard,
        config: WatchConfig | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.ssl_context = ssl_context
        self.guard = guard
        self.config = config or WatchConfig()
        # how a logged-in client is made (default: open_imap); the benchmark swaps it
        self._opener: Opener = opener or self._open_imap
        self.letter_sync: LetterSync | None = None  # set by the app: see step 5 of the module doc
        self._slots: dict[int, _Slot] = {}
        self._next_connect = 0.0

    # ------------------------------------------------------------------ public API
    async def start(self, mailbox_id: int) -> None:
        """Start watching (no-op if already running)."""
        self._start(mailbox_id, 0.0)

    async def start_many(self, mailbox_ids: Iterable[int], *, per_second: float = 50.0) -> None:
        """Start many accounts, their first connects spread at `per_second`. Returns at once:
        each task waits for its turn (and the pool's connect pacing) before connecting."""
        interval = 1.0 / per_second if per_second > 0 else 0.0
        for i, mailbox_id in enumerate(mailbox_ids):
            self._start(mailbox_id, i * interval)

    async def stop(self, mailbox_id: int) -> None:
        """Stop watching: cancel the task, log out (bounded), close the socket, wait."""
        slot = self._slots.pop(mailbox_id, None)
        if slot is not None:
            await self._cancel(slot)

    async def restart(self, mailbox_id: int) -> None:
        """Start over (e.g. new credentials were saved, or the user fixed a BROKEN account).
        An announced outage stays announced, so `recovered()` follows the next connect."""
        slot = self._slots.get(mailbox_id)
        if slot is not None:
            await self._cancel(slot)
        if self._slots.get(mailbox_id) is slot:
            self._start(mailbox_id, 0.0)

    async def close(self) -> None:
        """Stop all."""
        slots = list(self._slots.values())
        self._slots.clear()
        await asyncio.gather(*(self._cancel(s) for s in slots))

    def states(self) -> dict[int, ConnState]:
        """Known states (an account that has not finished its first attempt has none)."""
        return {i: s.state for i, s in self._slots.items() if s.state is not None}

    def running(self, mailbox_id: int) -> bool:
        slot = self._slots.get(mailbox_id)
        return slot is not None and slot.task is not None and not slot.task.done()

    def uses_idle(self, mailbox_id: int) -> bool | None:
        """True: the server pushes new mail (IDLE); False: it is polled every poll_interval;
        None: not connected yet."""
        slot = self._slots.get(mailbox_id)
        return None if slot is None else slot.idle

    def last_push_at(self, mailbox_id: int) -> float | None:
        """time.monotonic() when the server last announced new mail on this account."""
        slot = self._slots.get(mailbox_id)
        return None if slot is None else slot.last_push_at

    # ------------------------------------------------------------------ tasks
    def _start(self, mailbox_id: int, delay: float) -> None:
        slot = self._slots.get(mailbox_id)
        if slot is None:
            slot = self._slots[mailbox_id] = _Slot(mailbox_id)
        elif slot.task is not None and not slot.task.done():
            return
        slot.stopped = False
        slot.task = asyncio.create_task(self._run(slot, delay), name=f"watch-{mailbox_id}")
        slot.task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("watcher task %s died", task.get_name(), exc_info=task.exception())

    async def _cancel(self, slot: _Slot) -> None:
        slot.stopped = True
        task = slot.task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait({task}, timeout=STOP_TIMEOUT)
        if not task.done():  # logout hung: drop the socket and let the task end
            self._abort(slot)
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=1.0)

    async def _run(self, slot: _Slot, delay: float) -> None:
        cfg = self.config
        failures = 0
        auth_failures = 0
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            while True:
                if _superseded(slot):
                    return
                slot.connected_at = None
                error: MailCheckError | None = None
                try:
                    target = await self.store.target(slot.mailbox_id)
                except MailCheckError as exc:  # e.g. an OAuth2 grant revoked: nothing to log in with
                    target = None
                    error = exc
                except Exception as exc:  # noqa: BLE001 - the database may be down: retry
                    log.warning("mailbox %s: store.target failed: %r", slot.mailbox_id, exc)
                    target = None
                    error = MailCheckError(IMAP, FailureKind.PROTOCOL, "internal: store failed")
                else:
                    if target is None:
                        log.info("mailbox %s: account gone, watcher ends", slot.mailbox_id)
                        if self._slots.get(slot.mailbox_id) is slot:
                            del self._slots[slot.mailbox_id]
                        return
                if target is not None:
                    try:
                        await self._session(slot, target)
                    except MailCheckError as exc:
                        error = exc
                    except _Superseded:
                        return
                    except _StoreFailure as exc:
                        log.warning("mailbox %s: %s", slot.mailbox_id, exc.__cause__ or exc)
                        error = MailCheckError(IMAP, FailureKind.PROTOCOL, "internal: store failed")
                    except Exception as exc:  # noqa: BLE001 - aioimaplib Abort, OSError, ...
                        error = as_mail_error(IMAP, exc)
                        if error.kind is FailureKind.PROTOCOL:
                            log.info("mailbox %s: session ended: %r", slot.mailbox_id, exc)
                    # the connection failed: close it now, before any new one is opened
                    # (a cancellation skips this: it logs out politely below)
                    self._abort(slot)
                assert error is not None  # a session only ends with an error
                now = time.monotonic()
                if slot.connected_at is not None:
                    auth_failures = 0
                    if now - slot.connected_at >= cfg.healthy_after:
                        failures = 0
                if is_auth_failure(error):
                    auth_failures += 1
                    if auth_failures > cfg.auth_retries:
                        await self._broken(slot, error)
                        return
                failures += 1
                if slot.outage_since is None:
                    slot.outage_since = now
                    slot.outage_wall = datetime.now(UTC)
                await self._set_state(slot, ConnState.RECONNECTING, _error_text(error))
                wait = self._backoff(failures)
                log.debug(
                    "mailbox %s: %s; retry in %.1f s", slot.mailbox_id, _error_text(error), wait
                )
                await self._pause(slot, wait)
        except asyncio.CancelledError:
            await self._close_politely(slot)
            raise
        except BaseException:
            self._abort(slot)
            raise

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        base = min(cfg.backoff_max, cfg.backoff_min * 2 ** max(0, failures - 1))
        return max(0.0, base * random.uniform(1 - cfg.jitter, 1 + cfg.jitter))

    async def _pause(self, slot: _Slot, delay: float) -> None:
        """Sleep `delay`, announcing the outage when it becomes due meanwhile."""
        cfg = self.config
        wake = time.monotonic() + delay
        while True:
            now = time.monotonic()
            until = wake
            if not slot.outage_sent and slot.outage_since is not None:
                due = slot.outage_since + cfg.outage_after
                if now >= due:
                    slot.outage_sent = True
                    since = slot.outage_wall or datetime.now(UTC)
                    log.info("mailbox %s: outage since %s", slot.mailbox_id, since.isoformat())
                    await self._notify("outage", self.notifier.outage(slot.mailbox_id, since))
                    continue
                until = min(until, due)
            if now >= wake:
                return
            await asyncio.sleep(until - now)

    async def _pace(self) -> None:
        """Pool-wide pacing of connection attempts (connect_rate per second)."""
        rate = self.config.connect_rate
        if rate <= 0:
            return
        now = time.monotonic()
        turn = max(now, self._next_connect)
        self._next_connect = turn + 1.0 / rate
        if turn > now:
            await asyncio.sleep(turn - now)

    # ------------------------------------------------------------------ one session
    async def _open_imap(self, target: WatchTarget) -> Any:
        return await open_imap(
            target.imap,
            target.creds,
            ssl_context=self.ssl_context,
            guard=self.guard,
            timeout=self.config.connect_timeout,
        )

    async def _session(self, slot: _Slot, target: WatchTarget) -> None:
        """Connect, sync, IDLE. Returns only by raising (the connection ended)."""
        cfg = self.config
        await self._pace()
        client = await self._opener(target)
        if _superseded(slot):  # stopped while connecting, and the cancellation did not get through
            transport = getattr(client.protocol, "transport", None)
            if transport is not None:
                transport.abort()
            raise _Superseded
        slot.client = client
        drop_idle_queue = getattr(client, "drop_idle_queue", None)
        if drop_idle_queue is not None:
            drop_idle_queue()  # pushes are read by the tap below
        transport = client.protocol.transport
        transport.set_protocol(_Tap(transport.get_protocol(), slot, transport))
        response = await self._guarded(
            client, select_inbox(client, cfg.command_timeout), "SELECT"
        )
        info = parse_select(response.lines)
        uidvalidity = info["uidvalidity"] or 0
        uidnext = info["uidnext"]
        exists = info["exists"] or 0
        del response, info  # not kept for the life of the session
        slot.hint = False  # SELECT's own EXISTS

        slot.connected_at = time.monotonic()
        await self._set_state(slot, ConnState.CONNECTED, None)
        slot.outage_since = slot.outage_wall = None
        if slot.outage_sent:
            slot.outage_sent = False
            log.info("mailbox %s: recovered", slot.mailbox_id)
            await self._notify("recovered", self.notifier.recovered(slot.mailbox_id))

        if target.uidvalidity != uidvalidity or target.highest_uid is None:
            letters = await fetch_latest(
                client, exists, cfg.rebaseline_limit, timeout=cfg.command_timeout
            )
            highest = max([(uidnext or 1) - 1, *(x.uid for x in letters)])
            log.log(
                logging.DEBUG if target.uidvalidity is None else logging.INFO,
                "mailbox %s: UIDVALIDITY %s -> %s, rebaseline with %d letters",
                slot.mailbox_id,
                target.uidvalidity,
                uidvalidity,
                len(letters),
            )
            await self._record(slot, uidvalidity, highest, letters, rebaseline=True)
        else:
            highest = target.highest_uid
            if uidnext is None or uidnext - 1 > highest:
                highest = await self._catch_up(slot, client, uidvalidity, highest)

        idle = slot.idle = "IDLE" in client.protocol.capabilities
        # what changed while this mailbox was not watched (or during the catch-up): look once
        slot.changed = self.letter_sync is not None
        while True:
            if slot.hint:
                highest = await self._catch_up(slot, client, uidvalidity, highest)
                continue
            if slot.changed:
                await self._sync_letters(slot, client, uidvalidity, highest)
                continue
            if idle:
                await self._idle_once(slot, client)
            else:
                await self._wait_news(slot, client, cfg.poll_interval)
                highest = await self._catch_up(slot, client, uidvalidity, highest)

    async def _idle_once(self, slot: _Slot, client: Any) -> None:
        """IDLE until new mail is announced or idle_refresh passed; DONE. Raises if the
        connection ends or doesn't answer within command_timeout."""
        cfg = self.config
        tap = _tap_of(client)
        await self._guarded(client, tap.idle(client.protocol.new_tag()), "IDLE")
        await self._wait_news(slot, client, cfg.idle_refresh)
        await self._guarded(client, tap.done(), "DONE")

    async def _wait_news(self, slot: _Slot, client: Any, timeout: float) -> None:  # noqa: ASYNC109
        """Until new mail is announced or `timeout`; raise if the server left."""
        wire = client.wire
        if not (slot.hint or slot.changed or wire.lost.done() or wire.bye_seen.done()):
            loop = asyncio.get_running_loop()
            waiter = slot.waiter = loop.create_future()
            timer = loop.call_later(timeout, _wake, slot)
            try:
                await waiter
            finally:
                timer.cancel()
                slot.waiter = None
        if wire.lost.done() or wire.bye_seen.done():
            raise MailCheckError(IMAP, FailureKind.PROTOCOL, wire.bye or "connection lost")

    async def _catch_up(self, slot: _Slot, client: Any, uidvalidity: int, highest: int) -> int:
        """fetch_new rounds until nothing more is waiting and no new mail was announced
        while they ran; record and alert each round. Returns the new highest UID."""
        cfg = self.config
        while True:
            slot.hint = False  # an announcement from here on means: look again
            batch = await fetch_new(client, highest, cfg.fetch_limit, timeout=cfg.command_timeout)
            if batch.letters or batch.highest_uid > highest:
                new = await self._record(
                    slot, uidvalidity, batch.highest_uid, batch.letters, rebaseline=False
                )
                highest = max(highest, batch.highest_uid)
                if new:
                    await self._notify(
                        "new_letters", self.notifier.new_letters(slot.mailbox_id, new)
                    )
            if not batch.more and not slot.hint:
                return highest

    async def _sync_letters(self, slot: _Slot, client: Any, uidvalidity: int, highest: int) -> None:
        """Flags and presence of the letters `letter_sync` tracks, in one UID FETCH. Only
        UIDs up to `highest` (the catch-up's progress): a higher one (a letter just moved back
        into INBOX) may not be known to this session yet, and its absence from the answer
        would not mean it is gone."""
        slot.changed = False
        sync = self.letter_sync
        if sync is None:
            return
        try:
            uids = [uid for uid in await sync.tracked(slot.mailbox_id, uidvalidity) if uid <= highest]
        except Exception as exc:
            raise _StoreFailure("letter_sync.tracked failed") from exc
        if not uids:
            return
        found = await flags_of(client, uids, timeout=self.config.command_timeout)
        try:
            changed = await sync.observed(slot.mailbox_id, uidvalidity, {u: found.get(u) for u in uids})
        except Exception as exc:
            raise _StoreFailure("letter_sync.observed failed") from exc
        tell = getattr(self.notifier, "letters_changed", None)
        if changed and tell is not None:
            await self._notify("letters_changed", tell(slot.mailbox_id, changed))

    async def _guarded(self, client: Any, aw: Awaitable[Any], what: str) -> Any:
        """`aw` within command_timeout; fail fast if the connection drops."""
        timeout = self.config.command_timeout
        task = asyncio.ensure_future(aw)
        lost = client.wire.lost
        try:
            async with asyncio.timeout(timeout):
                done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            task.cancel()
            raise MailCheckError(
                IMAP, FailureKind.TIMEOUT, f"no answer to {what} within {timeout:g} s"
            ) from None
        except BaseException:
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        raise MailCheckError(IMAP, FailureKind.PROTOCOL, client.wire.bye or "connection lost")

    # ------------------------------------------------------------------ store / notifier
    async def _record(
        self,
        slot: _Slot,
        uidvalidity: int,
        highest: int,
        letters: list[LetterSummary],
        *,
        rebaseline: bool,
    ) -> list[LetterSummary]:
        try:
            return await self.store.record(
                slot.mailbox_id, uidvalidity, highest, letters, rebaseline=rebaseline
            )
        except Exception as exc:
            raise _StoreFailure("store.record failed") from exc

    async def _set_state(self, slot: _Slot, state: ConnState, error: str | None) -> None:
        if slot.state is state and slot.error == error:
            return
        if slot.state is not state:
            # the first CONNECTED of thousands at start-up is not news; transitions are
            log.log(
                logging.DEBUG if slot.state is None and error is None else logging.INFO,
                "mailbox %s: %s%s",
                slot.mailbox_id,
                state.value,
                f" ({error})" if error else "",
            )
        slot.state, slot.error = state, error
        try:
            await self.store.set_state(slot.mailbox_id, state, error)
        except Exception as exc:  # noqa: BLE001 - the in-memory state is still right
            log.warning("mailbox %s: store.set_state failed: %r", slot.mailbox_id, exc)

    async def _notify(self, what: str, aw: Awaitable[None]) -> None:
        try:
            await aw
        except Exception:  # noqa: BLE001 - an alert failing must not stop the watching
            log.exception("notifier.%s failed", what)

    async def _broken(self, slot: _Slot, error: MailCheckError) -> None:
        await self._set_state(slot, ConnState.BROKEN, _error_text(error))
        await self._notify("broken", self.notifier.broken(slot.mailbox_id, error))

    # ------------------------------------------------------------------ sockets
    @staticmethod
    def _abort(slot: _Slot, *, graceful: bool = False) -> None:
        """Close the socket at once (no LOGOUT) and end the client's background tasks.
        graceful: a close already under way (TLS close_notify after LOGOUT) may finish."""
        client, slot.client = slot.client, None
        if client is None:
            return
        transport = getattr(client.protocol, "transport", None)
        if transport is not None and not (graceful and transport.is_closing()):
            if client.has_pending_idle():
                # ends aioimaplib's IDLE timer, which would keep the dead client (and its
                # TLS state) alive for idle_refresh; the DONE itself goes nowhere
                with contextlib.suppress(Exception):
                    client.idle_done()
            transport.abort()
        # commands that will never be answered now (an IDLE, a FETCH): end their tasks here
        # rather than leave them pending until garbage collection complains
        for task in list(getattr(client, "tasks", ())):
            if not task.done():
                task.cancel()
            elif not task.cancelled():
                task.exception()  # consumed: aioimaplib's greeting task may hold an error

    async def _close_politely(self, slot: _Slot) -> None:
        """On stop: DONE if idling, LOGOUT (bounded by close_imap), close the socket."""
        client = slot.client
        if client is None:
            return
        try:
            tap = _tap_of(client)
            if tap is not None and tap.idle_state != _NOT_IDLE and not client.wire.lost.done():
                await asyncio.wait_for(tap.done(), LOGOUT_TIMEOUT)
            await close_imap(client)
        except Exception:  # noqa: BLE001, S110 - best effort; the socket is closed below
            pass
        finally:
            self._abort(slot, graceful=True)
