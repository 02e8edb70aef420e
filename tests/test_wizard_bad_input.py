"""Bad input: each case gets a clear translated message, the user stays on the same step,
nothing is lost and nothing crashes."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.callbacks import AccountCB, ServiceCB
from bot.server_input import ServerInputRefused, as_update, assign, parse_servers
from storage.models import Mailbox
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import connect


async def to_email_step(user: Any, service: str = "Gmail") -> None:
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press(service)


async def to_other_review(user: Any, email: str) -> None:
    await to_email_step(user, "Other")
    await user.send(email)
    await user.press(f"Use {email}")
    await user.wait_for_text("Server settings found via")


async def test_not_an_email(bot_app: BotHarness) -> None:
    user = bot_app.user(3001)
    await to_email_step(user)
    for bad in ["not an address", "a@", "@b.c", "a b@c.d", "x@y@z.com", "a" * 400 + "@x.com", "<b>x</b>@example.com"]:
        await user.send(bad)
        text = user.last().text
        assert "is not an e-mail address" in text, bad
    # markup is shown back escaped, never interpreted (the fake Bot API refuses broken HTML)
    assert "&lt;b&gt;x&lt;/b&gt;@example.com" in user.last().html
    # still on the same step: a valid address is accepted now
    await user.send("good@example.com")
    assert "Login for" in user.last().text


async def test_text_where_a_button_is_expected(bot_app: BotHarness) -> None:
    user = bot_app.user(3002)
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.send("Gmail please")
    texts = [m.text for m in user.messages()[-2:]]
    assert "Please choose with the buttons." in texts[0]
    assert "Which mail service" in texts[1]
    await user.press("Gmail")
    assert "Send your e-mail address" in user.last().text


async def send_sticker(bot_app: BotHarness, user: Any, message_id: int) -> None:
    """A message without text, as Telegram delivers a sticker."""
    update_id = bot_app.fake.queue_update({"message": {
        "message_id": message_id, "date": 1_700_000_000,
        "chat": {"id": user.id, "type": "private", "first_name": "Test"},
        "from": {"id": user.id, "is_bot": False, "first_name": "Test"},
        "sticker": {"file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512,
                    "is_animated": False, "is_video": False},
    }})
    await bot_app.fake.wait_processed(update_id)


async def test_sticker_where_text_is_expected(bot_app: BotHarness) -> None:
    user = bot_app.user(3003)
    await to_email_step(user)
    await send_sticker(bot_app, user, 900001)
    assert "Please send text" in user.last().text
    await user.send("ok@example.com")
    assert "Login for" in user.last().text


async def test_second_start_in_the_middle_keeps_the_step(bot_app: BotHarness) -> None:
    user = bot_app.user(3004)
    await to_email_step(user)
    await user.send("/start")
    texts = [m.text for m in user.messages()[-2:]]
    assert "You are connecting a mailbox" in texts[0]
    assert "Send your e-mail address" in texts[1]
    await user.send("ok@example.com")
    assert "Login for" in user.last().text


async def test_old_button_from_previous_wizard_is_refused(bot_app: BotHarness) -> None:
    user = bot_app.user(3005)
    await to_email_step(user)
    first_picker = next(m for m in user.messages() if "Which mail service" in m.text)
    old_data = next(b.callback_data for row in first_picker.buttons for b in row if b.text == "Yahoo") if first_picker.buttons else ServiceCB(wiz="old", service_id=1).pack()
    await user.send("/cancel")
    await user.send("/start")
    await user.press("📬 Connect mail")
    await user.press_data(old_data, first_picker.message_id)
    assert user.callback_answers[-1].text and "out of date" in user.callback_answers[-1].text
    assert "Which mail service" in user.last().text  # nothing moved on


async def test_forged_service_and_unknown_data(bot_app: BotHarness) -> None:
    user = bot_app.user(3006)
    await user.send("/start")
    await user.press("📬 Connect mail")
    picker = user.last()
    nonce = ServiceCB.unpack(picker.buttons[0][0].callback_data).wiz
    await user.press_data(ServiceCB(wiz=nonce, service_id=999999).pack(), picker.message_id)
    assert "no longer available" in (user.callback_answers[-1].text or "")
    await user.press_data("garbage:data", picker.message_id)
    assert "out of date" in (user.callback_answers[-1].text or "")
    await user.press("Gmail")
    assert "Send your e-mail address" in user.last().text


async def test_servers_typed_as_host_port_and_bad_input(harness: BotHarness) -> None:
    await harness.start(allow_private_mail_hosts=False)
    user = harness.user(3007)
    await to_other_review(user, "person@example.com")
    review = user.last()
    await user.press("IMAP server")
    assert user.last().message_id == review.message_id, "the review itself asks, no new message"
    assert "host:port" in user.last().text
    bad_inputs = [
        ("imap.example.com:99999", "whole number from 1 to 65535"),
        ("imap.example.com:0", "whole number from 1 to 65535"),
        ("imap.example.com:", "whole number from 1 to 65535"),
        (":993", "That is not a server"),
        ("http://imap.example.com:993", "That is not a server"),
        ("imap example com", "That is not a server"),
        ("a" * 300, "That is not a server"),
        ("<script>:1", "That is not a server"),
        ("[not-v6]:993", "That is not a server"),
        ("[::1]:993", "private or local network address"),
        ("10.1.2.3:993", "private or local network address"),
        ("a.example.com:1 b.example.com:2 c.example.com:3", "That is not a server"),
    ]
    for bad, expected in bad_inputs:
        await user.send(bad)
        assert expected in user.last().text, bad
        assert "imap.example.com:993" in user.message(review.message_id).text, "nothing changed"
    # still on the step: a good one is taken, the security follows a well-known port
    await user.send("mail.example.com:143")
    assert "mail.example.com:143 · STARTTLS" in user.message(review.message_id).text
    await user.press("SMTP server", review.message_id)
    await user.send("smtp.example.com")  # the port stays
    assert "smtp.example.com:465 · SSL/TLS" in user.message(review.message_id).text


async def test_both_servers_in_one_message_edit_the_one_review(bot_app: BotHarness) -> None:
    user = bot_app.user(3014)
    await to_other_review(user, "person@corp.example")
    review = user.last()
    await user.send("imap.corp.example:993 smtp.corp.example:587")
    text = user.message(review.message_id).text
    assert "imap.corp.example:993 · SSL/TLS" in text and "smtp.corp.example:587 · STARTTLS" in text
    assert "Server settings found via your input" in text
    # one server alone: the port tells which one it is
    await user.send("smtp2.corp.example:465")
    assert "smtp2.corp.example:465 · SSL/TLS" in user.message(review.message_id).text
    await user.send("mx.corp.example:2525")
    assert "IMAP or the SMTP server" in user.last().text
    reviews = [m for m in user.messages() if "Server settings" in m.text]
    assert [m.message_id for m in reviews] == [review.message_id], "no stale copies of the review"
    await user.press("✅ These are right", review.message_id)
    assert "Send the password" in user.last().text


async def test_text_at_the_review_may_be_the_password_and_is_deleted(bot_app: BotHarness) -> None:
    user = bot_app.user(3015)
    await to_other_review(user, "person@example.com")
    review = user.last()
    pasted = await user.send("hunter2-Secret")  # the password, a moment before «These are right»
    assert user.is_deleted(pasted)
    assert "I deleted your message" in user.last().text
    assert "imap.example.com:993" in user.message(review.message_id).text, "the review is unchanged"
    # Telegram refuses the deletion: the user is asked to delete it themselves
    bot_app.fake.fail("deleteMessage", status=400, description="Bad Request: message can't be deleted")
    kept = await user.send("another secret")
    assert not user.is_deleted(kept)
    assert any("Please delete it yourself" in m.text for m in user.messages()[-3:])


async def test_security_toggle_follows_standard_ports(bot_app: BotHarness) -> None:
    user = bot_app.user(3008)
    await to_other_review(user, "person@example.com")
    assert "imap.example.com:993" in user.last().text
    await user.press("IMAP security: SSL/TLS")
    assert "imap.example.com:143 · STARTTLS" in user.last().text
    await user.press("SMTP security: SSL/TLS")
    assert "smtp.example.com:587 · STARTTLS" in user.last().text


async def test_signature_limit_and_markup(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(3009)
    await to_email_step(user)
    await user.send(mail_user.address)
    await user.press(f"Use {mail_user.address}")
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in")
    await user.send("x" * 1001)
    assert "1001 characters long; the limit is 1000" in user.last().text
    await user.send("<b>Boss</b> & <i>co</i> *bold* _it_ [x](http://e.vil)")
    shown = next(m for m in user.messages() if m.text.startswith("Signature:"))
    assert "&lt;b&gt;Boss&lt;/b&gt; &amp; &lt;i&gt;co&lt;/i&gt;" in shown.html
    assert "New-mail alerts" in user.last().text or "Alerts about new letters" in user.last().text


async def test_bad_login_and_password_shapes(bot_app: BotHarness, mail_user: Any) -> None:
    user = bot_app.user(3010)
    await to_email_step(user)
    await user.send(mail_user.address)
    await user.send("has space")
    assert "without spaces" in user.last().text
    await user.press(f"Use {mail_user.address}")
    msg = await user.send("x" * 2000)
    assert user.is_deleted(msg)
    assert "one line of text" in user.last().text
    await user.send(mail_user.password)
    await user.wait_for_text("Signed in")


async def test_forged_account_callback_for_another_users_mailbox(bot_app: BotHarness, mail_user: Any) -> None:
    owner = bot_app.user(3011)
    await connect(bot_app, owner, service="Gmail", email=mail_user.address, password=mail_user.password)
    async with bot_app.session() as s:
        box = (await s.execute(select(Mailbox).where(Mailbox.user_id == owner.id))).scalar_one()
    intruder = bot_app.user(3012)
    await intruder.send("/start")
    menu = intruder.last()
    for action in ("notify", "use_in_processes", "signature", "sig_clear", "card"):
        await intruder.press_data(AccountCB(mailbox_id=box.id, action=action).pack(), menu.message_id)
        assert "not yours" in (intruder.callback_answers[-1].text or ""), action
    async with bot_app.session() as s:
        after = (await s.execute(select(Mailbox).where(Mailbox.id == box.id))).scalar_one()
    assert after.notify == box.notify and after.use_in_processes == box.use_in_processes
    assert after.signature == box.signature


async def test_unknown_command_outside_wizard(bot_app: BotHarness) -> None:
    user = bot_app.user(3013)
    await user.send("/nonsense")
    assert "don't know that command" in user.last().text
    await user.send("hello")
    assert "don't know that command" in user.last().text


@pytest.mark.parametrize(
    ("typed", "strict", "expected"),
    [
        ("imap.corp.ru:993", True, [("imap.corp.ru", 993)]),
        ("imap.corp.ru:993 smtp.corp.ru:465", True, [("imap.corp.ru", 993), ("smtp.corp.ru", 465)]),
        ("IMAP.Corp.RU", False, [("imap.corp.ru", None)]),
        ("[2a00:1450:4010:c0e::6c]:993", True, [("2a00:1450:4010:c0e::6c", 993)]),
        ("почта.рф:993", True, [("xn--80a1acny.xn--p1ai", 993)]),
        ("imap.corp.ru", True, "error.bad_server"),  # at the review a port is needed
        ("hunter2:993", True, "error.bad_server"),  # a single word there may be a password
        ("hunter2", False, [("hunter2", None)]),  # when asked for a server, a short name is one
        ("host.example:99999", False, "error.bad_port"),
        ("host.example:", False, "error.bad_port"),
        (":993", False, "error.bad_server"),
        ("[::1]:993", False, "error.private_host"),
        ("[zz]:993", False, "error.bad_server"),
        ("a.example:1 b.example:2 c.example:3", False, "error.bad_server"),
        ("", False, "error.bad_server"),
    ],
)
def test_typed_servers_parsed(typed: str, strict: bool, expected: Any) -> None:
    try:
        found = parse_servers(typed, allow_private=False, strict=strict)
    except ServerInputRefused as refused:
        assert refused.key == expected
    else:
        assert found == expected


def test_one_typed_server_is_told_apart_by_port_or_name() -> None:
    assert assign([("mail.corp.ru", 587)], None) == {"smtp": ("mail.corp.ru", 587)}
    assert assign([("imap.corp.ru", 1143)], None) == {"imap": ("imap.corp.ru", 1143)}
    assert assign([("mail.corp.ru", 2525)], "smtp") == {"smtp": ("mail.corp.ru", 2525)}
    with pytest.raises(ServerInputRefused) as refused:
        assign([("mail.corp.ru", 2525)], None)
    assert refused.value.key == "error.which_server"
    assert as_update({"imap": ("h.example", 143), "smtp": ("s.example", 2525)}) == {
        "imap_host": "h.example", "imap_port": 143, "imap_sec": "starttls", "smtp_host": "s.example", "smtp_port": 2525,
    }
