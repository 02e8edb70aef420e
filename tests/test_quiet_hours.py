"""Quiet hours: the window math (zoneinfo, daylight saving, windows over midnight), the
decision per letter, the digest's split over Telegram's limits, and end to end on a clock the
test drives: letters held during the window come as ONE digest when it ends, across a restart
(a new app on the same database), never twice, also when two instances look at once; silent
mode and VIP letters breaking through; the settings screen."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from bot.attention import DIGEST_BUTTONS, DigestRunner, GroupSender, render_digest
from bot.i18n import Catalog
from bot.letter_view import MAX_MESSAGE, visible_len
from bot.sender import TelegramSender
from services.attention import (
    AttentionData,
    BadWindow,
    BadZone,
    Prefs,
    Verdict,
    decide,
    in_window,
    parse_window,
    parse_zone,
    window_end,
    zone_of,
)
from services.watching import AlertData
from storage.models import AlertRule, AttentionPrefs, Letter
from tests.harness.fake_telegram import make_bot
from tests.harness.plugin_app import BotHarness
from tests.harness.virtual_clock import VirtualClock
from tests.test_connect_wizard import letter, stored_mailbox
from tests.test_live_mailbox import alerts, connected_user, settle, wait_alerts, wait_watching

BERLIN = zone_of("Europe/Berlin")
NIGHT = (22 * 60, 8 * 60)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------- window math
def test_window_over_midnight() -> None:
    moscow = zone_of("Europe/Moscow")  # UTC+3, no DST
    assert not in_window(utc(2026, 12, 2, 18, 59), moscow, *NIGHT)  # 21:59
    assert in_window(utc(2026, 12, 2, 19, 0), moscow, *NIGHT)  # 22:00
    assert in_window(utc(2026, 12, 2, 23, 30), moscow, *NIGHT)  # 02:30 next day
    assert in_window(utc(2026, 12, 3, 4, 59), moscow, *NIGHT)  # 07:59
    assert not in_window(utc(2026, 12, 3, 5, 0), moscow, *NIGHT)  # 08:00: the end is outside
    assert window_end(utc(2026, 12, 2, 19, 0), moscow, *NIGHT) == utc(2026, 12, 3, 5, 0)
    assert window_end(utc(2026, 12, 3, 1, 0), moscow, *NIGHT) == utc(2026, 12, 3, 5, 0)
    assert window_end(utc(2026, 12, 3, 12, 0), moscow, *NIGHT) is None
    # a daytime window (start < end)
    assert in_window(utc(2026, 12, 2, 10, 0), UTC, 9 * 60, 17 * 60)
    assert not in_window(utc(2026, 12, 2, 17, 0), UTC, 9 * 60, 17 * 60)


def test_spring_forward_in_berlin() -> None:
    """29 March 2026: at 02:00 CET the clocks jump to 03:00 CEST (01:00 UTC)."""
    # the evening before is CET (UTC+1): 22:00 local = 21:00 UTC
    assert in_window(utc(2026, 3, 28, 21, 0), BERLIN, *NIGHT)
    assert not in_window(utc(2026, 3, 28, 20, 59), BERLIN, *NIGHT)
    # the morning after is CEST (UTC+2): 08:00 local = 06:00 UTC, not 07:00
    assert window_end(utc(2026, 3, 28, 21, 0), BERLIN, *NIGHT) == utc(2026, 3, 29, 6, 0)
    assert in_window(utc(2026, 3, 29, 5, 59), BERLIN, *NIGHT)
    assert not in_window(utc(2026, 3, 29, 6, 0), BERLIN, *NIGHT)
    # a window ending inside the skipped hour (02:30) ends at the jump itself
    assert window_end(utc(2026, 3, 29, 0, 0), BERLIN, 22 * 60, 2 * 60 + 30) == utc(2026, 3, 29, 1, 0)
    assert not in_window(utc(2026, 3, 29, 1, 0), BERLIN, 22 * 60, 2 * 60 + 30)  # 03:00 CEST


def test_fall_back_in_berlin() -> None:
    """25 October 2026: at 03:00 CEST the clocks go back to 02:00 CET (01:00 UTC)."""
    assert window_end(utc(2026, 10, 24, 20, 0), BERLIN, *NIGHT) == utc(2026, 10, 25, 7, 0)  # 08:00 CET
    assert in_window(utc(2026, 10, 25, 6, 59), BERLIN, *NIGHT)
    assert not in_window(utc(2026, 10, 25, 7, 0), BERLIN, *NIGHT)
    # 02:30 is shown twice: a window ending then ends at its first showing (00:30 UTC)
    assert window_end(utc(2026, 10, 24, 22, 0), BERLIN, 22 * 60, 2 * 60 + 30) == utc(2026, 10, 25, 0, 30)
    # a window starting in the repeated hour covers both showings
    assert in_window(utc(2026, 10, 25, 0, 45), BERLIN, 2 * 60 + 30, 6 * 60)  # 02:45 CEST
    assert in_window(utc(2026, 10, 25, 1, 45), BERLIN, 2 * 60 + 30, 6 * 60)  # 02:45 CET


@pytest.mark.parametrize(
    ("text", "name"),
    [("Europe/Moscow", "Europe/Moscow"), ("europe/berlin", "Europe/Berlin"), ("America/New York", "America/New_York"),
     ("UTC", "UTC"), ("+3", "UTC+03:00"), ("UTC+03:00", "UTC+03:00"), ("gmt-5:30", "UTC-05:30"), ("−4", "UTC-04:00")],
)
def test_zones_typed(text: str, name: str) -> None:
    assert parse_zone(text) == name


@pytest.mark.parametrize("text", ["Mars/Olympus", "+15", "UTC+3:75", "", "x" * 100, "<b>Europe/Moscow</b>", "../../etc/passwd"])
def test_bad_zones(text: str) -> None:
    with pytest.raises(BadZone):
        parse_zone(text)


def test_offset_zone_is_fixed() -> None:
    zone = zone_of(parse_zone("UTC-05:30"))
    assert in_window(utc(2026, 6, 1, 3, 30), zone, *NIGHT)  # 22:00 local
    assert zone_of("Nowhere/Land") is UTC and zone_of(None) is UTC


def test_windows_typed() -> None:
    assert parse_window("22:00-08:00") == NIGHT
    assert parse_window("22-8") == NIGHT
    assert parse_window("23.30 – 7") == (23 * 60 + 30, 7 * 60)
    for bad in ("8-8", "0:00-24:00", "25:00-08:00", "22:61-08:00", "tonight", "22:00-08:00" * 10):
        with pytest.raises(BadWindow):
            parse_window(bad)


def test_decide() -> None:
    hold = Prefs("Europe/Moscow", *NIGHT, quiet_mode="hold")
    silent = Prefs("Europe/Moscow", *NIGHT, quiet_mode="silent")
    no_break = Prefs("Europe/Moscow", *NIGHT, quiet_mode="hold", vip_breaks_quiet=False)
    assert decide(None, Prefs(), sound=True, quiet=False) == Verdict.LOUD  # today's behaviour
    assert decide(None, Prefs(), sound=False, quiet=False) == Verdict.SILENT
    assert decide("vip", Prefs(), sound=False, quiet=False) == Verdict.LOUD  # VIP rings even when silent
    assert decide("mute", Prefs(), sound=True, quiet=False) == Verdict.MUTED
    assert decide(None, hold, sound=True, quiet=True) == Verdict.HELD
    assert decide(None, silent, sound=True, quiet=True) == Verdict.SILENT
    assert decide("vip", hold, sound=True, quiet=True) == Verdict.LOUD
    assert decide("vip", no_break, sound=True, quiet=True) == Verdict.HELD
    assert decide("mute", hold, sound=True, quiet=True) == Verdict.MUTED


def test_digest_splits_over_telegram_limits() -> None:
    t = Catalog().get("en")
    letters = [
        SimpleNamespace(id=1000 + n, from_name="N" * 300, from_addr=f"s{n}@example.net", subject="<b>" + "Ü" * 400 + "</b>")
        for n in range(260)
    ]
    parts = render_digest(t, letters)  # type: ignore[arg-type]
    assert len(parts) > 2
    assert "260 letters" in parts[0].text
    ids: list[int] = []
    for part in parts:
        assert visible_len(part.text) <= MAX_MESSAGE
        buttons = [b for row in part.markup.inline_keyboard for b in row]
        assert 0 < len(buttons) <= min(DIGEST_BUTTONS, 100)
        assert "<b>Ü" not in part.text  # mail content is escaped
        ids += part.letter_ids
    assert sorted(ids) == [x.id for x in letters]  # every letter settled by exactly one message
    assert "60 more letters" in parts[-1].text
    small = render_digest(t, letters[:3])  # type: ignore[arg-type]
    assert len(small) == 1 and "3 letters" in small[0].text


# --------------------------------------------------------------------------- end to end
async def set_quiet(h: BotHarness, user_id: int, mode: str, *, vip_breaks: bool = True) -> None:
    async with h.session() as s:
        s.add(AttentionPrefs(user_id=user_id, timezone="Europe/Moscow", quiet_start=NIGHT[0], quiet_end=NIGHT[1],
                             quiet_mode=mode, vip_breaks_quiet=vip_breaks, burst_threshold=6))
        await s.commit()


async def states_of(h: BotHarness, prefix: str) -> list[str]:
    async with h.session() as s:
        rows = (await s.execute(select(Letter).where(Letter.subject.like(f"{prefix}%")).order_by(Letter.uid))).scalars()
        return [r.alert_state for r in rows]


async def until_states(h: BotHarness, prefix: str, expected: list[str], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await states_of(h, prefix) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{prefix}: {await states_of(h, prefix)} instead of {expected}")


async def advance_runner(clock: VirtualClock, seconds: float, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Move the app's clock once the digest runner is asleep on it (its pass is done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while clock.sleeping < 1:
        assert loop.time() < deadline, "the digest runner never slept on the clock"
        await asyncio.sleep(0.02)
    await clock.advance(seconds)


def digests(user: Any) -> list[Any]:
    return [m for m in user.messages() if m.from_bot and m.text.startswith("🌙 Quiet hours are over")]


async def test_held_letters_come_as_one_digest_after_a_restart(harness: BotHarness, mail_user: Any) -> None:
    # 23:00 in Moscow: inside 22:00-08:00
    clock = VirtualClock(wall=utc(2026, 12, 2, 20, 0))
    await harness.start(clock=clock)
    user = await connected_user(harness, mail_user, 6301)
    await set_quiet(harness, user.id, "hold")
    for n in range(3):
        await harness.stack.deliver(mail_user.address, letter(n, subject=f"Night {n}"))
    await until_states(harness, "Night", ["held"] * 3)
    await settle(1.0)
    assert alerts(harness, user) == [] and digests(user) == []

    # restart during the window: a new app on the same database, at 07:59 Moscow time
    await harness.stop()
    clock = VirtualClock(wall=utc(2026, 12, 3, 4, 59))
    await harness.start(clock=clock)
    box = await stored_mailbox(harness, user.id)
    assert box is not None
    await wait_watching(harness, box.id)
    await harness.stack.deliver(mail_user.address, letter(9, subject="Night 9"))
    await until_states(harness, "Night", ["held"] * 4)
    await advance_runner(clock, 30)  # 07:59:30: still quiet
    await settle(0.5)
    assert digests(user) == []
    await advance_runner(clock, 30)  # 08:00: the window is over
    digest = await user.wait_for(lambda m: m.text.startswith("🌙"), timeout=10)
    assert "4 letters" in digest.text
    assert all(f"Night {n}" in digest.text for n in (0, 1, 2, 9))
    assert digest.labels == ["📖 1", "📖 2", "📖 3", "📖 4"]
    assert digest.disable_notification is False  # the user's sound setting (on)
    await until_states(harness, "Night", ["sent"] * 4)

    # later passes and another restart send nothing again
    await advance_runner(clock, 30)
    await advance_runner(clock, 30)
    await harness.stop()
    await harness.start(clock=VirtualClock(wall=utc(2026, 12, 3, 5, 10)))
    await settle(1.5)
    assert len(digests(user)) == 1 and alerts(harness, user) == []
    await user.press("📖 4", message_id=digest.message_id)
    await user.wait_for_text("Body of letter 9")
    # after the window letters alert one by one again
    await harness.stack.deliver(mail_user.address, letter(10, subject="Morning"))
    await wait_alerts(harness, user, 1)


async def test_two_instances_send_one_digest(harness: BotHarness, mail_user: Any) -> None:
    clock = VirtualClock(wall=utc(2026, 12, 2, 20, 0))
    await harness.start(clock=clock)
    user = await connected_user(harness, mail_user, 6302)
    await set_quiet(harness, user.id, "hold")
    for n in range(5):
        await harness.stack.deliver(mail_user.address, letter(n, subject=f"Raced {n}"))
    await until_states(harness, "Raced", ["held"] * 5)
    # the window ends; this instance's runner and a second instance's look at the same moment
    clock_after = VirtualClock(wall=utc(2026, 12, 3, 6, 0))
    data = AttentionData(harness.app.sessionmaker)
    bot2 = make_bot(harness.fake)
    try:
        mine = harness.app.extra["digests"]
        mine.clock = clock_after
        other = DigestRunner(data, AlertData(harness.app.sessionmaker),
                             GroupSender(data, TelegramSender(bot2), harness.app.catalog, instance_id="other"),
                             clock=clock_after)
        harness.fake.hold("sendMessage", 0.3, chat_id=user.id)  # both are at it at the same time
        await asyncio.gather(mine.tick(), other.tick())
        await until_states(harness, "Raced", ["sent"] * 5)
        await settle(1.0)
        assert len(digests(user)) == 1 and "5 letters" in digests(user)[0].text
    finally:
        await bot2.session.close()


async def test_silent_quiet_hours_and_vip_breaking_through(harness: BotHarness, mail_user: Any) -> None:
    clock = VirtualClock(wall=utc(2026, 12, 2, 20, 0))  # 23:00 Moscow
    await harness.start(clock=clock)
    user = await connected_user(harness, mail_user, 6303)
    await set_quiet(harness, user.id, "silent")
    async with harness.session() as s:
        s.add(AlertRule(user_id=user.id, kind="sender", value="sender5@example.net", action="vip"))
        await s.commit()
    await harness.stack.deliver(mail_user.address, letter(1, subject="Quietly"))
    [quiet] = await wait_alerts(harness, user, 1)
    assert quiet.disable_notification is True
    await harness.stack.deliver(mail_user.address, letter(5, subject="Boss at night"))
    found = await wait_alerts(harness, user, 2)
    assert "Boss at night" in found[-1].text and found[-1].disable_notification is False
    # the user turns "VIP break through" off: the VIP letter is quiet too
    await user.send("/settings")
    await user.press("🌙 Quiet hours")
    await user.press("⭐ VIP break through: on")
    assert "VIP letters break through: off" in user.last().text
    await harness.stack.deliver(mail_user.address, letter(5, subject="Boss again"))
    found = await wait_alerts(harness, user, 3)
    assert "Boss again" in found[-1].text and found[-1].disable_notification is True


async def test_quiet_hours_screen(bot_app: BotHarness) -> None:
    user = bot_app.user(6304, language_code="ru")
    await user.send("/settings")
    await user.press("🌙 Тихие часы")
    assert "Часовой пояс: не задан" in user.last().text
    await user.press("🕙 Время: выкл.")  # no zone yet: asked for it first
    await user.wait_for_text("Выберите часовой пояс")
    assert user.last().labels[0] == "Europe/Moscow"  # offered from the language
    await user.send("Марс/Олимп")
    assert "Не знаю такого часового пояса" in user.last().text
    await user.send("utc+3")  # typed as an offset
    await user.wait_for_text("Часовой пояс: UTC+03:00")
    await user.press("🌍 Часовой пояс: UTC+03:00")
    await user.press("Europe/Moscow")
    await user.wait_for_text("Часовой пояс: Europe/Moscow")
    await user.press("🕙 Время: выкл.")
    await user.send("22:00-22:00")
    assert "начало и конец должны различаться" in user.last().text
    await user.send("22:30 - 7:15")
    await user.wait_for_text("Время: 22:30–07:15")
    await user.press("В это время: уведомления без звука")
    await user.wait_for_text("копить и прислать одной сводкой")
    await user.press("📬 Группировать от: 6")
    await user.wait_for(lambda m: "📬 Группировать от: 10" in m.labels and "столько: 10" in m.text)
    screen = user.last()
    forged = await user.press_data("q:burst:7", screen.message_id)  # not a choice offered
    assert forged.show_alert
    forged = await user.press_data("q:tzset:Mars/Olympus", screen.message_id)
    assert forged.show_alert
    async with bot_app.session() as s:
        row = await s.get(AttentionPrefs, user.id)
    assert row is not None
    assert (row.timezone, row.quiet_start, row.quiet_end, row.quiet_mode, row.burst_threshold) == (
        "Europe/Moscow", 22 * 60 + 30, 7 * 60 + 15, "hold", 10)
    await user.press("Выключить тихие часы")
    await user.wait_for_text("Время: выкл")
    async with bot_app.session() as s:
        row = await s.get(AttentionPrefs, user.id, populate_existing=True)
    assert row is not None and row.quiet_start is None


def test_window_end_is_after_now() -> None:
    now = utc(2026, 12, 2, 19, 30)
    end = window_end(now, zone_of("Europe/Moscow"), *NIGHT)
    assert end is not None and now < end <= now + timedelta(hours=10)
