"""The user's attention settings as use cases: alert rules (mute / VIP by sender, domain or a
word in the subject), quiet hours (time zone, window, silent or held for a digest, VIP breaks
through) and grouping of bursts. Values are validated here; every id from a button is checked
against the user (a rule or letter of someone else is "not found")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.attention import (
    BURST_CHOICES,
    DEFAULT_BURST,
    BadWindow,
    BadZone,
    RuleAction,
    RuleKind,
    address_domain,
    parse_window,
    parse_zone,
)
from storage.attention_repo import PrefsRepo, RuleRepo
from storage.models import AlertRule, AttentionPrefs, utcnow

MAX_RULES = 1000
MAX_INPUT = 320  # longer text is refused before any parsing
MAX_WORD = 60
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_DOMAIN = re.compile(rf"^(?:{_LABEL}\.)+[^\W\d_]{{2,63}}$|^(?:{_LABEL}\.)+xn--[a-z0-9-]{{2,59}}$", re.UNICODE)
_LOCAL = re.compile(r"^[^\s@<>\"(),;:\\\[\]]{1,64}$")


class RuleError(ValueError):
    """A rule value that can't be used; ``reason`` names the message to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "too_long" | "bad_address" | "bad_domain" | "bad_word" | "too_many" | "no_address"


class RuleNotFound(LookupError):
    pass


def clean_value(kind: str, text: str) -> str:
    """The stored (lower-case) value of a rule, or RuleError."""
    if len(text or "") > MAX_INPUT:
        raise RuleError("too_long")
    text = (text or "").strip()
    if kind == RuleKind.SENDER:
        value = text.strip("<>").strip().lower()
        local, at, domain = value.rpartition("@")
        if not at or not _LOCAL.match(local) or not _DOMAIN.match(domain) or len(value) > 254:
            raise RuleError("bad_address")
        return value
    if kind == RuleKind.DOMAIN:
        value = text.lower().removeprefix("*.").lstrip("@").rstrip(".")
        if not _DOMAIN.match(value) or len(value) > 253:
            raise RuleError("bad_domain")
        return value
    if kind == RuleKind.SUBJECT:
        value = re.sub(r"\s+", " ", text).strip().casefold()
        if not value or len(value) > MAX_WORD or not re.search(r"\w", value):
            raise RuleError("bad_word")
        return value
    raise RuleError("bad_word")


@dataclass(frozen=True)
class RulePage:
    rules: list[AlertRule]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class RuleService:
    def __init__(self, session: AsyncSession) -> None:
        self.rules = RuleRepo(session)

    async def page(self, user_id: int, page: int, per_page: int) -> RulePage:
        total = await self.rules.count(user_id)
        pages = max(1, -(-total // per_page))
        page = min(max(0, page), pages - 1)
        rows = list(await self.rules.page(user_id, per_page, page * per_page))
        return RulePage(rows, total, page, per_page)

    async def add(self, user_id: int, kind: str, text: str, action: str) -> AlertRule:
        """A new rule, or the user's rule for the same value changed to ``action``."""
        rule, _previous = await self._put(user_id, kind, text, action)
        return rule

    async def _put(self, user_id: int, kind: str, text: str, action: str) -> tuple[AlertRule, str]:
        if kind not in set(RuleKind) or action not in set(RuleAction):
            raise RuleError("bad_word")
        value = clean_value(kind, text)
        existing = await self.rules.find(user_id, kind, value)
        if existing is not None:
            previous = existing.action
            existing.action = action
            return existing, previous
        if await self.rules.count(user_id) >= MAX_RULES:
            raise RuleError("too_many")
        return await self.rules.add(user_id, kind, value, action), ""

    async def undo(self, user_id: int, rule_id: int, previous: str, letter_id: int) -> str:
        """Undo a mute made from an alert: the rule goes (or gets its ``previous`` action back).
        Returns the letter's sender address ("" when the letter is gone or not the user's)."""
        rule = await self.owned(user_id, rule_id)
        if previous in set(RuleAction):
            rule.action = previous
        else:
            await self.rules.delete(user_id, rule_id)
        letter = await self.rules.owned_letter(user_id, letter_id)
        return letter.from_addr if letter is not None else ""

    async def mute_from_letter(self, user_id: int, letter_id: int, kind: str) -> tuple[AlertRule, str]:
        """Mute the sender (or the sender's domain) of one of the user's letters; returns the
        rule and the action it had before ("" = it is new), for Undo."""
        letter = await self.rules.owned_letter(user_id, letter_id)
        if letter is None:
            raise RuleNotFound(letter_id)
        address = (letter.from_addr or "").strip().lower()
        if kind == RuleKind.DOMAIN:
            address = address_domain(address)
        if not address:
            raise RuleError("no_address")
        return await self._put(user_id, kind, address, RuleAction.MUTE)

    async def delete(self, user_id: int, rule_id: int) -> None:
        if not await self.rules.delete(user_id, rule_id):
            raise RuleNotFound(rule_id)

    async def owned(self, user_id: int, rule_id: int) -> AlertRule:
        rule = await self.rules.owned(user_id, rule_id)
        if rule is None:
            raise RuleNotFound(rule_id)
        return rule


class QuietError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "bad_zone" | "bad_window" | "no_zone" | "bad_choice"


ZONE_OFFERS = {
    "ru": ("Europe/Moscow", "Europe/Kaliningrad", "Europe/Samara", "Asia/Yekaterinburg", "Asia/Novosibirsk",
           "Asia/Krasnoyarsk", "Asia/Irkutsk", "Asia/Vladivostok"),
    "en": ("Europe/London", "Europe/Berlin", "America/New_York", "America/Chicago", "America/Denver",
           "America/Los_Angeles", "Asia/Kolkata", "Australia/Sydney"),
}
WINDOW_OFFERS = ((22 * 60, 7 * 60), (22 * 60, 8 * 60), (23 * 60, 8 * 60), (0, 9 * 60))


class QuietService:
    """Quiet hours and burst grouping of one user (the attention_prefs row)."""

    def __init__(self, session: AsyncSession) -> None:
        self.prefs = PrefsRepo(session)

    async def current(self, user_id: int) -> AttentionPrefs | None:
        return await self.prefs.get(user_id)

    async def _row(self, user_id: int) -> AttentionPrefs:
        row = await self.prefs.get_or_create(user_id, burst_threshold=DEFAULT_BURST)
        row.updated_at = utcnow()
        return row

    async def set_zone(self, user_id: int, text: str) -> AttentionPrefs:
        try:
            name = parse_zone(text)
        except BadZone as exc:
            raise QuietError("bad_zone") from exc
        row = await self._row(user_id)
        row.timezone = name
        return row

    async def set_window(self, user_id: int, text: str) -> AttentionPrefs:
        try:
            start, end = parse_window(text)
        except BadWindow as exc:
            raise QuietError("bad_window") from exc
        return await self.set_window_minutes(user_id, start, end)

    async def set_window_minutes(self, user_id: int, start: int, end: int) -> AttentionPrefs:
        if not (0 <= start < 1440 and 0 <= end < 1440) or start == end:
            raise QuietError("bad_window")
        row = await self._row(user_id)
        if row.timezone is None:
            raise QuietError("no_zone")
        row.quiet_start, row.quiet_end = start, end
        return row

    async def quiet_off(self, user_id: int) -> AttentionPrefs:
        row = await self._row(user_id)
        row.quiet_start = row.quiet_end = None
        return row

    async def set_mode(self, user_id: int, mode: str) -> AttentionPrefs:
        if mode not in {"silent", "hold"}:
            raise QuietError("bad_choice")
        row = await self._row(user_id)
        row.quiet_mode = mode
        return row

    async def toggle_vip(self, user_id: int) -> AttentionPrefs:
        row = await self._row(user_id)
        row.vip_breaks_quiet = not row.vip_breaks_quiet
        return row

    async def set_burst(self, user_id: int, value: int) -> AttentionPrefs:
        if value not in BURST_CHOICES:
            raise QuietError("bad_choice")
        row = await self._row(user_id)
        row.burst_threshold = value
        return row
