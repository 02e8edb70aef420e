"""Alert rules: the matching core, the validation of what users type, and end to end against
the real Dovecot and the fake Bot API: mute from an alert then Undo, a VIP letter rings while
alerts are silent, the Rules screen (paged, delete), and ids of another user in callback data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from bot.callbacks import RuleCB
from services.attention import RuleIndex
from services.rules import MAX_INPUT, RuleError, clean_value
from storage.models import AlertRule, AlertState, Letter
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import letter
from tests.test_live_mailbox import alerts, connected_user, settle, wait_alerts


# --------------------------------------------------------------------------- the core
def test_index_matches_sender_domain_subdomain_and_words() -> None:
    index = RuleIndex([
        ("sender", "news@shop.example", "mute"),
        ("domain", "lists.example.org", "mute"),
        ("subject", "invoice", "vip"),
        ("subject", "weekly digest", "mute"),
    ])
    assert index.match("News@Shop.Example", "Hello") == "mute"
    assert index.match("other@shop.example", "Hello") is None
    assert index.match("a@lists.example.org", "x") == "mute"
    assert index.match("a@dev.lists.example.org", "x") == "mute"  # subdomains too
    assert index.match("a@example.org", "x") is None  # not the parent
    assert index.match("boss@corp.example", "Your INVOICE #12") == "vip"
    assert index.match("boss@corp.example", "invoices") is None  # whole words only
    assert index.match("x@y.example", "The  Weekly\tDigest is here") == "mute"
    # VIP wins over mute, whichever kinds they are
    assert index.match("news@shop.example", "invoice attached") == "vip"
    assert RuleIndex().match("a@b.example", "anything") is None
    assert index.match("", "") is None


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        ("sender", "not an address", "bad_address"),
        ("sender", "a@b", "bad_address"),
        ("sender", "<script>@x.example", "bad_address"),
        ("sender", "a b@example.com", "bad_address"),
        ("sender", "x" * (MAX_INPUT + 1), "too_long"),
        ("domain", "-bad-.example", "bad_domain"),
        ("domain", "exa mple.com", "bad_domain"),
        ("domain", "<b>x</b>.com", "bad_domain"),
        ("domain", "localhost", "bad_domain"),
        ("subject", "   ", "bad_word"),
        ("subject", "!!!", "bad_word"),
        ("subject", "w" * 61, "bad_word"),
    ],
)
def test_bad_values_are_refused(kind: str, text: str, reason: str) -> None:
    with pytest.raises(RuleError) as info:
        clean_value(kind, text)
    assert info.value.reason == reason


def test_good_values_are_normalised() -> None:
    assert clean_value("sender", "  <News@Shop.Example> ") == "news@shop.example"
    assert clean_value("domain", "@Lists.Example.ORG.") == "lists.example.org"
    assert clean_value("domain", "*.пример.рф") == "пример.рф"
    assert clean_value("subject", "  <b>Sale</b>  NOW ") == "<b>sale</b> now"  # kept as text, escaped when shown


# --------------------------------------------------------------------------- end to end
async def _letter_row(h: BotHarness, subject: str, timeout: float = 8.0) -> Letter:  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with h.session() as s:
            row = (await s.execute(select(Letter).where(Letter.subject == subject))).scalars().first()
        if row is not None and row.alert_state not in (AlertState.PENDING.value, AlertState.SENDING.value):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"{subject}: not imported and settled")


async def test_mute_sender_from_an_alert_then_undo(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6201)
    await bot_app.stack.deliver(mail_user.address, letter(1, subject="First from one"))
    [alert] = await wait_alerts(bot_app, user, 1)
    assert "🔕 Mute sender" in alert.labels and "🔕 Mute domain" in alert.labels
    answer = await user.press("🔕 Mute sender", message_id=alert.message_id)
    assert answer.text and "sender1@example.net" in answer.text
    assert user.message(alert.message_id).labels == ["📖 Open", "↩️ Reply", "➡️ Forward", "↩️ Undo"]

    # muted: imported, in /inbox, in a final state, never alerted
    await bot_app.stack.deliver(mail_user.address, letter(1, subject="Second from one"))
    row = await _letter_row(bot_app, "Second from one")
    assert row.alert_state == AlertState.SKIPPED.value and row.alerted
    await settle()
    assert len(alerts(bot_app, user)) == 1
    await user.send("/inbox")
    assert "Second from one" in user.last().text
    # another sender still rings
    await bot_app.stack.deliver(mail_user.address, letter(2, subject="From two"))
    await wait_alerts(bot_app, user, 2)

    await user.press("↩️ Undo", message_id=alert.message_id)
    assert "🔕 Mute sender" in user.message(alert.message_id).labels
    async with bot_app.session() as s:
        assert (await s.execute(select(AlertRule).where(AlertRule.user_id == user.id))).scalars().all() == []
    await bot_app.stack.deliver(mail_user.address, letter(1, subject="Third from one"))
    found = await wait_alerts(bot_app, user, 3)
    assert "Third from one" in found[-1].text


async def test_vip_rings_while_alerts_are_silent(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6202, sound=False)
    await user.send("/settings")
    await user.press("🔕 Alert rules")
    assert "No rules yet" in user.last().text
    await user.press("➕ Add a rule")
    await user.press("⭐ Sender")
    await user.send("not-an-address")
    assert "not an e-mail address" in user.last().text  # asked again, still waiting
    await user.send("SENDER7@example.net")
    await user.wait_for_text("is VIP")
    assert "sender7@example.net" in user.last().text

    await bot_app.stack.deliver(mail_user.address, letter(7, subject="From the boss"))
    [vip] = await wait_alerts(bot_app, user, 1)
    assert "From the boss" in vip.text and vip.disable_notification is False
    await bot_app.stack.deliver(mail_user.address, letter(8, subject="From anyone"))
    found = await wait_alerts(bot_app, user, 2)
    assert "From anyone" in found[-1].text and found[-1].disable_notification is True


async def test_rules_screen_pages_deletes_and_refuses_others_ids(bot_app: BotHarness, mail_user: Any) -> None:
    owner = await connected_user(bot_app, mail_user, 6203)
    async with bot_app.session() as s:
        for n in range(11):
            s.add(AlertRule(user_id=owner.id, kind="domain", value=f"d{n}.example", action="mute"))
        await s.commit()
        first = (await s.execute(select(AlertRule).where(AlertRule.value == "d0.example"))).scalar_one()
    await owner.send("/settings")
    await owner.press("🔕 Alert rules")
    screen = owner.last()
    assert "11 rules (page 1 of 2)" in screen.text and "d10.example" in screen.text
    await owner.press("Next ➡️")
    assert "page 2 of 2" in owner.last().text and "d0.example" in owner.last().text
    await owner.press("❌ 11")
    assert "10 rules" in owner.last().text

    # a stranger forges the owner's rule and letter ids: nothing happens to them
    stranger = bot_app.user(6204)
    await stranger.send("/settings")
    menu = stranger.last()
    async with bot_app.session() as s:
        some = (await s.execute(select(AlertRule).where(AlertRule.user_id == owner.id))).scalars().first()
        letter_row = (await s.execute(select(Letter))).scalars().first()
    assert some is not None and first.id != some.id
    for data in (
        RuleCB(action="del", item=some.id).pack(),
        RuleCB(action="undo", item=some.id, letter=0).pack(),
        RuleCB(action="kind", value="<b>x</b>").pack(),
        "r:nonsense",
    ):
        answer = await stranger.press_data(data, menu.message_id)
        assert answer.show_alert, (data, answer.text)
    if letter_row is not None:
        answer = await stranger.press_data(RuleCB(action="ms", item=letter_row.id).pack(), menu.message_id)
        assert answer.show_alert and "not there" in (answer.text or "")
    async with bot_app.session() as s:
        left = (await s.execute(select(AlertRule).where(AlertRule.user_id == owner.id))).scalars().all()
        mine = (await s.execute(select(AlertRule).where(AlertRule.user_id == stranger.id))).scalars().all()
    assert len(left) == 10 and mine == []


async def test_rule_input_is_escaped_and_bounded(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6205)
    await user.send("/settings")
    await user.press("🔕 Alert rules")
    await user.press("➕ Add a rule")
    await user.press("🔕 Word")
    await user.send("x" * 5000)
    assert "too long" in user.last().text
    await user.send("<b>sale</b>")
    saved = await user.wait_for_text("Saved")
    assert "<b>sale</b>" in saved.text and "&lt;b&gt;sale&lt;/b&gt;" in (saved.html or "")
    await bot_app.stack.deliver(mail_user.address, letter(3, subject="Big <b>SALE</b> today"))
    row = await _letter_row(bot_app, "Big <b>SALE</b> today")
    assert row.alert_state == AlertState.SKIPPED.value
    await settle(1.0)
    assert alerts(bot_app, user) == []


async def test_undo_gives_a_vip_rule_its_action_back(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6206)
    async with bot_app.session() as s:
        s.add(AlertRule(user_id=user.id, kind="sender", value="sender4@example.net", action="vip"))
        await s.commit()
    await bot_app.stack.deliver(mail_user.address, letter(4, subject="From a VIP"))
    [alert] = await wait_alerts(bot_app, user, 1)
    await user.press("🔕 Mute sender", message_id=alert.message_id)
    async with bot_app.session() as s:
        [rule] = (await s.execute(select(AlertRule).where(AlertRule.user_id == user.id))).scalars().all()
    assert rule.action == "mute"
    await user.press("↩️ Undo", message_id=alert.message_id)
    async with bot_app.session() as s:
        [rule] = (await s.execute(select(AlertRule).where(AlertRule.user_id == user.id))).scalars().all()
    assert rule.action == "vip"
    # a second Undo on the same button (a double press) finds the rule still there and keeps it VIP
    answer = await user.press_data(RuleCB(action="undo", item=rule.id, letter=alert.message_id, value="vip").pack(),
                                   alert.message_id)
    assert not answer.show_alert
