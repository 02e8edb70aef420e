"""OAuth2 token refresh with several instances on one PostgreSQL database: a rotating refresh
token is used once, however many instances need a fresh access token at the same moment.

Each "instance" here is what a process has of its own: an engine (its own connections) and the
in-process refresh coordinator (services/oauth.py `_RefreshCoordinator`); only the database is
shared, as between processes. The provider is the local authlib server, which revokes a refresh
token once used (a second use is invalid_grant, as Microsoft does)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mail.types import Credentials
from services.oauth import OAuthService, _RefreshCoordinator
from storage.db import create_engine, create_sessionmaker
from storage.models import Mailbox
from tests.harness.fake_telegram import FakeTelegram
from tests.harness.fleet import postgres_database
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.plugin_app import BotHarness
from tests.test_live_mailbox import wait_watching
from tests.test_oauth_service import Env, connected_mailbox, free_port, imap_login_works


async def test_instances_refreshing_together_use_the_rotating_token_once(
    fake_telegram: FakeTelegram, mail_stack: MailStack, mail_user: MailUser, tmp_path: Path
) -> None:
    oauth = await mail_stack.oauth_server()
    port = free_port()
    async with postgres_database() as db:
        harness = BotHarness(fake_telegram, mail_stack, db, tmp_path)
        await harness.start(public_url=f"http://127.0.0.1:{port}", web_port=port, enable_postman_oauth2=True)
        env = Env(harness, oauth, f"http://127.0.0.1:{port}")
        service = await env.add_company(lifetime=30)  # less than the 60 s margin: every use refreshes
        box_id = await connected_mailbox(env, 4201, mail_user, service)
        # the app's own watcher takes the mailbox and, its token short-lived, refreshes first:
        # counted before the three instances below, not racing them
        await wait_watching(harness, box_id)
        oauth.expire_access_tokens(mail_user.address)
        refreshes = oauth.refresh_count
        engines = [create_engine(db) for _ in range(3)]
        try:
            sessions = [create_sessionmaker(engine)() for engine in engines]
            boxes = []
            for s in sessions:  # every instance has read the same (soon rotated) refresh token
                box = await s.get(Mailbox, box_id)
                assert box is not None
                boxes.append(box)
            services = [
                OAuthService(s, harness.app.deps, harness.app.settings, refreshes=_RefreshCoordinator()) for s in sessions
            ]

            async def use(svc: OAuthService, box: Mailbox) -> Credentials:
                creds = await svc.fresh_credentials(box)
                await svc.session.commit()
                return creds

            creds = await asyncio.gather(*(use(svc, box) for svc, box in zip(services, boxes, strict=True)))
            for s in sessions:
                await s.close()
        finally:
            for engine in engines:
                await engine.dispose()
        assert oauth.refresh_count == refreshes + 1  # one refresh request, the others reused it
        assert len({c.oauth2_token for c in creds}) == 1
        async with harness.session() as s:
            box = await s.get(Mailbox, box_id)
            assert box is not None and box.state == "connected" and box.last_error is None
            stored = env.service(s).tokens_of(box)
        assert stored.access_token == creds[0].oauth2_token
        assert await imap_login_works(harness.stack, mail_user.address, stored.access_token)
        await harness.stop()  # before the database goes
