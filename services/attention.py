"""What a new letter's alert becomes: loud, silent, muted, held for the quiet-hours digest, or
part of one grouped alert. A pure, fast core (rules index, time-zone and window math, the
decision for a batch) and the database access the notifier and the digest runner need.

The core takes the time as an argument (the callers read it from an injected clock), so tests
drive it without waiting. Nothing here talks to Telegram: bot/attention.py sends.

Defaults (a user who set nothing): no rule, no quiet hours, and a batch of DEFAULT_BURST or
more letters waiting for an alert at once (a mailing list, a sync after an outage) becomes ONE
grouped alert; fewer come one by one, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.watching import MAX_ALERT_ATTEMPTS
from storage.models import AlertRule, AlertState, AttentionPrefs, Letter, Mailbox, User

DEFAULT_BURST = 6  # letters waiting at once that make one grouped alert (0 = never group)
BURST_CHOICES = (0, 3, 6, 10, 20)
MUTED_NOTE = "muted by a rule"


class Clock(Protocol):
    """The part of bot.telegram_limits.Clock the attention code uses (tests pass a virtual one)."""

    def wall(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


# --------------------------------------------------------------------------- rules
class RuleKind(StrEnum):
    SENDER = "sender"
    DOMAIN = "domain"
    SUBJECT = "subject"


class RuleAction(StrEnum):
    MUTE = "mute"
    VIP = "vip"


_WORD = re.compile(r"\w+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def normalize_subject(text: str) -> str:
    return _SPACES.sub(" ", (text or "").casefold()).strip()


def address_domain(address: str) -> str:
    address = (address or "").strip().lower()
    return address.rpartition("@")[2] if "@" in address else ""


class RuleIndex:
    """Rules of one user, indexed for matching a letter in constant time per rule kind (sets for
    senders, domains and single words; only multi-word subject phrases are scanned). A VIP rule
    wins over a mute rule, whichever kinds they are."""

    __slots__ = ("senders", "domains", "words", "phrases", "size")

    def __init__(self, rules: Iterable[tuple[str, str, str]] = ()) -> None:
        self.senders: dict[str, str] = {}
        self.domains: dict[str, str] = {}
        self.words: dict[str, str] = {}
        self.phrases: list[tuple[str, str]] = []
        self.size = 0
        for kind, value, action in rules:
            self.add(kind, value, action)

    def add(self, kind: str, value: str, action: str) -> None:
        self.size += 1
        value = value.casefold()
        if kind == RuleKind.SENDER:
            self._put(self.senders, value, action)
        elif kind == RuleKind.DOMAIN:
            self._put(self.domains, value, action)
        elif kind == RuleKind.SUBJECT:
            value = normalize_subject(value)
            if _WORD.fullmatch(value):
                self._put(self.words, value, action)
            else:
                self.phrases.append((value, action))

    @staticmethod
    def _put(table: dict[str, str], key: str, action: str) -> None:
        if table.get(key) != RuleAction.VIP:
            table[key] = action

    def match(self, from_addr: str, subject: str) -> str | None:
        """"vip", "mute" or None for a letter from ``from_addr`` about ``subject``."""
        if not self.size:
            return None
        found: set[str] = set()
        address = (from_addr or "").strip().lower()
        if address in self.senders:
            found.add(self.senders[address])
        if self.domains:
            domain = address_domain(address)
            while domain:  # the domain and its parents: a rule for example.com covers mail.example.com
                action = self.domains.get(domain)
                if action is not None:
                    found.add(action)
                domain = domain.partition(".")[2] if "." in domain else ""
        if self.words or self.phrases:
            text = normalize_subject(subject)
            if self.words:
                for word in _WORD.findall(text):
                    action = self.words.get(word)
                    if action is not None:
                        found.add(action)
                        if action == RuleAction.VIP:
                            break
            for phrase, action in self.phrases:
                if phrase in text:
                    found.add(action)
        if RuleAction.VIP in found:
            return RuleAction.VIP
        return RuleAction.MUTE if found else None


# --------------------------------------------------------------------------- time zones, windows
class BadZone(ValueError):
    pass


class BadWindow(ValueError):
    pass


_OFFSET = re.compile(r"^(?:utc|gmt)?\s*([+-−])\s*(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
_ZONES_LOWER: dict[str, str] = {}


def _zones() -> dict[str, str]:
    if not _ZONES_LOWER:
        _ZONES_LOWER.update({name.lower(): name for name in available_timezones()})
    return _ZONES_LOWER


def parse_zone(text: str) -> str:
    """The stored name of a time zone typed by the user: an IANA name in any case
    ("europe/moscow" -> "Europe/Moscow"), or a UTC offset ("+3", "UTC+03:00", "GMT-5:30") as
    "UTC+03:00". BadZone otherwise."""
    text = (text or "").strip()
    if not text or len(text) > 64:
        raise BadZone(text[:64])
    if text.lower() in {"utc", "gmt", "z"}:
        return "UTC"
    found = _OFFSET.match(text)
    if found:
        sign = -1 if found.group(1) in "-−" else 1
        hours, minutes = int(found.group(2)), int(found.group(3) or 0)
        if hours > 14 or minutes >= 60 or (hours == 14 and minutes):
            raise BadZone(text)
        total = sign * (hours * 60 + minutes)
        return f"UTC{'+' if total >= 0 else '-'}{abs(total) // 60:02d}:{abs(total) % 60:02d}"
    name = _zones().get(text.replace(" ", "_").lower())
    if name is None:
        raise BadZone(text)
    return name


def zone_of(name: str | None) -> tzinfo:
    """The tzinfo of a stored name (parse_zone's output); UTC when unset or unknown."""
    if not name or name == "UTC":
        return UTC
    if name.startswith("UTC") and len(name) == 9:
        sign = -1 if name[3] == "-" else 1
        return timezone(sign * timedelta(hours=int(name[4:6]), minutes=int(name[7:9])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


_TIME = r"(\d{1,2})(?:[:.h](\d{2}))?"
_WINDOW = re.compile(rf"^{_TIME}\s*(?:-|–|—|to|до|\.\.)\s*{_TIME}$", re.IGNORECASE)


def parse_window(text: str) -> tuple[int, int]:
    """"22:00-08:00", "22-8", "23.30 – 7" -> (start, end) in minutes after midnight."""
    found = _WINDOW.match((text or "").strip()[:40])
    if not found:
        raise BadWindow(text[:40])
    h1, m1, h2, m2 = (int(g or 0) for g in found.groups())
    if h1 > 24 or h2 > 24 or m1 >= 60 or m2 >= 60:
        raise BadWindow(text[:40])
    start, end = (h1 * 60 + m1) % 1440, (h2 * 60 + m2) % 1440
    if start == end:
        raise BadWindow(text[:40])
    return start, end


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def in_window(now: datetime, zone: tzinfo, start: int, end: int) -> bool:
    """Is ``now`` (aware) inside the daily local window [start, end)? A window over midnight
    (start > end) is the evening plus the next morning. Local wall time is what counts, so on
    a daylight-saving day the window is still 22:00-08:00 on the clock on the wall."""
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def _local_moment(day: date, minutes: int, zone: tzinfo) -> datetime:
    """The first instant (UTC) the wall clock in ``zone`` shows ``minutes`` on ``day`` or later.
    A time the spring-forward jump skips becomes the jump's own instant; a time the autumn
    shows twice is its first showing."""
    naive = datetime.combine(day, time(minutes // 60, minutes % 60))
    early = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) == naive:
        late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return min(early, late)  # both exist in the autumn: the first one
    # a gap: fold=1 reads the time with the offset after the jump (an instant before it),
    # fold=0 with the one before (an instant after it); the jump lies between: bisect
    low = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    high = early
    if low > high:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return high


def window_end(now: datetime, zone: tzinfo, start: int, end: int) -> datetime | None:
    """When the window ``now`` is in ends (UTC), or None when ``now`` is outside it."""
    if not in_window(now, zone, start, end):
        return None
    local = now.astimezone(zone)
    day = local.date()
    for candidate in (day, day + timedelta(days=1)):
        moment = _local_moment(candidate, end, zone)
        if moment > now:
            return moment
    return _local_moment(day + timedelta(days=2), end, zone)


# --------------------------------------------------------------------------- preferences, decision
@dataclass(frozen=True, slots=True)
class Prefs:
    timezone: str | None = None
    quiet_start: int | None = None
    quiet_end: int | None = None
    quiet_mode: str = "silent"  # "silent" | "hold"
    vip_breaks_quiet: bool = True
    burst_threshold: int = DEFAULT_BURST

    @property
    def has_quiet(self) -> bool:
        return self.quiet_start is not None and self.quiet_end is not None and self.quiet_start != self.quiet_end

    def quiet_now(self, now: datetime) -> bool:
        if not self.has_quiet:
            return False
        assert self.quiet_start is not None and self.quiet_end is not None
        return in_window(now, zone_of(self.timezone), self.quiet_start, self.quiet_end)

    @classmethod
    def of(cls, row: AttentionPrefs | None) -> Prefs:
        if row is None:
            return cls()
        return cls(row.timezone, row.quiet_start, row.quiet_end, row.quiet_mode, row.vip_breaks_quiet, row.burst_threshold)


class Verdict(StrEnum):
    LOUD = "loud"
    SILENT = "silent"
    MUTED = "muted"
    HELD = "held"


def decide(action: str | None, prefs: Prefs, sound: bool, quiet: bool) -> Verdict:
    """One letter: ``action`` is what its rules say (RuleIndex.match), ``sound`` the user's
    alert sound setting, ``quiet`` whether the quiet window is on now."""
    vip = action == RuleAction.VIP
    if action == RuleAction.MUTE:
        return Verdict.MUTED
    if quiet and not (vip and prefs.vip_breaks_quiet):
        return Verdict.HELD if prefs.quiet_mode == "hold" else Verdict.SILENT
    if vip:
        return Verdict.LOUD
    return Verdict.LOUD if sound else Verdict.SILENT


L = TypeVar("L")  # a letter row (or anything with id, from_addr and subject)


@dataclass
class Plan(Generic[L]):
    """What to do with a batch of letters waiting for an alert."""

    alerts: list[tuple[L, bool]] = field(default_factory=list)  # (letter, loud), oldest first
    muted: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    grouped: bool = False  # the alerts go as ONE message


def plan(letters: Sequence[L], index: RuleIndex, prefs: Prefs, *, sound: bool, now: datetime) -> Plan[L]:
    quiet = prefs.quiet_now(now)
    out: Plan[L] = Plan()
    for letter in letters:
        item: Any = letter
        verdict = decide(index.match(item.from_addr, item.subject), prefs, sound, quiet)
        if verdict == Verdict.MUTED:
            out.muted.append(item.id)
        elif verdict == Verdict.HELD:
            out.held.append(item.id)
        else:
            out.alerts.append((letter, verdict == Verdict.LOUD))
    out.grouped = prefs.burst_threshold > 0 and len(out.alerts) >= max(2, prefs.burst_threshold)
    return out


# --------------------------------------------------------------------------- database
class AttentionData:
    """What the notifier and the digest runner read and write; one short transaction per call.
    Claims follow services.watching.AlertData: a letter goes from its waiting state (pending,
    or held) to `sending` by one owner in a committed transaction before the request leaves, so
    a grouped alert or a digest is never sent twice, by this instance or another."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def facts(self, user_id: int, session: AsyncSession | None = None) -> tuple[RuleIndex, Prefs]:
        """The user's rules and quiet hours; on ``session`` when given (an alert's reads share
        one connection, services.watching.AlertData.reading)."""
        if session is None:
            async with self.sessionmaker() as own:
                return await self.facts(user_id, own)
        # one statement (an alert's round trips count): the preferences beside each rule, or
        # one row of NULLs when the user has neither
        stmt = (
            select(AttentionPrefs, AlertRule.kind, AlertRule.value, AlertRule.action)
            .select_from(User)
            .outerjoin(AttentionPrefs, AttentionPrefs.user_id == User.id)
            .outerjoin(AlertRule, AlertRule.user_id == User.id)
            .where(User.id == user_id)
        )
        rows = (await session.execute(stmt)).all()
        prefs = rows[0][0] if rows else None
        return RuleIndex((r[1], r[2], r[3]) for r in rows if r[1] is not None), Prefs.of(prefs)

    async def mute(self, letter_ids: Sequence[int]) -> None:
        """Muted letters: imported, no alert; a final state, so nothing ever resends them."""
        await self._move(letter_ids, AlertState.PENDING, AlertState.SKIPPED, final=True, note=MUTED_NOTE)

    async def hold(self, letter_ids: Sequence[int]) -> None:
        """Quiet hours, held: kept for the digest at the window's end."""
        await self._move(letter_ids, AlertState.PENDING, AlertState.HELD, final=False, note=None)

    async def skip_held(self, letter_ids: Sequence[int], note: str) -> None:
        await self._move(letter_ids, AlertState.HELD, AlertState.SKIPPED, final=True, note=note)

    async def _move(self, ids: Sequence[int], src: AlertState, dst: AlertState, *, final: bool, note: str | None) -> None:
        if not ids:
            return
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(Letter)
                .where(Letter.id.in_(list(ids)), Letter.alert_state == src.value, Letter.alerted.is_(False))
                .values(alert_state=dst.value, alerted=final, alert_error=note)
                .execution_options(synchronize_session=False)
            )

    async def claim(self, letter_ids: Sequence[int], owner: str, src: AlertState) -> list[int]:
        """src -> sending by ``owner``, committed; the ids actually claimed (none: all were
        claimed or settled elsewhere)."""
        if not letter_ids:
            return []
        async with self.sessionmaker() as session, session.begin():
            rows = await session.execute(
                update(Letter)
                .where(Letter.id.in_(list(letter_ids)), Letter.alert_state == src.value, Letter.alerted.is_(False))
                .values(alert_state=AlertState.SENDING.value, alert_owner=owner, alert_attempts=Letter.alert_attempts + 1)
                .returning(Letter.id)
                .execution_options(synchronize_session=False)
            )
            return [row[0] for row in rows]

    async def settle(
        self, letter_ids: Sequence[int], owner: str, state: AlertState, error: str | None = None
    ) -> None:
        """The outcome of a claimed grouped send: final (sent, uncertain, rejected, skipped), or
        back to waiting (pending, held) when it certainly did not go out."""
        if not letter_ids:
            return
        final = state not in (AlertState.PENDING, AlertState.HELD)
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(Letter)
                .where(
                    Letter.id.in_(list(letter_ids)),
                    Letter.alert_state == AlertState.SENDING.value,
                    Letter.alert_owner == owner,
                )
                .values(alert_state=state.value, alerted=final, alert_error=None if error is None else error[:300])
                .execution_options(synchronize_session=False)
            )

    async def release(self, letter_ids: Sequence[int], owner: str, source: AlertState, error: str) -> None:
        """A claimed grouped send certainly did not go out: its letters wait again (``source``),
        except those tried MAX_ALERT_ATTEMPTS times already, which are given up (rejected), as
        single alerts are (services.watching.AlertData.unclaim)."""
        if not letter_ids:
            return
        mine = (
            Letter.id.in_(list(letter_ids)),
            Letter.alert_state == AlertState.SENDING.value,
            Letter.alert_owner == owner,
        )
        async with self.sessionmaker() as session, session.begin():
            await session.execute(
                update(Letter)
                .where(*mine, Letter.alert_attempts >= MAX_ALERT_ATTEMPTS)
                .values(alert_state=AlertState.REJECTED.value, alerted=True, alert_error=f"gave up: {error}"[:300])
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(Letter)
                .where(*mine)
                .values(alert_state=source.value, alerted=False, alert_error=error[:300])
                .execution_options(synchronize_session=False)
            )

    async def mailboxes_with_held(self) -> list[int]:
        async with self.sessionmaker() as session:
            # held letters are not alerted yet: the alert queue's index (alerted, mailbox_id) finds them
            stmt = select(Letter.mailbox_id).where(
                Letter.alerted.is_(False), Letter.alert_state == AlertState.HELD.value
            ).distinct()
            return list((await session.execute(stmt)).scalars())

    async def held(self, mailbox_id: int) -> list[Letter]:
        async with self.sessionmaker() as session:
            stmt = (
                select(Letter)
                .where(
                    Letter.alerted.is_(False), Letter.mailbox_id == mailbox_id, Letter.alert_state == AlertState.HELD.value
                )
                .order_by(Letter.uid)
            )
            return list((await session.execute(stmt)).scalars())

    async def held_count(self, user_id: int) -> int:
        async with self.sessionmaker() as session:
            stmt = (
                select(func.count())
                .select_from(Letter)
                .join(Mailbox, Mailbox.id == Letter.mailbox_id)
                .where(Mailbox.user_id == user_id, Letter.alert_state == AlertState.HELD.value)
            )
            return int((await session.execute(stmt)).scalar_one())
