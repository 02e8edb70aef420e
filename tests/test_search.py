"""Search: the query language (mail.search), and /search end to end against the real Dovecot
(Cyrillic letters), a scripted server that refuses UTF-8 (BADCHARSET) or stops answering, and
ugly input."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from bot.callbacks import LetterCB, SearchCB
from mail.search import MAX_QUERY_CHARS, MAX_TERMS, Query, QueryError, criteria, parse_query
from storage.models import Letter, Mailbox
from tests.harness.plugin_app import BotHarness
from tests.harness.scripted_servers import ScriptedImapServer, closed_port
from tests.test_connect_wizard import stored_mailbox
from tests.test_live_mailbox import alerts, connected_user


def mail(to: str, subject: str, body: str, sender: str = "Анна Петрова <anna@example.ru>") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


# --------------------------------------------------------------------------- the query
def test_words_phrases_and_prefixes() -> None:
    q = parse_query('счёт  "отчёт за март" from:anna subject:"Q1 plan" от:Пётр тема:встреча re:hello')
    assert q.words == ("счёт", "отчёт за март", "re:hello")
    assert q.senders == ("anna", "Пётр")
    assert q.subjects == ("Q1 plan", "встреча")
    assert not q.ascii
    assert q.text() == 'счёт "отчёт за март" re:hello from:anna from:Пётр subject:"Q1 plan" subject:встреча'
    assert parse_query("«отчёт за март»").words == ("отчёт за март",)
    assert parse_query('"unclosed phrase').words == ("unclosed phrase",)
    assert parse_query("line\nbreak\ttab").words == ("line", "break", "tab")
    assert parse_query("invoice").ascii


def test_criteria_quote_the_words() -> None:
    keys = criteria(Query(words=('a"b\\c',), senders=("anna",), subjects=("Q1 plan",)))
    assert keys == [
        "OR", "OR", "FROM", '"a\\"b\\\\c"', "SUBJECT", '"a\\"b\\\\c"', "BODY", '"a\\"b\\\\c"',
        "FROM", '"anna"', "SUBJECT", '"Q1 plan"',
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ('"" from:""', "empty"),
        ("x" * 5000, "too_long"),
        ("a" * (MAX_QUERY_CHARS + 1), "too_long"),
        ("abc\x00def", "control"),
        ("\x1b[31mred", "control"),
        ("a\u2028b", "control"),
        (" ".join(["w"] * (MAX_TERMS + 1)), "too_many"),
    ],
)
def test_queries_that_cannot_be_searched(raw: str, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(raw)
    assert caught.value.reason == reason


# --------------------------------------------------------------------------- real Dovecot
async def deliver_cyrillic(h: BotHarness, address: str) -> None:
    await h.stack.deliver(address, mail(address, "Счёт за март", "Оплатите до пятницы.", "Бухгалтерия <buh@firm.example>"))
    await h.stack.deliver(address, mail(address, "Отпуск", "В июле я в отпуске, СЧЁТ пришлю позже."))
    await h.stack.deliver(address, mail(address, "Report", "Nothing to see here.", "Bob <bob@example.net>"))
    await h.stack.deliver(address, mail(address, "Встреча <в 15:00> & обед", "Приходите.", "Счётная палата <sp@example.ru>"))


async def test_cyrillic_search_over_sender_subject_and_text(bot_app: BotHarness, mail_user: Any) -> None:
    await deliver_cyrillic(bot_app, mail_user.address)
    user = await connected_user(bot_app, mail_user, 6701)
    await user.send("/search счёт")
    page = user.last()
    assert "letters 1–3 of 3" in page.text
    # newest first: the sender, the text (other case), the subject
    assert page.text.index("Встреча") < page.text.index("Отпуск") < page.text.index("Счёт за март")
    assert "Report" not in page.text
    assert "&lt;в 15:00&gt; &amp; обед" in (page.html or "")

    await user.send("/search from:анна")
    assert "letters 1–1 of 1" in user.last().text and "Отпуск" in user.last().text
    await user.send('/search subject:"за март"')
    assert "letters 1–1 of 1" in user.last().text and "Счёт за март" in user.last().text
    await user.send("/search счёт from:бухгалтерия")
    assert "Счёт за март" in user.last().text and "Отпуск" not in user.last().text
    await user.send("/search nothing-like-this")
    assert "Nothing found for nothing-like-this" in user.last().text

    await user.send("/search обед")
    await user.press("1. Встреча <в 15:00> & обед")
    await user.wait_for_text("Приходите.")


async def test_results_page_and_old_letters_get_rows_that_open(
    harness: BotHarness, mail_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(12):
        await harness.stack.deliver(mail_user.address, mail(mail_user.address, f"Отчёт номер {n}", f"Текст отчёта {n}."))
    await harness.stack.deliver(mail_user.address, mail(mail_user.address, "Другое", "Не то."))
    await harness.start(import_limit=2)
    user = await connected_user(harness, mail_user, 6702)
    box = await stored_mailbox(harness, user.id)
    assert box is not None
    async with harness.session() as s:
        assert len((await s.execute(select(Letter).where(Letter.mailbox_id == box.id))).scalars().all()) == 2

    await user.send("/inbox")
    await user.press("🔎 Search")
    assert "Send the words" in user.last().text
    await user.send("отчёт")
    first = user.last()
    assert "letters 1–8 of 12" in first.text
    assert first.text.index("Отчёт номер 11") < first.text.index("Отчёт номер 4")
    await user.press("Older ➡️")
    second = user.last()
    assert "letters 9–12 of 12" in second.text and "Отчёт номер 0" in second.text
    await user.press("12. Отчёт номер 0")
    await user.wait_for_text("Текст отчёта 0.")
    await user.press("⬅️ Newer", message_id=second.message_id)
    assert "letters 1–8 of 12" in user.message(second.message_id).text  # the page is edited in place
    # the same page again (an old button): nothing to change, no error
    newest = user.last().message_id
    sid = next(SearchCB.unpack(b.callback_data) for row in user.message(second.message_id).buttons for b in row
               if b.callback_data and b.callback_data.startswith("sr:page")).sid
    answer = await user.press_data(SearchCB(action="page", sid=sid, page=0).pack(), second.message_id)
    assert answer.answered and not answer.show_alert
    assert user.last().message_id == newest and "letters 1–8 of 12" in user.message(second.message_id).text
    assert not [r for r in caplog.records if r.name == "handlers.fallback" and "failed" in r.getMessage()]

    async with harness.session() as s:
        rows = (await s.execute(select(Letter).where(Letter.mailbox_id == box.id))).scalars().all()
    assert sorted(r.subject for r in rows if r.subject.startswith("Отчёт")) == sorted(f"Отчёт номер {n}" for n in range(12))
    assert all(r.alerted and r.alert_state == "skipped" for r in rows)
    assert alerts(harness, user) == []  # a search never alerts
    # the same search again stores nothing twice
    await user.send("/search отчёт")
    async with harness.session() as s:
        again = (await s.execute(select(Letter).where(Letter.mailbox_id == box.id))).scalars().all()
    assert len(again) == len(rows)


async def test_ugly_queries_get_clear_answers_and_the_user_stays(bot_app: BotHarness, mail_user: Any) -> None:
    await deliver_cyrillic(bot_app, mail_user.address)
    user = await connected_user(bot_app, mail_user, 6703)
    await user.send("/search")
    assert "Send the words" in user.last().text
    await user.send("x" * 5000)
    assert "at most 200 characters" in user.last().text
    await user.send("abc\x07def")
    assert "control characters" in user.last().text
    await user.send('""')
    assert "at least one word" in user.last().text
    await user.send("<b>bold</b> & <a href='x'>")  # still asked: this is the search
    reply = user.last()
    assert "Nothing found for" in reply.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in (reply.html or "") and "<a href" not in (reply.html or "")
    await user.send("счёт")  # the question was answered: plain text is not a search any more
    assert "I don't know that command" in user.last().text

    await user.send("/search")
    await user.press("✖️ Cancel")
    assert "Search cancelled" in user.last().text


async def test_another_users_buttons_open_nothing(bot_app: BotHarness, mail_user: Any) -> None:
    await deliver_cyrillic(bot_app, mail_user.address)
    owner = await connected_user(bot_app, mail_user, 6704)
    await owner.send("/search счёт")
    page = owner.last()
    sid = next(SearchCB.unpack(b.callback_data) for row in page.buttons for b in row
               if b.callback_data and b.callback_data.startswith("sr:")).sid
    letter_data = page.button(next(label for label in page.labels if label.startswith("1. "))).callback_data
    assert letter_data is not None

    gone = bot_app.app.catalog.get("en")("read.gone")
    other = bot_app.user(6705)
    await other.send("/start")
    own = other.last().message_id
    answer = await other.press_data(SearchCB(action="page", sid=sid or "AAAAAAAA", page=1).pack(), own)
    assert answer.show_alert and "This search is over" in (answer.text or "")
    answer = await other.press_data(letter_data, own)
    assert answer.show_alert and answer.text == gone
    assert not any("Оплатите" in m.text or "СЧЁТ" in m.text for m in other.messages())
    # forged ids: a letter id that is not theirs, junk callback data
    answer = await other.press_data(LetterCB(letter_id=2**62).pack(), own)
    assert answer.show_alert


async def test_search_without_a_mailbox(bot_app: BotHarness) -> None:
    user = bot_app.user(6706)
    await user.send("/search счёт")
    assert "No mailbox is connected" in user.last().text


# --------------------------------------------------------------------------- scripted servers
async def point_imap_at(h: BotHarness, user_id: int, port: int) -> None:
    async with h.session() as s:
        box = (await s.execute(select(Mailbox).where(Mailbox.user_id == user_id))).scalar_one()
        box.imap_host, box.imap_port, box.imap_security = "localhost", port, "ssl"
        await s.commit()


def badcharset(args: str) -> tuple[list[str], str]:
    if args.upper().startswith("CHARSET"):
        return [], "NO [BADCHARSET (US-ASCII)] The specified charset is not supported"
    return ["* SEARCH"], "OK Search completed"


async def test_server_without_utf8_search_falls_back(bot_app: BotHarness, mail_user: Any) -> None:
    await deliver_cyrillic(bot_app, mail_user.address)
    user = await connected_user(bot_app, mail_user, 6707)
    async with ScriptedImapServer(tls=bot_app.stack.server_ssl_context(), search=badcharset) as imap:
        await imap.start()
        await point_imap_at(bot_app, user.id, imap.port)
        # Cyrillic: the server can't; the stored letters are searched (sender, subject, text start)
        await user.send("/search счёт")
        page = user.last()
        assert "letters 1–3 of 3" in page.text
        assert "only the letters the bot has stored were searched" in page.text
        assert "Report" not in page.text
        # ASCII: searched again on the server without CHARSET
        await user.send("/search report")
        reply = user.last()
        assert "Nothing found for report" in reply.text and "searched in plain ASCII" in reply.text
        searches = [line for line in imap.received if b" SEARCH " in line.upper()]
        assert any(b"CHARSET UTF-8" in line.upper() and "счёт".encode() in line for line in searches)
        assert any(b"CHARSET" not in line.upper() and b'"report"' in line for line in searches)


async def test_a_server_that_refuses_or_hangs_or_is_gone(harness: BotHarness, mail_user: Any) -> None:
    await harness.start(mail_timeout=1.5)
    user = await connected_user(harness, mail_user, 6708)
    refusing = ScriptedImapServer(
        tls=harness.stack.server_ssl_context(),
        search=lambda args: ([], "NO [SERVERBUG] Internal error occurred. Refer to server log for more information."),
    )
    async with refusing:
        await refusing.start()
        await point_imap_at(harness, user.id, refusing.port)
        await user.send("/search invoice")
        assert "refused the search" in user.last().text and "Internal error occurred" in user.last().text
    hanging = ScriptedImapServer(tls=harness.stack.server_ssl_context(), hang_on=frozenset({"SEARCH"}))
    async with hanging:
        await hanging.start()
        await point_imap_at(harness, user.id, hanging.port)
        await user.send("/search invoice", timeout=10)
        assert "did not answer the search in time" in user.last().text
    await point_imap_at(harness, user.id, closed_port())
    await user.send("/search invoice")
    assert "Could not reach the mailbox to search" in user.last().text
