"""Reading letters from a real Dovecot (mail.reader) and rendering them for Telegram
(bot.letter_view): every chunk must pass the fake Bot API's HTML parser and fit 4096."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio

from bot.i18n import Catalog, Translator
from bot.letter_view import MAX_MESSAGE, render_alert, render_letter, utf16_len
from mail import mime
from mail.html2text import html_to_text, tidy_text, unflow
from mail.imap import close_imap, open_imap
from mail.importer import import_recent
from mail.netguard import HostGuard
from mail.reader import (
    AttachmentGone,
    AttachmentInfo,
    AttachmentTooLarge,
    FullLetter,
    fetch_attachment,
    fetch_letter,
)
from mail.tls import make_ssl_context
from mail.types import Credentials, LetterSummary, Security, ServerSettings
from tests.corpus import BIG_SIZE, CORPUS, CSV_DATA, SMALL_DATA, big_attachment
from tests.harness.fake_telegram import parse_html
from tests.harness.mailstack import MailStack

CATALOG = Catalog()
EN: Translator = CATALOG.get("en")
RU: Translator = CATALOG.get("ru")


def visible(chunk: str) -> str:
    text, _entities = parse_html(chunk)  # raises on anything Telegram would refuse
    return text


def check_chunks(chunks: list[str]) -> list[str]:
    """Every chunk is valid Telegram HTML, not blank, and at most 4096 visible characters."""
    assert chunks
    texts = []
    for chunk in chunks:
        text = visible(chunk)
        assert text.strip(), chunk[:200]
        assert utf16_len(text) <= MAX_MESSAGE, utf16_len(text)
        texts.append(text)
    return texts


# --------------------------------------------------------------------------- IMAP fixtures
@dataclass
class Box:
    stack: MailStack
    address: str
    password: str
    server: ServerSettings

    async def client(self) -> Any:
        return await open_imap(
            self.server,
            Credentials(self.address, password=self.password),
            ssl_context=make_ssl_context(str(self.stack.ca_file)),
            guard=HostGuard(allow_private=True),
            timeout=10,
        )


async def new_box(stack: MailStack, letters: list[bytes]) -> Box:
    box = Box(
        stack,
        f"r{uuid.uuid4().hex[:8]}@example.org",
        secrets.token_urlsafe(12),
        ServerSettings(stack.host, stack.imap_ssl_port, Security.SSL),
    )
    stack.add_user(box.address, box.password)
    for raw in letters:
        await stack.deliver(box.address, raw)
    return box


@dataclass
class Corpus:
    box: Box
    client: Any
    uids: dict[str, int]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def corpus(mail_stack: MailStack) -> AsyncIterator[Corpus]:
    names = list(CORPUS)
    box = await new_box(mail_stack, [CORPUS[name].raw for name in names])
    assert mail_stack.mailbox_uids(box.address) == list(range(1, len(names) + 1))
    client = await box.client()
    try:
        yield Corpus(box, client, {name: n for n, name in enumerate(names, 1)})
    finally:
        await close_imap(client)


async def logged_out_line(stack: MailStack, address: str, offset: int) -> str:
    """Dovecot's 'Logged out in=... out=...' line of the next session of ``address`` to end."""
    for _ in range(100):
        with open(stack.log_file, "rb") as fh:
            fh.seek(offset)
            tail = fh.read().decode("utf-8", "replace")
        for line in tail.splitlines():
            if f"imap({address})" in line and "Logged out" in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError("no logout line in Dovecot's log")


def sent_bytes(line: str) -> int:
    m = re.search(r"\bout=(\d+)", line)
    assert m, line
    return int(m.group(1))


# --------------------------------------------------------------------------- the corpus
@pytest.mark.parametrize("name", list(CORPUS))
async def test_corpus_letter_reads_and_renders(corpus: Corpus, name: str) -> None:
    sample = CORPUS[name]
    letter = await fetch_letter(corpus.client, corpus.uids[name])
    assert letter is not None
    if sample.subject is not None:
        assert letter.subject == sample.subject
    if sample.from_name is not None:
        assert letter.from_name == sample.from_name
    if sample.from_addr is not None:
        assert letter.from_addr == sample.from_addr
    if sample.text is not None:
        assert letter.text == sample.text
    for fragment in sample.text_has:
        assert fragment in letter.text, (fragment, letter.text)
    for fragment in sample.text_lacks:
        assert fragment not in letter.text, (fragment, letter.text)
    if sample.attachments is not None:
        assert [(a.filename, a.content_type) for a in letter.attachments] == sample.attachments
    assert letter.truncated is sample.truncated
    assert "\ufffd" not in letter.text + letter.subject + letter.from_name

    for t in (EN, RU):
        texts = check_chunks(render_letter(t, letter))
        joined = "".join(texts)
        assert letter.text in joined  # nothing of the text lost, nothing changed
        for item in letter.attachments:
            assert item.filename in joined


async def test_importer_and_reader_agree_on_every_letter(corpus: Corpus) -> None:
    """One BODYSTRUCTURE walk: the paper-clip in the list (importer) and the attachment list of
    the open letter (reader) never disagree, and the snippet is taken from the text shown."""
    client = await corpus.box.client()
    try:
        result = await import_recent(client, limit=len(CORPUS))
    finally:
        await close_imap(client)
    by_uid = {letter.uid: letter for letter in result.letters}
    assert set(by_uid) == set(corpus.uids.values())
    for name, uid in corpus.uids.items():
        letter = await fetch_letter(corpus.client, uid, mark_seen=False)
        assert letter is not None
        summary = by_uid[uid]
        assert summary.has_attachments == bool(letter.attachments), name
        if letter.text.strip() and name not in ("blank_plain", "long_subject"):
            first_words = mime.make_snippet(letter.text, 20).rstrip("…").split()[:2]
            assert first_words and summary.snippet.startswith(" ".join(first_words)), (
                name,
                summary.snippet,
                letter.text[:80],
            )


async def test_nested_letter_details(corpus: Corpus) -> None:
    letter = await fetch_letter(corpus.client, corpus.uids["nested"])
    assert letter is not None
    assert letter.to == "a@example.org, B, Person <b@example.org>"
    assert letter.cc == "c@example.org"
    assert letter.date == datetime(2025, 6, 3, 10, 0, tzinfo=timezone(timedelta(hours=3)))
    (pdf,) = letter.attachments
    assert pdf.part == "2" and pdf.size == 9  # 12 base64 characters
    head = visible(render_letter(EN, letter)[0])
    assert head.startswith("From: Иван Петров <ivan@example.ru>\nTo: a@example.org")
    assert "Date: 03.06.2025 10:00 UTC+3" in head
    assert "1. report.pdf — 9 B" in head


async def test_markup_in_mail_stays_text(corpus: Corpus) -> None:
    letter = await fetch_letter(corpus.client, corpus.uids["injection"])
    assert letter is not None
    (chunk,) = render_letter(EN, letter)
    text, entities = parse_html(chunk)
    assert '<b>Boss</b> </code> & <a href="http://x"> <boss@example.com>' in text
    assert '</code><b>Pay</b> & <a href="http://evil.example">now</a> &amp;' in text
    assert "<tg-spoiler>x</tg-spoiler> <pre>" in text
    # the only entities are the template's own bold labels
    assert {e["type"] for e in entities} == {"bold"}
    alert = render_alert(EN, summary_of(letter))
    text, entities = parse_html(alert)
    assert "<b>Boss</b>" in text and "</code><b>Pay</b>" in text
    assert {e["type"] for e in entities} == {"bold"}


async def test_long_subject_is_shortened(corpus: Corpus) -> None:
    letter = await fetch_letter(corpus.client, corpus.uids["long_subject"])
    assert letter is not None
    assert letter.subject.startswith("Очень длинная тема Очень") and letter.subject.endswith("…")
    chunks = render_letter(EN, letter)
    (head,) = check_chunks(chunks)
    subject_line = next(line for line in head.splitlines() if line.startswith("Subject: "))
    assert len(subject_line) < 520 and subject_line.endswith("…")
    assert len(render_alert(EN, summary_of(letter))) < 400


async def test_long_body_is_split_without_loss(corpus: Corpus) -> None:
    letter = await fetch_letter(corpus.client, corpus.uids["long_body"])
    assert letter is not None and len(letter.text) == 30_000
    chunks = render_letter(EN, letter)
    texts = check_chunks(chunks)
    assert 8 <= len(chunks) <= 10
    assert letter.text in "".join(texts)
    # cuts fall on line ends: every chunk after the first starts a line of the letter
    for text in texts[1:]:
        assert text.startswith(("Line ", "\n"))


async def test_gone_uid_reads_as_none(corpus: Corpus) -> None:
    assert await fetch_letter(corpus.client, 999_999) is None
    with pytest.raises(AttachmentGone):
        await fetch_attachment(corpus.client, 999_999, "2", max_bytes=1000)


async def test_opening_a_letter_marks_it_seen(corpus: Corpus) -> None:
    uid = corpus.uids["koi8r"]
    client = corpus.client
    await client.select("INBOX")
    response = await client.uid("store", str(uid), "-FLAGS.SILENT", r"(\Seen)")
    assert response.result == "OK"
    assert not await is_seen(client, uid)
    assert await fetch_letter(client, uid, mark_seen=False) is not None
    assert not await is_seen(client, uid)
    assert await fetch_letter(client, uid) is not None
    assert await is_seen(client, uid)


async def is_seen(client: Any, uid: int) -> bool:
    await client.select("INBOX")
    response = await client.uid("fetch", str(uid), "(FLAGS)")
    return b"\\Seen" in b" ".join(x for x in response.lines if isinstance(x, bytes))


async def test_small_attachments_come_back_exactly(corpus: Corpus) -> None:
    uid = corpus.uids["small_attachment"]
    letter = await fetch_letter(corpus.client, uid)
    assert letter is not None
    data_info, csv_info = letter.attachments
    assert data_info.size == len(SMALL_DATA)  # exact: BINARY.SIZE
    assert csv_info.size == len(CSV_DATA)
    info, data = await fetch_attachment(corpus.client, uid, data_info.part, max_bytes=1 << 20)
    assert data == SMALL_DATA
    assert info == AttachmentInfo(
        data_info.part, "data.bin", "application/octet-stream", len(SMALL_DATA)
    )
    info, data = await fetch_attachment(corpus.client, uid, csv_info.part, max_bytes=1 << 20)
    assert data == CSV_DATA and info.filename == "table.csv"
    with pytest.raises(AttachmentTooLarge) as err:
        await fetch_attachment(corpus.client, uid, data_info.part, max_bytes=5000)
    assert err.value.info.size == len(SMALL_DATA) and err.value.info.filename == "data.bin"
    for bad in ("9", "2.7", "1.1.1", "2]", "2 BODY[]", "", "0", "-1"):
        with pytest.raises(AttachmentGone):
            await fetch_attachment(corpus.client, uid, bad, max_bytes=1000)


async def test_rfc2231_names_download(corpus: Corpus) -> None:
    uid = corpus.uids["rfc2231"]
    letter = await fetch_letter(corpus.client, uid)
    assert letter is not None
    info, data = await fetch_attachment(corpus.client, uid, "3", max_bytes=1000)
    assert info.filename == "длинное.txt"
    assert data == b"long name, RFC 2231 continuations"
    info, data = await fetch_attachment(corpus.client, uid, "2", max_bytes=1000)
    assert info.filename == "отчёт.pdf" and data == b"%PDF-1.4\n"


async def test_broken_attachment_encoding_never_raises(corpus: Corpus) -> None:
    uid = corpus.uids["broken_base64"]
    letter = await fetch_letter(corpus.client, uid)
    assert letter is not None
    (junk,) = letter.attachments
    info, data = await fetch_attachment(corpus.client, uid, junk.part, max_bytes=1000)
    assert info.filename == "junk.bin" and isinstance(data, bytes)


async def test_text_budget_truncates(corpus: Corpus) -> None:
    letter = await fetch_letter(corpus.client, corpus.uids["long_body"], max_text_bytes=1000)
    assert letter is not None and letter.truncated
    assert 500 < len(letter.text) <= 1000
    assert CORPUS["long_body"].text is not None
    assert CORPUS["long_body"].text.startswith(letter.text)
    chunks = render_letter(EN, letter)
    assert "The letter goes on" in visible(chunks[-1])


@pytest.mark.timeout(60)
async def test_big_attachment_is_listed_not_downloaded(mail_stack: MailStack) -> None:
    box = await new_box(mail_stack, [big_attachment()])
    offset = mail_stack.log_file.stat().st_size
    client = await box.client()
    try:
        started = time.monotonic()
        letter = await fetch_letter(client, 1)
        elapsed = time.monotonic() - started
        assert letter is not None and letter.text == "The file is attached."
        (big,) = letter.attachments
        assert big.filename == "big.bin" and big.size == BIG_SIZE
        with pytest.raises(AttachmentTooLarge) as err:
            await fetch_attachment(client, 1, big.part, max_bytes=BIG_SIZE - 1)
        assert err.value.info.size == BIG_SIZE
    finally:
        await close_imap(client)
    # Dovecot counts what it sent in that session: a few KB, not 13 MB of base64
    line = await logged_out_line(mail_stack, box.address, offset)
    assert sent_bytes(line) < 64_000, line
    # ~0.05 s; the byte count above is what proves the file was not fetched, this only that
    # nothing waited (a command near its 30 s timeout)
    assert elapsed < 10
    (chunk,) = render_letter(EN, letter)
    assert "big.bin — 10 MB" in visible(chunk)


# --------------------------------------------------------------------------- rendering only
def make_letter(**changes: Any) -> FullLetter:
    base: dict[str, Any] = {
        "uid": 7,
        "from_name": "Anna",
        "from_addr": "anna@example.org",
        "to": "you@example.org",
        "cc": "",
        "date": datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
        "subject": "Hello",
        "text": "Hi!",
        "attachments": [],
        "truncated": False,
    }
    base.update(changes)
    return FullLetter(**base)


def summary_of(letter: FullLetter) -> LetterSummary:
    return LetterSummary(
        uid=letter.uid,
        message_id=None,
        from_name=letter.from_name,
        from_addr=letter.from_addr,
        to=letter.to,
        subject=letter.subject,
        date=letter.date,
        snippet="",
        has_attachments=bool(letter.attachments),
    )


def test_render_simple_letter_in_both_languages() -> None:
    (en,) = render_letter(EN, make_letter())
    assert visible(en) == (
        "From: Anna <anna@example.org>\nTo: you@example.org\nDate: 02.01.2025 03:04 UTC\n"
        "Subject: Hello\n\nHi!"
    )
    (ru,) = render_letter(RU, make_letter(subject="", text="", from_name="", date=None))
    assert visible(ru) == (
        "От: anna@example.org\nКому: you@example.org\nТема: (без темы)\n\nВ письме нет текста."
    )


@pytest.mark.parametrize(
    "text",
    [
        "x" * 30_000,  # no place to cut at all
        ("word " * 9000).strip(),
        "\n".join(["a" * 5000] * 6),
        "&<>" * 10_000,  # escaping triples the markup, not the visible length
        "😀" * 5000,  # astral characters count twice in UTF-16
        "e\u0301" * 6000,  # combining accents stay with their letter
        ("para " * 100 + "\n\n") * 120,
        "  \n" * 3 + "text" + " " * 5000 + "end",
    ],
    ids=["no-breaks", "words", "long-lines", "escapes", "emoji", "combining", "paras", "spaces"],
)
def test_split_never_loses_text_or_breaks_markup(text: str) -> None:
    chunks = render_letter(EN, make_letter(text=text), max_body_chunks=100)
    texts = check_chunks(chunks)
    assert text.strip("\n") in "".join(texts)
    for chunk in chunks:
        assert not chunk.startswith("\u0301")


def test_very_long_text_is_cut_with_a_note() -> None:
    text = ("A paragraph of text. " * 50 + "\n\n") * 200  # ~210 000 characters
    chunks = render_letter(EN, make_letter(text=text))
    texts = check_chunks(chunks)
    assert len(chunks) <= 11
    assert "The letter goes on" in texts[-1]


def test_attachment_list_sizes_and_too_large_note() -> None:
    attachments = [
        AttachmentInfo("2", "small.txt", "text/plain", 512),
        AttachmentInfo("3", "photo <1>.jpg", "image/jpeg", 3_500_000),
        AttachmentInfo("4", "film.mkv", "video/x-matroska", 60 * 1024 * 1024),
        AttachmentInfo("5", "huge.iso", "application/x-iso9660-image", 3 * 1024**3),
    ]
    (chunk,) = render_letter(EN, make_letter(attachments=attachments))
    text = visible(chunk)
    assert "📎 4 attachments" in text
    assert "1. small.txt — 512 B" in text
    assert "2. photo <1>.jpg — 3.3 MB" in text
    assert "3. film.mkv — 60 MB ⚠️ too large to send here" in text
    assert "files up to 50 MB" in text
    assert "4. huge.iso — 3.0 GB ⚠️" in text
    (ru,) = render_letter(RU, make_letter(attachments=attachments))
    assert "2. photo <1>.jpg — 3,3 МБ" in visible(ru)
    assert "слишком большой" in visible(ru) and "📎 4 вложения" in visible(ru)


def test_many_attachments_are_chunked_and_capped() -> None:
    attachments = [
        AttachmentInfo(str(n), f"{'файл' * 40}-{n}.pdf", "application/pdf", n * 1000)
        for n in range(2, 120)
    ]
    chunks = render_letter(EN, make_letter(attachments=attachments))
    texts = check_chunks(chunks)
    joined = "\n".join(texts)
    assert "50. " in joined and "51. " not in joined
    assert "… and 68 more attachments" in joined


def test_header_values_are_bounded() -> None:
    letter = make_letter(
        from_name="N" * 5000,
        from_addr="a" * 5000 + "@example.org",
        to=", ".join(f"user{n}@example.org" for n in range(1000)),
        cc=", ".join(f"copy{n}@example.org" for n in range(1000)),
        subject="S " * 25_000,
    )
    chunks = render_letter(EN, letter)
    texts = check_chunks(chunks)
    assert texts[0].startswith("From: NNN")
    assert "Hi!" in "".join(texts)


def test_alert() -> None:
    summary = summary_of(make_letter(from_name="Анна & Co", subject="Счёт <№5>"))
    text, entities = parse_html(render_alert(RU, summary))
    assert text == "📩 Новое письмо\nОт: Анна & Co <anna@example.org>\nТема: Счёт <№5>"
    assert entities == [{"offset": 3, "length": 12, "type": "bold"}]
    bare = summary_of(make_letter(from_name="", from_addr="", subject=""))
    text, _ = parse_html(render_alert(EN, bare))
    assert text == "📩 New letter\nFrom: (unknown sender)\nSubject: (no subject)"


# --------------------------------------------------------------------------- text helpers
def test_html_to_text_layout() -> None:
    markup = (
        "<p>One\n   two</p><p>Three<br>four</p><ul><li>a</li><li>b</li></ul>"
        "<pre>  keep\n    this</pre><a href='javascript:x()'>js</a> "
        "<a href='https://x.example'>https://x.example</a> <img alt='Logo'>"
    )
    assert html_to_text(markup) == (
        "One two\n\nThree\nfour\n\n• a\n• b\n\n  keep\n    this\n\njs https://x.example Logo"
    )
    assert html_to_text("<style>p{}</style><script>x</script><p>ok") == "ok"
    assert html_to_text("") == ""


def test_tidy_and_unflow() -> None:
    assert tidy_text("\r\n\r\na  \r\n\r\n\r\n\r\nb\x07\tc\r\n\n") == "a\n\nb\tc"
    assert unflow("one \ntwo\n> q \n> r\n") == "one two\n> q r\n"
    assert unflow("del\nsp \nyes", delsp=True) == "del\nspyes"
