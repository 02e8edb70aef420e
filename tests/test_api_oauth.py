"""The API sends from an OAuth2 account: OAUTHBEARER (offered besides XOAUTH2) to the test SMTP
server (STARTTLS) and to Dovecot for the Sent copy, a refreshed token when the old one expired, and mailbox_broken (the account
marked broken for the chat) once the person withdrew the grant at the provider."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest
from sqlalchemy import select

from services.oauth import OAuthService
from storage.models import Mailbox
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.oauth_server import ScriptedBrowser
from tests.harness.plugin_app import BotHarness
from tests.test_api import TOKEN, Api, error_of, mails, new_user
from tests.test_oauth_wizard import (
    ADMIN,
    World,
    authorize,
    finish_wizard,
    free_port,
    to_password_step,
)


@pytest.fixture
async def oauth_api(harness: BotHarness, mail_stack: MailStack) -> tuple[World, Api]:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    await harness.start(public_url=public_url, web_port=port, admin_ids=[ADMIN], api_tokens=TOKEN)
    admin = harness.user(ADMIN)
    await admin.send("/oauth_flag on")
    client = Api(harness)
    yield World(harness, oauth, public_url), client
    await client.close()


async def test_send_from_an_oauth2_account(oauth_api: tuple[World, Api], mail_user: MailUser, mail_stack: MailStack,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world, api = oauth_api
    await world.company("acme-api", "Acme API")
    await world.configure("acme-api")
    user = world.h.user(9301)
    await to_password_step(user, "Acme API", mail_user.address)
    page = await ScriptedBrowser().sign_in(await authorize(user, "Acme API"), mail_user.address, mail_user.password)
    assert page.status == 200
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None and box.auth_kind == "oauth2"
    # the access token expired (at the provider and by its date): the send refreshes it first
    await world.h.app.watchers.stop(box.id)  # the watcher would refresh too (its own business)
    world.oauth.expire_access_tokens(mail_user.address)
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        svc = OAuthService(s, world.h.app.deps)
        before = svc.tokens_of(box)
        svc.store_tokens(box, dataclasses.replace(before, expires_at=time.time() - 1))
        # whatever the watcher last reported before it was stopped, this test is about sending:
        # the account is fine
        box.state = "connected"
        await s.commit()

    to = new_user(mail_stack)
    status, data = await api.send({"user_id": user.id, "to": [to.address], "subject": "OAuth", "text": "via OAuth2"})
    assert status == 200, data
    sub = mail_stack.submitted[-1]
    assert sub.login == mail_user.address and sub.listener == "starttls" and sub.mechanism == "OAUTHBEARER"
    [got] = await mails(mail_stack, to)
    assert got.message["Message-ID"] == data["message_id"]
    assert got.message.get_content().replace("\r\n", "\n").rstrip() == "via OAuth2\n-- \nSent via OAuth"
    [sent] = await mails(mail_stack, mail_user, "Sent")
    assert sent.message["Message-ID"] == data["message_id"] and data["letter_id"]
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        after = OAuthService(s, world.h.app.deps).tokens_of(box)
    assert after.access_token != before.access_token  # refreshed and stored

    # the person withdraws the grant: the token is refused, nothing is sent
    world.oauth.revoke_user(mail_user.address)
    count = len(mail_stack.submitted)
    status, data = await api.send({"user_id": user.id, "to": [to.address], "text": "again"})
    assert status == 409 and error_of(data)[0] == "mailbox_broken"
    assert "refused the stored login" in data["error"]["message"]
    # and when the token is due for a refresh, the provider's invalid_grant marks the account
    # broken (kept although the request failed), as the chat and the watcher see it
    async with world.h.session() as s:
        box = await s.get(Mailbox, box.id)
        assert box is not None
        svc = OAuthService(s, world.h.app.deps)
        svc.store_tokens(box, dataclasses.replace(svc.tokens_of(box), expires_at=time.time() - 1))
        await s.commit()
    status, data = await api.send({"user_id": user.id, "to": [to.address], "text": "and again"})
    assert status == 409 and error_of(data)[0] == "mailbox_broken" and "invalid_grant" in data["error"]["message"]
    async with world.h.session() as s:
        state = (await s.execute(select(Mailbox.state).where(Mailbox.id == box.id))).scalar_one()
    assert state == "broken"
    status, data = await api.send({"user_id": user.id, "to": [to.address], "text": "once more"})
    assert status == 409 and "the account is broken" in data["error"]["message"]
    assert len(mail_stack.submitted) == count

    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith("authlib"))
    for secret in (before.access_token, before.refresh_token, after.access_token, after.refresh_token, TOKEN):
        assert secret and secret not in logged
