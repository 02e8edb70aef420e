"""Reply, reply to all and forward from the chat, end to end: letters delivered by the real
Dovecot, alerts and drafts through the fake Bot API with the real aiogram bot, the answer sent
through the harness's SMTP server and read back from the recipients' mailboxes (threading
headers, quote, signature, recipients, attachments byte for byte) and from the Sent folder."""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.callbacks import ComposeCB, DraftCB
from mail.compose import (
    Entity,
    OriginalLetter,
    entities_to_html,
    forward_subject,
    message_ids,
    reply_recipients,
    reply_subject,
    thread_headers,
)
from mail.outbox import Draft, Recipient, build_message
from services.compose import ComposeDraft, parse_recipients
from storage.models import Letter, LetterMark, Mailbox, User
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.oauth_server import ScriptedBrowser
from tests.harness.plugin_app import BotHarness
from tests.harness.virtual_clock import VirtualClock
from tests.test_api import Api, Fetched, error_of, mails, new_user
from tests.test_api import api as api  # noqa: F401 - the api fixture
from tests.test_live_mailbox import connected_user, wait_alerts
from tests.test_oauth_wizard import (
    ADMIN,
    World,
    authorize,
    finish_wizard,
    free_port,
    to_password_step,
)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# --------------------------------------------------------------------------- helpers
def original(
    sender: MailUser, to: list[str], *, subject: str = "Plans for Q3", cc: list[str] | None = None,
    message_id: str | None = None, references: str | None = None, body: str = "First line of the original.\nSecond line.",
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
    from_name: str = "Bob Sender",
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f'"{from_name}" <{sender.address}>'
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = "Tue, 01 Dec 2026 09:30:00 +0000"
    msg["Message-ID"] = message_id or f"<orig-{secrets.token_hex(6)}@example.net>"
    if references:
        msg["References"] = references
    msg.set_content(body)
    for filename, ctype, data in attachments:
        maintype, _, subtype = ctype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


async def received(stack: MailStack, user: MailUser, count: int = 1, folder: str = "INBOX", timeout: float = 8.0) -> list[Fetched]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await mails(stack, user, folder)
        if len(found) >= count or loop.time() > deadline:
            return found
        await asyncio.sleep(0.1)


def parts(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(preferencelist=("plain",))
    rich = msg.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    texts = plain.get_content(), rich.get_content()  # type: ignore[attr-defined]
    return texts[0].replace("\r\n", "\n"), texts[1].replace("\r\n", "\n")


async def alert_for(h: BotHarness, user: Any, stack: MailStack, mailbox: MailUser, msg: EmailMessage, n: int = 1) -> Any:
    await stack.deliver(mailbox.address, msg)
    found = await wait_alerts(h, user, n)
    return found[n - 1]


async def alert_remembered(h: BotHarness, alert_message_id: int, timeout: float = 10.0) -> None:
    """Wait until the alert's message id is stored with its letter (after the send's answer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with h.session() as s:
            stmt = select(LetterMark.letter_id).where(LetterMark.alert_message_id == alert_message_id)
            if (await s.execute(stmt)).first() is not None:
                return
        assert asyncio.get_running_loop().time() < deadline, "the alert's message id was never stored"
        await asyncio.sleep(0.05)


async def letter_id(h: BotHarness, message_id: str) -> int:
    async with h.session() as s:
        return int((await s.execute(select(Letter.id).where(Letter.message_id == message_id))).scalar_one())


async def wait_text(user: Any, fragment: str, timeout: float = 10.0) -> Any:
    return await user.wait_for_text(fragment, timeout=timeout)


# --------------------------------------------------------------------------- pure pieces
def test_subject_prefixes_do_not_pile_up() -> None:
    for given in ("Re: Re: x", "RE: x", "Fwd: Re: x", "Fw: x", "Отв: x", "Re[2]: x", "re : RE:x", "x"):
        assert reply_subject(given) == "Re: x", given
        assert forward_subject(given) == "Fwd: x", given
    assert reply_subject("") == "Re:"
    assert reply_subject("Report: May") == "Re: Report: May"  # only known prefixes go


def test_threading_headers() -> None:
    assert thread_headers("<a@b>", "<r1@x> junk <r2@x>", None) == [
        ("In-Reply-To", "<a@b>"), ("References", "<r1@x> <r2@x> <a@b>")
    ]
    assert thread_headers("<a@b>", None, "<p@x>") == [("In-Reply-To", "<a@b>"), ("References", "<p@x> <a@b>")]
    assert thread_headers(None, "<r@x>", None) == []
    long_chain = " ".join(f"<m{n}@x>" for n in range(40))
    refs = dict(thread_headers("<a@b>", long_chain, None))["References"].split()
    assert len(refs) == 20 and refs[0] == "<m0@x>" and refs[-1] == "<a@b>"
    assert message_ids("<a@b>\r\n <c@d>, <a@b>, <bad>") == ["<a@b>", "<c@d>"]


def test_long_message_ids_are_written_as_they_are() -> None:
    long_id = "<" + "x" * 90 + "@mail.example.com>"
    draft = Draft(
        sender=Recipient("me@example.org"), to=[Recipient("you@example.org")], subject="Re: x", text="hi",
        headers=[("In-Reply-To", long_id), ("References", f"<root@example.com> {long_id}")],
    )
    wire = build_message(draft).wire.decode("ascii")
    assert f"In-Reply-To: {long_id}\r\n" in wire and "=?utf-8?" not in wire
    assert f"References: <root@example.com>\r\n {long_id}\r\n" in wire


def test_entities_become_escaped_html() -> None:
    text = "Hi <b>team</b> & 😀 bold italic link code\nnext"
    # UTF-16 offsets: the emoji takes two units
    entities = [
        Entity("bold", 20, 4), Entity("italic", 20, 11), Entity("text_link", 32, 4, url='https://ex.org/?a=1&b="2"'),
        Entity("code", 37, 4), Entity("text_link", 0, 2, url="javascript:alert(1)"), Entity("underline", 0, 999),
    ]
    out = entities_to_html(text, entities)
    assert out.startswith("Hi &lt;b&gt;team&lt;/b&gt; &amp; 😀 ")
    assert "<i><b>bold</b> italic</i>" in out
    assert '<a href="https://ex.org/?a=1&amp;b=&quot;2&quot;">link</a>' in out
    assert "<code>code</code><br>\nnext" in out
    assert "javascript" not in out  # only http(s) and mailto links
    # overlapping entities still give well-formed markup
    assert entities_to_html("abcdef", [Entity("bold", 0, 4), Entity("italic", 2, 4)]) == "<b>ab<i>cd</i></b><i>ef</i>"


def test_recipients_typed_by_the_user() -> None:
    good, bad = parse_recipients('anna@example.org, "Doe, John" <john@example.org>; not-an-address\nbob@пример.рф')
    assert [r.address for r in good] == ["anna@example.org", "john@example.org", "bob@xn--e1afmkfd.xn--p1ai"]
    assert good[1].name == "Doe, John"
    assert bad == ["not-an-address"]
    assert parse_recipients("<script>@x") == ([], ["<script>@x"])


def test_reply_recipients() -> None:
    def r(address: str, name: str = "") -> Recipient:
        return Recipient(address, name)

    letter = OriginalLetter(
        uid=1, subject="x", date=None, sender=[r("bob@x.org", "Bob")], reply_to=[r("list@x.org")],
        to=[r("me@x.org"), r("dave@x.org")], cc=[r("ME@X.ORG"), r("carol@x.org"), r("dave@x.org")],
        message_id=None, references=None, in_reply_to=None, text="",
    )
    assert reply_recipients(letter, ["me@x.org"], reply_all=False) == ([r("list@x.org")], [])  # Reply-To wins
    to, cc = reply_recipients(letter, ["me@x.org"], reply_all=True)
    assert [p.address for p in to] == ["list@x.org", "dave@x.org"] and [p.address for p in cc] == ["carol@x.org"]
    # a letter of my own (from Sent) is answered to its recipients
    mine = OriginalLetter(
        uid=2, subject="x", date=None, sender=[r("me@x.org")], reply_to=[], to=[r("bob@x.org")], cc=[],
        message_id=None, references=None, in_reply_to=None, text="",
    )
    assert reply_recipients(mine, ["me@x.org"], reply_all=False) == ([r("bob@x.org")], [])


def test_the_preview_fits_one_message() -> None:
    from bot.i18n import Catalog
    from bot.letter_view import MAX_MESSAGE, utf16_len
    from handlers.compose import render_draft
    from services.compose import FileRef
    from tests.harness.fake_telegram import parse_html

    t = Catalog().get("en")
    people = [Recipient(f"person{n}@example.org", "Name <b>" + "x" * 20) for n in range(50)]
    draft = ComposeDraft(
        id="d", mode="all", letter_id=1, mailbox_id=1, sender="me@example.org", to=people[:25], cc=people[25:],
        subject="<i>S</i>" * 100, intro=["On x"], headers=[], created=datetime.now(UTC), text="<b>&amp;</b> 😀 " * 2000,
        files=[FileRef(f"id{n}", "файл <b>" * 30 + ".pdf", "application/pdf", 10**6) for n in range(20)],
    )
    text, _entities = parse_html(render_draft(t, draft, "Best\n<regards>" * 100))  # what Telegram would accept
    assert utf16_len(text) <= MAX_MESSAGE and "<b>&amp;</b> 😀" in text and text.count("файл") < 400


def test_draft_data_is_checked_when_read_back() -> None:
    assert ComposeDraft.from_data(None) is None
    assert ComposeDraft.from_data({"id": "x"}) is None
    assert ComposeDraft.from_data({"id": 1, "mode": "reply", "letter_id": "nope"}) is None


# --------------------------------------------------------------------------- end to end
async def test_reply_threads_quotes_and_signs(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    user = await connected_user(bot_app, mail_user, 9101)
    orig = original(bob, [mail_user.address], subject="Re: Re: Plans for Q3", references="<root-1@example.net>")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    assert "↩️ Reply" in alert.labels and "➡️ Forward" in alert.labels
    assert "↩️ Reply all" not in alert.labels  # nobody else to answer
    await user.press("↩️ Reply", message_id=alert.message_id)
    prompt = await wait_text(user, "Write your answer to «Re: Plans for Q3»")
    assert prompt.labels == ["✖️ Cancel"]
    submitted = len(stack.submitted)
    text = "Thanks Bob, agreed.\nSee the plan."
    await user.send(text, entities=[{"type": "bold", "offset": 0, "length": 6}])
    preview = user.last()
    assert f"From: {mail_user.address}" in preview.text
    assert f"To: Bob Sender <{bob.address}>" in preview.text
    assert "Subject: Re: Plans for Q3" in preview.text
    assert "Thanks Bob, agreed." in preview.text and "-- \nBest regards" in preview.text
    assert preview.labels == ["📤 Send", "✏️ Edit text", "➕ Add recipients", "✖️ Cancel"]
    await asyncio.sleep(0.3)
    assert len(stack.submitted) == submitted  # nothing goes without Send
    await user.press("📤 Send", message_id=preview.message_id)
    done = await wait_text(user, "✅ Sent to")
    assert bob.address in done.text and "«Sent»" in done.text

    [got] = await received(stack, bob)
    msg = got.message
    assert msg["In-Reply-To"] == orig["Message-ID"]
    assert msg["References"].split() == ["<root-1@example.net>", orig["Message-ID"]]
    assert msg["Subject"] == "Re: Plans for Q3"
    assert msg["From"].addresses[0].addr_spec == mail_user.address
    plain, rich = parts(msg)
    assert plain.startswith("Thanks Bob, agreed.\nSee the plan.\n-- \nBest regards\n\n")
    assert "On Tue, 01 Dec 2026 09:30 +0000, Bob Sender <" in plain and "> wrote:\n> First line of the original.\n> Second line." in plain
    assert "<b>Thanks</b> Bob, agreed.<br>" in rich and "Best regards</div>" in rich and "<blockquote" in rich and "First line of the original." in rich
    # the copy in Sent is the same letter
    sent = await received(stack, mail_user, folder="Sent")
    assert [m.message["Message-ID"] for m in sent] == [msg["Message-ID"]]
    await user.send("/sent")  # and listed with the letters sent from the bot
    assert "Re: Plans for Q3" in user.last().text
    # the draft is gone: its old buttons do nothing
    answer = await user.press("📤 Send", message_id=preview.message_id)
    assert answer.text == "This draft is no longer open." and len(stack.submitted) == submitted + 1


async def test_reply_all_leaves_out_own_addresses_and_keeps_cc(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob, dave, carol = new_user(stack, "bob"), new_user(stack, "dave"), new_user(stack, "carol")
    user = await connected_user(bot_app, mail_user, 9102)
    orig = original(
        bob, [mail_user.address, f"Dave <{dave.address}>"], cc=[carol.address, mail_user.address.upper()],
        subject="Budget",
    )
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    assert "↩️ Reply all" in alert.labels
    await user.press("↩️ Reply all", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send("Fine by me.")
    preview = user.last()
    assert f"To: Bob Sender <{bob.address}>, Dave <{dave.address}>" in preview.text
    assert f"Cc: {carol.address}" in preview.text
    assert mail_user.address not in preview.text.split("To:")[1]
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent to")
    last = stack.submitted[-1]
    assert sorted(last.rcpt_tos) == sorted([bob.address, dave.address, carol.address])
    [got] = await received(stack, carol)
    assert got.message["Cc"] == carol.address and got.message["In-Reply-To"] == orig["Message-ID"]
    assert got.message["References"] == orig["Message-ID"]  # the original started the thread
    assert (await received(stack, dave))[0].message["Subject"] == "Re: Budget"


async def test_answering_the_alert_in_russian(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    user = await connected_user(bot_app, mail_user, 9103)
    async with bot_app.session() as s:
        await s.execute(update(User).where(User.id == 9103).values(language="ru"))
        await s.commit()
    orig = original(bob, [mail_user.address], subject="Отв: Отв: Договор", from_name="Борис")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    assert "↩️ Ответить" in alert.labels
    # a Telegram reply to the alert is an answer to the letter
    await user.send("Договор подписан.", reply_to=alert.message_id)
    preview = user.last()
    assert "Ваше письмо" in preview.text and "Тема: Re: Договор" in preview.text
    assert f"Кому: Борис <{bob.address}>" in preview.text
    await user.press("📤 Отправить", message_id=preview.message_id)
    await wait_text(user, "✅ Отправлено")
    [got] = await received(stack, bob)
    plain, _rich = parts(got.message)
    assert plain.startswith("Договор подписан.\n-- \nBest regards")
    assert "01.12.2026 09:30 +0000, Борис <" in plain and "> пишет:\n> First line" in plain
    assert got.message["In-Reply-To"] == orig["Message-ID"]
    # a reply to a bot message that names no letter is not taken for an answer
    await user.send("/start")
    menu = user.last()
    before = len(stack.submitted)
    await user.send("просто текст", reply_to=menu.message_id)
    assert "Ваше письмо" not in user.last().text and len(stack.submitted) == before


async def test_a_reply_to_an_alert_that_came_without_its_keyboard(bot_app: BotHarness, mail_user: MailUser) -> None:
    """Telegram may leave the answered message's keyboard out of `reply_to_message`: the alert
    is then known by its message id, remembered with the letter when it was sent."""
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    user = await connected_user(bot_app, mail_user, 9110)
    orig = original(bob, [mail_user.address], subject="Plans")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    # the alert's message id is stored once Telegram has answered the send; a user answers
    # seconds later, the test at once: wait for it to be stored first
    await alert_remembered(bot_app, alert.message_id)
    bot_app.fake.replies_carry_keyboard = False
    await user.send("Agreed.", reply_to=alert.message_id)
    preview = user.last()
    assert "Subject: Re: Plans" in preview.text and bob.address in preview.text
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent")
    [got] = await received(stack, bob)
    assert got.message["In-Reply-To"] == orig["Message-ID"]
    # a reply to another message of the bot is no answer to a letter
    await user.send("/start")
    menu = user.last()
    before = len(stack.submitted)
    await user.send("just text", reply_to=menu.message_id)
    assert "Subject:" not in user.last().text and len(stack.submitted) == before


async def test_forward_carries_the_attachments_and_a_telegram_photo(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob, erin = new_user(stack, "bob"), new_user(stack, "erin")
    user = await connected_user(bot_app, mail_user, 9104)
    pdf = secrets.token_bytes(70_000)
    sheet = b"a;b\r\n1;2\r\n\x00\xff" * 100
    orig = original(
        bob, [mail_user.address], subject="Re: Contract",
        attachments=[("договор.pdf", "application/pdf", pdf), ("table.csv", "text/csv", sheet)],
    )
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    await user.press("➡️ Forward", message_id=alert.message_id)
    await wait_text(user, "Whom should the letter go to?")
    await user.send("erin at example")
    assert "This is not an e-mail address: erin at example" in user.last().text
    await user.send(f"Erin <{erin.address}>")
    preview = user.last()
    assert "Subject: Fwd: Contract" in preview.text and f"To: Erin <{erin.address}>" in preview.text
    assert "договор.pdf" in preview.text and "(from the original)" in preview.text
    photo = secrets.token_bytes(30_000)
    await user.send_photo(photo, caption="See the photo too")
    preview = user.last()
    assert "3 attachments" in preview.text and "See the photo too" in preview.text
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent to")
    assert bot_app.fake.calls_of("getFile"), "the photo is downloaded through getFile"
    [got] = await received(stack, erin)
    msg = got.message
    assert msg["Subject"] == "Fwd: Contract" and msg["In-Reply-To"] is None
    files = {a.get_filename(): a.get_payload(decode=True) for a in msg.iter_attachments()}
    assert files["договор.pdf"] == pdf
    raw_csv = next(a for a in msg.iter_attachments() if a.get_filename() == "table.csv").get_payload(decode=True)
    assert raw_csv == sheet
    photo_part = next(a for a in msg.iter_attachments() if a.get_content_type() == "image/jpeg")
    assert photo_part.get_payload(decode=True) == photo
    plain, _ = parts(msg)
    assert plain.startswith("See the photo too\n-- \nBest regards\n\n---------- Forwarded message ----------\n")
    assert f"From: Bob Sender <{bob.address}>" in plain and "Subject: Re: Contract" in plain


async def test_refusals_are_explained(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    user = await connected_user(bot_app, mail_user, 9105)
    orig = original(bob, [mail_user.address, "ghost@example.org"], subject="Refusals")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    before = len(stack.submitted)
    # a recipient the server refuses (550 on RCPT): nothing sent, the address taken off
    await user.press("↩️ Reply all", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send("To everyone")
    await user.press("📤 Send", message_id=user.last().message_id)
    refused = await wait_text(user, "Nothing was sent. The mail server refused ghost@example.org")
    assert "550" in refused.text and len(stack.submitted) == before
    preview = user.last()
    assert "ghost@example.org" not in preview.text and bob.address in preview.text
    # not an address: said so, the draft stays
    await user.press("➕ Add recipients", message_id=preview.message_id)
    await user.send("<b>boss</b>@, ok@@example.org")
    assert "These are not e-mail addresses: <b>boss</b>@, ok@@example.org" in user.last().text
    # too large for the server (SIZE from EHLO), checked before anything is sent
    await user.send_document("big.bin", secrets.token_bytes(6000))
    preview = user.last()
    stack.smtp_size_limit = 5000
    try:
        await user.press("📤 Send", message_id=preview.message_id)
        big = await wait_text(user, "your mail server takes at most")
    finally:
        stack.smtp_size_limit = 32 * 1024 * 1024
    assert "4.9 KB" in big.text and len(stack.submitted) == before
    # a broken account: the Reconnect button
    async with bot_app.session() as s:
        await s.execute(update(Mailbox).where(Mailbox.user_id == 9105).values(state="broken"))
        await s.commit()
    await user.press("📤 Send", message_id=preview.message_id)
    broken = await wait_text(user, "has to be reconnected first")
    assert broken.labels == ["🔄 Reconnect"] and len(stack.submitted) == before


async def test_forged_and_foreign_letter_ids_are_refused(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    owner = await connected_user(bot_app, mail_user, 9106)
    orig = original(bob, [mail_user.address], subject="Private <i>matter</i>")
    await alert_for(bot_app, owner, stack, mail_user, orig)
    foreign = await letter_id(bot_app, orig["Message-ID"])
    other_box = new_user(stack, "other")
    stranger = await connected_user(bot_app, other_box, 9107)
    for mode in ("reply", "all", "fwd"):
        await stranger.press_data(ComposeCB(letter_id=foreign, mode=mode).pack(), stranger.last().message_id)
        assert stranger.last().text == "This letter is no longer in your mailbox."
    await stranger.press_data(ComposeCB(letter_id=2**62, mode="reply").pack(), stranger.last().message_id)
    assert stranger.last().text == "This letter is no longer in your mailbox."
    await stranger.press_data(ComposeCB(letter_id=foreign, mode="bogus").pack(), stranger.last().message_id)
    assert stranger.last().text == "This letter is no longer in your mailbox."
    answer = await stranger.press_data(DraftCB(draft="deadbeef", action="send").pack(), stranger.last().message_id)
    assert answer.text == "This draft is no longer open."
    assert not any("Private" in m.text for m in stranger.messages())


async def test_markup_in_subject_sender_and_text_is_escaped(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob = new_user(stack, "bob")
    user = await connected_user(bot_app, mail_user, 9108)
    orig = original(bob, [mail_user.address], subject="<b>Win</b> & <a href='x'>prize</a>", from_name="<i>Eve</i> & Co")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    await user.press("↩️ Reply", message_id=alert.message_id)
    await wait_text(user, "Write your answer to «Re: <b>Win</b> & <a href='x'>prize</a>»")
    await user.send("<script>alert(1)</script> & done", entities=[{"type": "italic", "offset": 0, "length": 8}])
    preview = user.last()
    assert "Subject: Re: <b>Win</b> & <a href='x'>prize</a>" in preview.text
    assert "<script>alert(1)</script> & done" in preview.text
    assert preview.html is not None and "&lt;b&gt;Win&lt;/b&gt;" in preview.html
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent to")
    [got] = await received(stack, bob)
    _plain, rich = parts(got.message)
    assert "<i>&lt;script&gt;</i>alert(1)&lt;/script&gt; &amp; done" in rich
    assert "&lt;i&gt;Eve&lt;/i&gt; &amp; Co" in rich and "<i>Eve</i>" not in rich


async def test_files_over_the_download_limit(harness: BotHarness, mail_user: MailUser) -> None:
    await harness.start(telegram_download_limit=10_000)
    stack = harness.stack
    bob = new_user(stack, "bob")
    user = await connected_user(harness, mail_user, 9109)
    alert = await alert_for(harness, user, stack, mail_user, original(bob, [mail_user.address], subject="Files"))
    await user.press("↩️ Reply", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send_document("scan.pdf", b"%PDF" + bytes(20_000), mime_type="application/pdf")
    assert "«scan.pdf» is 20 KB: bots can take files only up to 9.8 KB" in user.last().text
    # the Bot API itself refuses (a file bigger than its limit): said the same way, nothing sent
    await user.send_document("note.txt", b"hello", mime_type="text/plain")
    preview = user.last()
    assert "note.txt" in preview.text
    harness.fake.max_download_bytes = 3
    before = len(stack.submitted)
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "Telegram did not give the bot «note.txt»")
    assert len(stack.submitted) == before
    harness.fake.max_download_bytes = 20 * 1024 * 1024
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent to")
    [got] = await received(stack, bob)
    [att] = list(got.message.iter_attachments())
    assert att.get_filename() == "note.txt" and att.get_payload(decode=True) == b"hello"


@pytest.fixture
async def redis_prefix() -> Any:
    from redis.asyncio import Redis

    prefix = f"mbtest-compose-{secrets.token_hex(5)}"
    client = Redis.from_url(REDIS_URL)
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_draft_survives_a_restart_and_expires_after_a_day(
    harness: BotHarness, mail_user: MailUser, redis_prefix: str
) -> None:
    fleet = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    await harness.start(**fleet)
    stack = harness.stack
    bob = new_user(stack, "bob")
    user = await connected_user(harness, mail_user, 9110)
    alert = await alert_for(harness, user, stack, mail_user, original(bob, [mail_user.address], subject="Restart"))
    await user.press("↩️ Reply", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send("Written before the restart.")
    preview = user.last()
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        stored = [await client.get(key) async for key in client.scan_iter(match=f"{redis_prefix}:fsm:*:data")]
    finally:
        await client.aclose()
    assert any(b"Written before the restart." in (value or b"") for value in stored)
    assert not any(mail_user.password.encode() in (value or b"") for value in stored)  # never a secret
    await harness.stop()
    await harness.start(**fleet)  # a new process: dispatcher, app, everything but Redis and the database
    await user.press("📤 Send", message_id=preview.message_id)
    await wait_text(user, "✅ Sent to")
    [got] = await received(stack, bob)
    assert parts(got.message)[0].startswith("Written before the restart.")

    # a day later the draft is gone, with a note; nothing is sent
    clock = VirtualClock()
    harness.app.dispatcher["compose_clock"] = clock
    await user.press("↩️ Reply", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send("Too late.")
    preview = user.last()
    await clock.advance(23 * 3600)
    await user.press("✏️ Edit text", message_id=preview.message_id)
    assert "Send the new text" in user.last().text  # still open after 23 hours
    await clock.advance(2 * 3600)
    before = len(stack.submitted)
    await user.press("📤 Send", message_id=preview.message_id)
    expired = await wait_text(user, "was older than a day and has been discarded")
    assert "«Re: Restart»" in expired.text and len(stack.submitted) == before
    answer = await user.press("📤 Send", message_id=preview.message_id)
    assert answer.text == "This draft is no longer open."


async def test_from_an_opened_letter_edit_and_cancel(bot_app: BotHarness, mail_user: MailUser) -> None:
    stack = bot_app.stack
    bob, carol = new_user(stack, "bob"), new_user(stack, "carol")
    user = await connected_user(bot_app, mail_user, 9111)
    orig = original(bob, [mail_user.address], cc=[carol.address], subject="Opened")
    alert = await alert_for(bot_app, user, stack, mail_user, orig)
    await user.press("📖 Open", message_id=alert.message_id)
    opened = await wait_text(user, "First line of the original.")
    assert ["↩️ Reply", "↩️ Reply all", "➡️ Forward"] in [[b.text for b in row] for row in opened.buttons]
    await user.press("↩️ Reply all", message_id=opened.message_id)
    await wait_text(user, "Write your answer")
    await user.send("First try")
    first = user.last()
    assert f"Cc: {carol.address}" in first.text
    await user.press("✖️ Cancel", message_id=first.message_id)
    assert user.last().text == "The draft is discarded; nothing was sent."
    answer = await user.press("📤 Send", message_id=first.message_id)
    assert answer.text == "This draft is no longer open."
    # a reply to the opened letter's message starts an answer too; the text can be changed
    await user.send("Second try", reply_to=opened.message_id)
    preview = user.last()
    await user.press("✏️ Edit text", message_id=preview.message_id)
    await user.send("Final text")
    preview = user.last()
    assert "Final text" in preview.text and "Second try" not in preview.text
    assert carol.address not in preview.text  # a plain reply: the Cc is not kept
    for _ in range(2):  # added once, then already on the letter: not twice
        await user.press("➕ Add recipients", message_id=user.last().message_id)
        await user.send(f"{carol.address.upper()}")
        preview = user.last()
        assert preview.text.lower().count(carol.address) == 1
        assert f"To: Bob Sender <{bob.address}>, " in preview.text
    await user.send("/cancel")
    assert user.last().text == "The draft is discarded; nothing was sent."
    await user.send("Not a letter any more")
    assert "Your letter" not in user.last().text
    assert not [m for m in stack.submitted if m.mail_from == mail_user.address]


async def test_reply_from_an_oauth2_account(harness: BotHarness, mail_user: MailUser, mail_stack: MailStack) -> None:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    await harness.start(public_url=public_url, web_port=port, admin_ids=[ADMIN])
    await harness.user(ADMIN).send("/oauth_flag on")
    world = World(harness, oauth, public_url)
    await world.company("acme-compose", "Acme Compose")
    await world.configure("acme-compose")
    user = harness.user(9112)
    await to_password_step(user, "Acme Compose", mail_user.address)
    page = await ScriptedBrowser().sign_in(await authorize(user, "Acme Compose"), mail_user.address, mail_user.password)
    assert page.status == 200
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None and box.auth_kind == "oauth2"
    bob = new_user(mail_stack, "bob")
    alert = await alert_for(harness, user, mail_stack, mail_user, original(bob, [mail_user.address], subject="OAuth"))
    await user.press("↩️ Reply", message_id=alert.message_id)
    await wait_text(user, "Write your answer")
    await user.send("Answered with a token")
    await user.press("📤 Send", message_id=user.last().message_id)
    await wait_text(user, "✅ Sent to")
    sub = mail_stack.submitted[-1]
    assert sub.login == mail_user.address and sub.mechanism == "OAUTHBEARER"
    [got] = await received(mail_stack, bob)
    assert got.message["In-Reply-To"] == "<" + got.message["In-Reply-To"].strip("<>") + ">"
    assert parts(got.message)[0].startswith("Answered with a token\n-- \nSent via OAuth")
    assert len(await received(mail_stack, mail_user, folder="Sent")) == 1


async def test_the_api_shares_the_size_check(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    """The business-process API sends through the same path: a letter over the server's SIZE
    is refused before anything goes out."""
    await api.employee(9113, mail_user)
    to = new_user(mail_stack)
    before = len(mail_stack.submitted)
    mail_stack.smtp_size_limit = 2000
    try:
        status, data = await api.send({"user_id": 9113, "to": [to.address], "text": "x" * 5000})
    finally:
        mail_stack.smtp_size_limit = 32 * 1024 * 1024
    assert status == 502, data
    code, _fields = error_of(data)
    assert code == "smtp_rejected" and "SIZE limit of 2000" in data["error"]["message"]
    assert len(mail_stack.submitted) == before and await mails(mail_stack, to) == []
