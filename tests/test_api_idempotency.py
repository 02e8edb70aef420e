"""`Idempotency-Key` on `POST /api/v1/mail/send`, end to end through the whole bot: a retried
request sends one letter and gets the first answer again; a key is per API token, refuses a
different request, answers 409 while the first runs, keeps stored errors, is freed by an
unexpected failure, and expires after 24 hours."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from multidict import CIMultiDict
from sqlalchemy import func, select, update

from services.idempotency import KEY_TTL
from services.outgoing import OutgoingService
from storage.models import IdempotencyKey, Mailbox
from tests.harness.mailstack import MailStack, MailUser
from tests.test_api import SEND, TOKEN, TOKEN2, Api, error_of, mails, new_user
from tests.test_api import api as api  # noqa: F401 - the fixture
from web.models import SendRequest
from web.routes import request_fingerprint

KEY = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def new_key() -> str:
    return str(uuid.uuid4())


async def post(api: Api, body: Any, key: str | None, token: str = TOKEN) -> tuple[int, Any, dict[str, str]]:
    """One send with its own response headers (safe to run concurrently, unlike api.last_headers)."""
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers[KEY] = key
    async with api.http.post(api.base + SEND, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


async def rows(api: Api) -> list[IdempotencyKey]:
    async with api.h.session() as s:
        return list((await s.execute(select(IdempotencyKey).order_by(IdempotencyKey.id))).scalars())


async def test_a_repeat_sends_nothing_and_replays_the_answer(
    api: Api, mail_user: MailUser, mail_stack: MailStack
) -> None:
    await api.employee(7301, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7301, "to": [to.address], "subject": "Invoice", "text": "Hello"}
    key = new_key()
    before = len(mail_stack.submitted)

    status, first, headers = await post(api, body, key)
    assert status == 200, first
    assert REPLAYED not in headers
    assert len(mail_stack.submitted) == before + 1

    # the same request again (keys in another order, a default spelled out): the stored answer
    again = {"cc": [], "text": "Hello", "subject": "Invoice", "to": [to.address], "user_id": 7301}
    status, second, headers = await post(api, again, key)
    assert status == 200 and headers[REPLAYED] == "true"
    assert second == first and second["message_id"] == first["message_id"]
    assert len(mail_stack.submitted) == before + 1
    assert len(await mails(mail_stack, to)) == 1
    assert len(await mails(mail_stack, mail_user, "Sent")) == 1

    # only a hash of the token is stored, scoped with the key
    [row] = await rows(api)
    assert row.key == key and row.token_hash == hashlib.sha256(TOKEN.encode()).hexdigest()
    assert row.state == "completed" and row.response_status == 200 and TOKEN not in (row.response_body or "")

    # another key, or none, is another letter
    status, third, headers = await post(api, body, new_key())
    assert status == 200 and REPLAYED not in headers and third["message_id"] != first["message_id"]
    status, fourth, _ = await post(api, body, None)
    assert status == 200 and fourth["message_id"] not in (first["message_id"], third["message_id"])
    assert len(mail_stack.submitted) == before + 3
    assert len(await mails(mail_stack, to)) == 3


async def test_same_key_with_another_request_is_refused(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7302, mail_user)
    to = new_user(mail_stack)
    key = new_key()
    status, _, _ = await post(api, {"user_id": 7302, "to": [to.address], "text": "first"}, key)
    assert status == 200
    before = len(mail_stack.submitted)
    status, data, headers = await post(api, {"user_id": 7302, "to": [to.address], "text": "second"}, key)
    assert status == 422 and REPLAYED not in headers
    assert error_of(data) == ("idempotency_key_reused", {KEY: "used before with a different request"})
    assert len(mail_stack.submitted) == before and len(await mails(mail_stack, to)) == 1


async def test_keys_are_scoped_per_api_token(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7303, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7303, "to": [to.address], "text": "hi"}
    key = new_key()
    status, first, _ = await post(api, body, key, TOKEN)
    assert status == 200
    status, other, headers = await post(api, body, key, TOKEN2)  # another token: another key
    assert status == 200 and REPLAYED not in headers and other["message_id"] != first["message_id"]
    status, replay, headers = await post(api, body, key, TOKEN2)
    assert status == 200 and headers[REPLAYED] == "true" and replay["message_id"] == other["message_id"]
    assert len(await mails(mail_stack, to)) == 2
    assert {r.token_hash for r in await rows(api)} == {
        hashlib.sha256(t.encode()).hexdigest() for t in (TOKEN, TOKEN2)
    }


async def test_a_stored_error_is_replayed(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7304, mail_user, processes=False)
    to = new_user(mail_stack)
    body = {"user_id": 7304, "to": [to.address], "text": "hi"}
    key = new_key()
    status, first, _ = await post(api, body, key)
    assert status == 403 and error_of(first)[0] == "not_allowed"
    # the employee allows it meanwhile: the key still answers what happened to its request
    async with api.h.session() as s:
        await s.execute(update(Mailbox).where(Mailbox.user_id == 7304).values(use_in_processes=True))
        await s.commit()
    status, again, headers = await post(api, body, key)
    assert status == 403 and headers[REPLAYED] == "true" and again == first
    assert await mails(mail_stack, to) == []
    status, data, _ = await post(api, body, new_key())  # a new key is a new request
    assert status == 200, data
    assert len(await mails(mail_stack, to)) == 1


async def test_concurrent_requests_with_one_key_send_one_letter(
    api: Api, mail_user: MailUser, mail_stack: MailStack
) -> None:
    await api.employee(7305, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7305, "to": [to.address], "subject": "once", "text": "only once"}
    key = new_key()
    before = len(mail_stack.submitted)
    answers = await asyncio.gather(*(post(api, body, key) for _ in range(4)))
    fresh = [a for a in answers if a[0] == 200 and REPLAYED not in a[2]]
    assert len(fresh) == 1, answers
    message_id = fresh[0][1]["message_id"]
    for status, data, headers in answers:
        if status == 200:
            assert data["message_id"] == message_id
        else:
            assert status == 409 and error_of(data)[0] == "idempotency_in_progress", data
            assert REPLAYED not in headers
    assert len(mail_stack.submitted) == before + 1
    assert len(await mails(mail_stack, to)) == 1
    # once the first is done, a retry gets its answer
    status, data, headers = await post(api, body, key)
    assert status == 200 and headers[REPLAYED] == "true" and data["message_id"] == message_id


async def test_in_progress_answers_409(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    """A claimed key whose request has not finished (still running, or the bot stopped during the
    send, when the letter may be out): 409, nothing sent, until it expires."""
    await api.employee(7306, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7306, "to": [to.address], "text": "hi"}
    key = new_key()
    async with api.h.session() as s:
        s.add(IdempotencyKey(
            token_hash=hashlib.sha256(TOKEN.encode()).hexdigest(), key=key,
            request_hash=await request_fingerprint(SendRequest.model_validate(body)), state="in_progress",
            created_at=datetime.now(UTC),
        ))
        await s.commit()
    before = len(mail_stack.submitted)
    status, data, _ = await post(api, body, key)
    assert status == 409 and error_of(data)[0] == "idempotency_in_progress"
    status, data, _ = await post(api, {**body, "text": "other"}, key)  # a different request is refused
    assert status == 422 and error_of(data)[0] == "idempotency_key_reused"
    assert len(mail_stack.submitted) == before


async def test_invalid_keys_are_validation_errors(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7307, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7307, "to": [to.address], "text": "hi"}
    before = len(mail_stack.submitted)
    for bad in ("", "   ", "x" * 201, "ключ", "a\tb"):  # other controls: aiohttp answers 400 itself
        status, data, _ = await post(api, body, bad)
        assert status == 422, (bad, data)
        code, fields = error_of(data)
        assert code == "validation_error" and set(fields) == {KEY}, (bad, fields)
    two = CIMultiDict([("Authorization", f"Bearer {TOKEN}"), (KEY, "one"), (KEY, "two")])
    async with api.http.post(api.base + SEND, json=body, headers=two) as resp:
        assert resp.status == 422 and error_of(await resp.json())[1] == {KEY: "give it once"}
    assert len(mail_stack.submitted) == before and await rows(api) == []

    # a malformed body with a key claims nothing: the key then works for the real request
    key = "~ printable ASCII, up to 200: " + "k" * 170
    status, data, _ = await post(api, {**body, "to": []}, key)
    assert status == 422 and error_of(data)[0] == "validation_error"
    assert await rows(api) == []
    status, data, headers = await post(api, body, key)
    assert status == 200 and REPLAYED not in headers, data
    assert len(mail_stack.submitted) == before + 1


async def test_an_unexpected_failure_frees_the_key(
    api: Api, mail_user: MailUser, mail_stack: MailStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await api.employee(7308, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7308, "to": [to.address], "text": "hi"}
    key = new_key()
    real_send = OutgoingService.send

    async def broken(self: OutgoingService, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(OutgoingService, "send", broken)
    status, data, _ = await post(api, body, key)
    assert status == 500 and error_of(data)[0] == "internal"
    assert await rows(api) == []
    monkeypatch.setattr(OutgoingService, "send", real_send)
    status, data, headers = await post(api, body, key)
    assert status == 200 and REPLAYED not in headers, data
    assert len(await mails(mail_stack, to)) == 1


async def test_an_expired_key_works_afresh(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    assert KEY_TTL == timedelta(hours=24)
    await api.employee(7309, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7309, "to": [to.address], "text": "hi"}
    key = new_key()
    status, first, _ = await post(api, body, key)
    assert status == 200
    # another expired key of the same token, and a fresh one of the other: the next claim purges
    status, _, _ = await post(api, body, "old-" + key)
    status, _, _ = await post(api, body, key, TOKEN2)
    day_ago = datetime.now(UTC) - timedelta(hours=25)
    async with api.h.session() as s:
        await s.execute(update(IdempotencyKey).where(IdempotencyKey.key.in_([key, "old-" + key]))
                        .where(IdempotencyKey.token_hash == hashlib.sha256(TOKEN.encode()).hexdigest())
                        .values(created_at=day_ago))
        await s.commit()
    before = len(mail_stack.submitted)
    status, second, headers = await post(api, body, key)
    assert status == 200 and REPLAYED not in headers and second["message_id"] != first["message_id"]
    assert len(mail_stack.submitted) == before + 1
    left = await rows(api)
    assert sorted(r.key for r in left) == [key, key]  # the new claim of TOKEN and TOKEN2's one
    async with api.h.session() as s:
        old = (await s.execute(select(func.count()).select_from(IdempotencyKey)
                               .where(IdempotencyKey.created_at < datetime.now(UTC) - KEY_TTL))).scalar()
    assert old == 0
    status, third, headers = await post(api, body, key)
    assert status == 200 and headers[REPLAYED] == "true" and third["message_id"] == second["message_id"]


async def test_a_failure_after_the_letter_went_out_keeps_the_key(
    api: Api, mail_user: MailUser, mail_stack: MailStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the SMTP server took the letter, then something unexpected broke (here: filing the copy
    # in Sent): a retry under the same key must not send a second copy
    await api.employee(7310, mail_user)
    to = new_user(mail_stack)
    body = {"user_id": 7310, "to": [to.address], "text": "only once"}
    key = new_key()

    async def broken(self: OutgoingService, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(OutgoingService, "_file_in_sent", broken)
    status, data, _ = await post(api, body, key)
    assert status == 500 and error_of(data)[0] == "internal"
    monkeypatch.undo()
    status, data, headers = await post(api, body, key)
    assert status == 500 and headers[REPLAYED] == "true" and error_of(data)[0] == "internal"
    assert len(await mails(mail_stack, to)) == 1
