"""The business-process API end to end: the real bot (build_app) serving /api/v1 on its one web
server, employees connected through the chat wizard, letters sent through the test SMTP server,
delivered by Dovecot and read back over IMAP; the Sent folder, the Letter row, item links that
survive account deletion; every error code."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import imaplib
import logging
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from services.mailboxes import MailboxService
from storage.models import ItemLink, Letter, Mailbox
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import connect

TOKEN = "proc-" + secrets.token_urlsafe(24)
TOKEN2 = "rotated-" + secrets.token_urlsafe(24)
SEND = "/api/v1/mail/send"


@dataclass
class Fetched:
    uid: int
    flags: bytes
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def _fetch_sync(stack: MailStack, user: MailUser, folder: str) -> list[Fetched]:
    with imaplib.IMAP4_SSL("localhost", stack.imap_ssl_port, ssl_context=stack.client_ssl_context()) as imap:
        imap.login(user.address, user.password)
        typ, _ = imap.select(f'"{folder}"', readonly=True)
        assert typ == "OK", folder
        _, data = imap.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(FLAGS RFC822)")
            head, raw = parts[0]  # type: ignore[misc]
            out.append(Fetched(int(uid), head, raw))
        return out


async def mails(stack: MailStack, user: MailUser, folder: str = "INBOX") -> list[Fetched]:
    return await asyncio.to_thread(_fetch_sync, stack, user, folder)


def new_user(stack: MailStack, prefix: str = "r") -> MailUser:
    user = MailUser(f"{prefix}{uuid.uuid4().hex[:8]}@example.org", secrets.token_urlsafe(12))
    stack.add_user(user.address, user.password)
    return user


class Api:
    def __init__(self, h: BotHarness) -> None:
        self.h = h
        self.http = aiohttp.ClientSession()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.h.app.extra['web'].port}"

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN, raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": hdrs}
        if raw is not None:
            kwargs["data"] = raw
            hdrs.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                data: Any = await resp.json(content_type=None) if text else None
            except ValueError:
                data = text
            self.last_headers = resp.headers
            return resp.status, data

    async def send(self, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        return await self.call("POST", SEND, body, **kw)

    async def employee(self, user_id: int, mail_user: MailUser, **kw: Any) -> Mailbox:
        user = self.h.user(user_id)
        await connect(self.h, user, service="Gmail", email=mail_user.address, password=mail_user.password, **kw)
        async with self.h.session() as s:
            box = (await s.execute(select(Mailbox).where(Mailbox.user_id == user_id))).scalar_one()
        return box

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def api(harness: BotHarness) -> Any:
    await harness.start(api_tokens=f"{TOKEN}, {TOKEN2}", web_port=0)
    client = Api(harness)
    yield client
    await client.close()


def error_of(data: Any) -> tuple[str, dict[str, str]]:
    assert set(data) == {"error"} and set(data["error"]) == {"code", "message", "fields"}, data
    return data["error"]["code"], data["error"]["fields"]


# ---- sending ------------------------------------------------------------------------------------
async def test_send_with_password_account(api: Api, mail_user: MailUser, mail_stack: MailStack,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.employee(7001, mail_user)
    to, cc, bcc = new_user(mail_stack), new_user(mail_stack), new_user(mail_stack)
    submitted_before = len(mail_stack.submitted)
    status, data = await api.send({
        "user_id": 7001, "from_name": "Анна Петрова", "to": [f"Client <{to.address}>"], "cc": [cc.address],
        "bcc": [bcc.address], "subject": "Счёт № 42 — invoice", "text": "Hello,\nyour invoice is attached.",
    })
    assert status == 200, data
    message_id = data["message_id"]
    assert re.fullmatch(r"<[^<>@\s]+@example\.org>", message_id)
    assert data["sender"] == mail_user.address and data["saved_to_sent"] is True and data["sent_folder"] == "Sent"
    assert sorted(data["recipients"]) == sorted([to.address, cc.address, bcc.address])

    # submitted once, through the employee's own login, Bcc only in the envelope
    assert len(mail_stack.submitted) == submitted_before + 1
    sub = mail_stack.submitted[-1]
    assert sub.login == mail_user.address and sub.mail_from == mail_user.address
    assert sorted(sub.rcpt_tos) == sorted([to.address, cc.address, bcc.address])
    assert bcc.address.encode() not in sub.data and b"Bcc" not in sub.data
    for rcpt in (to, cc, bcc):
        [got] = await mails(mail_stack, rcpt)
        msg = got.message
        assert msg["Message-ID"] == message_id
        assert "Bcc" not in msg
        assert msg["Subject"] == "Счёт № 42 — invoice" and b"=?utf-8?" in got.raw.split(b"\r\n\r\n")[0]
        assert msg["From"].addresses[0].display_name == "Анна Петрова"
        assert msg["From"].addresses[0].addr_spec == mail_user.address
        assert msg["To"].addresses[0].addr_spec == to.address and msg["Cc"].addresses[0].addr_spec == cc.address
        assert msg["Date"] is not None and msg.get_content_type() == "text/plain"
        assert msg.get_content().replace("\r\n", "\n").rstrip("\n") == (
            "Hello,\nyour invoice is attached.\n-- \nBest regards"
        )

    # the copy in the employee's Sent folder: \Seen, with Bcc (as mail clients keep it)
    [sent] = await mails(mail_stack, mail_user, "Sent")
    assert b"\\Seen" in sent.flags and sent.message["Message-ID"] == message_id
    assert sent.message["Bcc"].addresses[0].addr_spec == bcc.address

    # and in the bot: a Letter in the Sent folder, not among the inbox letters
    async with api.h.session() as s:
        letter = await s.get(Letter, data["letter_id"])
        assert letter is not None
        inbox = (await s.execute(select(func.count()).select_from(Letter).where(Letter.folder == "INBOX"))).scalar()
    assert letter.folder == "Sent" and letter.uid == sent.uid and letter.message_id == message_id
    assert letter.subject == "Счёт № 42 — invoice" and letter.from_addr == mail_user.address
    assert letter.snippet.startswith("Hello, your invoice is attached.")
    assert inbox == 0

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert TOKEN not in logged and mail_user.password not in logged
    assert "/api/v1/mail/send -> 200" in logged


async def test_html_body_signature_and_attachments(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7002, mail_user, signature="Anna <CEO> & Co\nAcme")
    to = new_user(mail_stack)
    pdf = os.urandom(150_000)
    status, data = await api.send({
        "email": mail_user.address.upper(), "to": [to.address], "subject": "Report",
        "html": "<html><body><p>See the <b>report</b>.</p></body></html>",
        "attachments": [
            {"filename": "отчёт 2026.pdf", "content_type": "application/pdf",
             "content_base64": base64.encodebytes(pdf).decode()},  # MIME-style line breaks are fine
            {"filename": "notes.txt", "content_type": "text/plain", "content_base64": base64.b64encode(b"a\nb").decode()},
        ],
    })
    assert status == 200, data
    [got] = await mails(mail_stack, to)
    msg = got.message
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(("html",))
    assert body is not None
    markup = body.get_content().replace("\r\n", "\n")
    assert "<p>See the <b>report</b>.</p>" in markup
    assert "Anna &lt;CEO&gt; &amp; Co<br>\nAcme" in markup
    assert markup.index("Acme") < markup.index("</body>")
    plain = msg.get_body(("plain",))
    assert plain is not None and "See the report." in plain.get_content()
    files = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(files) == {"отчёт 2026.pdf", "notes.txt"}
    assert files["отчёт 2026.pdf"].get_content_type() == "application/pdf"
    assert files["отчёт 2026.pdf"].get_content() == pdf
    assert files["notes.txt"].get_payload(decode=True) == b"a\nb"
    async with api.h.session() as s:
        letter = await s.get(Letter, data["letter_id"])
        assert letter is not None and letter.has_attachments and letter.snippet.startswith("See the report.")
        # the bot reads it from the Sent folder, like any letter
        service = MailboxService(s, api.h.app.deps)
        full = await service.read_letter(7002, letter.id)
        assert full.subject == "Report" and full.uid == letter.uid and "See the report." in full.text
        pdf_part = next(a for a in full.attachments if a.filename == "отчёт 2026.pdf")
        assert await service.attachment(7002, letter.id, pdf_part.part) == ("отчёт 2026.pdf", pdf)


async def test_text_and_html_alternatives(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7003, mail_user, signature=None)
    to = new_user(mail_stack)
    status, data = await api.send({"user_id": 7003, "to": [to.address], "text": "plain part", "html": "<p>rich part</p>"})
    assert status == 200, data
    [got] = await mails(mail_stack, to)
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and plain.get_content().strip() == "plain part"  # no signature: none added
    assert rich is not None and rich.get_content().strip() == "<p>rich part</p>"


# ---- links ----------------------------------------------------------------------------------------
async def test_links_survive_account_deletion(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    incoming = EmailMessage()
    incoming["From"] = "Client <client@example.net>"
    incoming["To"] = mail_user.address
    incoming["Subject"] = "Question about D-42"
    incoming["Message-ID"] = "<question-42@example.net>"
    incoming.set_content("When will it ship?")
    await mail_stack.deliver(mail_user.address, incoming)
    box = await api.employee(7004, mail_user)
    to = new_user(mail_stack)
    status, sent = await api.send({
        "user_id": 7004, "to": [to.address], "subject": "Re: Question about D-42", "text": "Tomorrow.",
        "item_type": "deal", "item_id": "D-42",
    })
    assert status == 200, sent
    assert sent["link"]["letter_id"] == sent["letter_id"] and sent["link"]["letter_exists"] is True

    path = "/api/v1/items/deal/D-42/links"
    status, link = await api.call("POST", path, {"message_id": "question-42@example.net", "email": mail_user.address})
    assert status == 200, link
    assert link["subject"] == "Question about D-42" and link["from_addr"] == "client@example.net"
    # linking again is harmless, and a sent letter can be linked to another item by id
    status, again = await api.call("POST", path, {"letter_id": link["letter_id"]})
    assert status == 200 and again["letter_id"] == link["letter_id"]
    status, other = await api.call("POST", "/api/v1/items/ticket/T%201/links", {"letter_id": sent["letter_id"]})
    assert status == 200 and other["item_id"] == "T 1"

    status, listing = await api.call("GET", path)
    assert status == 200
    assert [x["subject"] for x in listing["links"]] == ["Re: Question about D-42", "Question about D-42"]
    assert all(x["letter_exists"] for x in listing["links"])

    async with api.h.session() as s:
        await MailboxService(s, api.h.app.deps).delete_account(7004, box.id)
        await s.commit()
    status, listing = await api.call("GET", path)
    assert status == 200
    links = listing["links"]
    assert [x["letter_exists"] for x in links] == [False, False] and [x["letter_id"] for x in links] == [None, None]
    assert links[0]["subject"] == "Re: Question about D-42" and links[0]["from_addr"] == mail_user.address
    assert links[0]["snippet"].startswith("Tomorrow.") and links[0]["linked_at"]
    assert links[1]["from_name"] == "Client" and links[1]["snippet"].startswith("When will it ship?")
    status, empty = await api.call("GET", "/api/v1/items/deal/nothing/links")
    assert status == 200 and empty["links"] == []


async def test_link_errors(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7005, mail_user, processes=False)
    path = "/api/v1/items/deal/D-1/links"
    status, data = await api.call("POST", path, {"letter_id": 999999})
    assert status == 404 and error_of(data)[0] == "unknown_letter"
    status, data = await api.call("POST", path, {"message_id": "<nope@x>", "user_id": 424242})
    assert status == 404 and error_of(data)[0] == "unknown_employee"
    status, data = await api.call("POST", path, {"message_id": "<nope@x>", "user_id": 7005})
    assert status == 403 and error_of(data)[0] == "not_allowed"
    status, data = await api.call("POST", path, {"message_id": "<nope@x>"})
    assert status == 422 and error_of(data) == ("validation_error", {"user_id": "a message_id needs the employee (user_id or email)"})
    status, data = await api.call("POST", path, {"letter_id": 1, "message_id": "<a@b>"})
    assert status == 422 and "letter_id" in error_of(data)[1]
    status, data = await api.call("GET", "/api/v1/items/" + "x" * 65 + "/1/links")
    assert status == 422 and error_of(data) == ("validation_error", {"item_type": "String should have at most 64 characters"})


# ---- errors ---------------------------------------------------------------------------------------
async def test_authentication(api: Api) -> None:
    for token in (None, "", "wrong-" + TOKEN, TOKEN[:-1], TOKEN + "x"):
        status, data = await api.send({"user_id": 1}, token=token)
        assert status == 401 and error_of(data)[0] == "unauthorized"
        assert api.last_headers["WWW-Authenticate"].startswith("Bearer")
    status, data = await api.send({}, token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    # the second configured token works too (rotation); unknown routes say not_found only with a token
    status, data = await api.call("GET", "/api/v1/items/deal/1/links", token=TOKEN2)
    assert status == 200
    status, data = await api.call("GET", "/api/v1/nothing", token=None)
    assert status == 401
    status, data = await api.call("GET", "/api/v1/nothing")
    assert status == 404 and error_of(data)[0] == "not_found"
    status, data = await api.call("GET", SEND)
    assert status == 405 and error_of(data)[0] == "method_not_allowed"
    status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.1")


async def test_validation_errors(api: Api, mail_user: MailUser) -> None:
    base = {"user_id": 7006, "to": ["a@example.org"], "text": "x"}
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({**base, "to": ["not an address"]}, {"to.0": "not a valid e-mail address (a@b.example or Name <a@b.example>)"}),
        ({**base, "cc": ["ok@example.org", "two@example.org, three@example.org"]}, {"cc.1": ""}),
        ({**base, "to": []}, {"to": ""}),
        ({**base, "text": "  ", "html": None}, {"text": "give a text or html body"}),
        ({"user_id": 7006, "to": ["a@example.org"]}, {"text": "give a text or html body"}),
        ({**base, "attachments": [{"filename": "a.bin", "content_base64": "***"}]},
         {"attachments.0.content_base64": "not valid base64"}),
        ({**base, "attachments": [{"filename": "a.bin", "content_base64": "QUJD", "size": 3}]},
         {"attachments.0.size": "Extra inputs are not permitted"}),
        ({**base, "priority": "high"}, {"priority": "Extra inputs are not permitted"}),
        ({**base, "email": mail_user.address}, {"user_id": "give the employee as user_id or as email (exactly one)"}),
        ({**base, "item_type": "deal"}, {"item_id": "give item_type and item_id together"}),
        ({**base, "subject": "a\r\nBcc: evil@example.org"}, {"subject": "line breaks are not allowed"}),
        ({**base, "user_id": "seven"}, {"user_id": ""}),
        ([1, 2], {"body": ""}),
    ]
    for body, fields in cases:
        status, data = await api.send(body)  # type: ignore[arg-type]
        assert status == 422, (body, data)
        code, got = error_of(data)
        assert code == "validation_error" and set(got) == set(fields), (body, got)
        for key, message in fields.items():
            assert message in got[key]
    for raw in (b"{not json", b"", b"null"):
        status, data = await api.call("POST", SEND, raw=raw)
        assert status == 422 and error_of(data)[0] == "validation_error" and "body" in error_of(data)[1], data


async def test_employee_errors(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    other = new_user(mail_stack, "o")
    await api.employee(7007, mail_user, processes=False)
    await api.employee(7008, other)
    body = {"to": [new_user(mail_stack).address], "text": "hi"}
    for who in ({"user_id": 999}, {"email": "nobody@example.org"}):
        status, data = await api.send({**body, **who})
        assert status == 404 and error_of(data)[0] == "unknown_employee"
    status, data = await api.send({**body, "user_id": 7007})
    assert status == 403 and error_of(data)[0] == "not_allowed"
    status, data = await api.send({**body, "email": mail_user.address})
    assert status == 403 and error_of(data)[0] == "not_allowed"

    box = await _box(api, 7008)
    await api.h.app.watchers.stop(box.id)  # the watcher would report its own state meanwhile
    async with api.h.session() as s:
        await s.execute(update(Mailbox).where(Mailbox.id == box.id).values(state="broken"))
        await s.commit()
    count = len(mail_stack.submitted)
    status, data = await api.send({**body, "user_id": 7008})
    assert status == 409 and error_of(data)[0] == "mailbox_broken" and "broken" in data["error"]["message"]
    assert len(mail_stack.submitted) == count
    # reconnecting is the watcher's IMAP trouble (often a blip): the send is tried, and goes out
    async with api.h.session() as s:
        await s.execute(update(Mailbox).where(Mailbox.id == box.id).values(state="reconnecting"))
        await s.commit()
    status, data = await api.send({**body, "user_id": 7008})
    assert status == 200, data
    assert len(mail_stack.submitted) == count + 1
    async with api.h.session() as s:
        await s.execute(update(Mailbox).where(Mailbox.id == box.id).values(state="connected"))
        await s.commit()
    # the password was changed at the provider: SMTP refuses the stored one
    mail_stack.set_password(other.address, "changed-" + other.password)
    status, data = await api.send({**body, "user_id": 7008})
    assert status == 409 and error_of(data)[0] == "mailbox_broken" and "refused the stored login" in data["error"]["message"]
    # the employee hears of it at once (the watcher's own IDLE session may live on for hours
    # with the old password): the account is broken, and one message offers Reconnect
    employee = api.h.user(7008)
    prompt = await employee.wait_for_text("is broken", timeout=20)
    assert "🔄 Reconnect" in employee.buttons(prompt.message_id)
    assert (await _box(api, 7008)).state == "broken"
    status, data = await api.send({**body, "user_id": 7008})
    assert status == 409 and "the account is broken" in data["error"]["message"]
    await asyncio.sleep(1)
    assert sum("is broken" in m.text for m in employee.messages()) == 1


async def _box(api: Api, user_id: int) -> Mailbox:
    async with api.h.session() as s:
        return (await s.execute(select(Mailbox).where(Mailbox.user_id == user_id))).scalar_one()


async def test_smtp_rejected_sends_nothing(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7009, mail_user)
    good = new_user(mail_stack)
    before = len(mail_stack.submitted)
    status, data = await api.send({
        "user_id": 7009, "to": [good.address], "cc": ["ghost@example.org"], "text": "hi", "item_type": "deal",
        "item_id": "D-9",
    })
    assert status == 502, data
    code, fields = error_of(data)
    assert code == "smtp_rejected" and "550" in data["error"]["message"]
    assert fields == {"cc.0": "550 5.1.1 <ghost@example.org>: Recipient address rejected: User unknown"}
    assert len(mail_stack.submitted) == before and await mails(mail_stack, good) == []
    assert await mails(mail_stack, mail_user, "Sent") == []
    async with api.h.session() as s:
        assert (await s.execute(select(func.count()).select_from(ItemLink))).scalar() == 0


async def test_size_limits(harness: BotHarness, mail_user: MailUser, mail_stack: MailStack) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0, api_max_body_bytes=64 * 1024, api_max_attachments_bytes=1000)
    api = Api(harness)
    try:
        await api.employee(7010, mail_user)
        to = new_user(mail_stack)
        big = base64.b64encode(os.urandom(60_000)).decode()
        status, data = await api.send({"user_id": 7010, "to": [to.address], "text": "x",
                                       "attachments": [{"filename": "big.bin", "content_base64": big}]})
        assert status == 413 and error_of(data)[0] == "body_too_large"
        # chunked, without Content-Length: stopped while reading
        async def chunks() -> Any:
            for _ in range(20):
                yield b" " * 8192
        async with api.http.post(api.base + SEND, data=chunks(), headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            assert resp.status == 413 and error_of(await resp.json())[0] == "body_too_large"
        small = base64.b64encode(os.urandom(600)).decode()
        status, data = await api.send({"user_id": 7010, "to": [to.address], "text": "x", "attachments": [
            {"filename": "a.bin", "content_base64": small}, {"filename": "b.bin", "content_base64": small}]})
        assert status == 413 and error_of(data) == ("body_too_large", {"attachments": "at most 1000 bytes in all, decoded"})
        status, data = await api.send({"user_id": 7010, "to": [to.address], "text": "x",
                                       "attachments": [{"filename": "a.bin", "content_base64": small}]})
        assert status == 200, data
        assert len(await mails(mail_stack, to)) == 1
    finally:
        await api.close()
