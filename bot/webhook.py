"""Webhook mode (WEBHOOK_URL): Telegram POSTs every update to the bot's web server, so with
several instances behind a load balancer any instance takes any update.

* Mounted on the bot's one aiohttp application at the path of WEBHOOK_URL with aiogram's
  `SimpleRequestHandler`; a request without the right `X-Telegram-Bot-Api-Secret-Token`
  (WEBHOOK_SECRET, or one derived from BOT_TOKEN: `Settings.webhook_secret_token`) gets 401 and
  is not handled.
* Each update is answered 200 at once and handled in the background, as aiogram does by
  default: Telegram never waits for a mail server behind a handler, so it never times out and
  sends the same update again. A normal stop (`close()`) waits for the updates in hand.
* With REDIS_URL the conversation state is in Redis and one user's updates are handled one at
  a time across the fleet (`RedisEventIsolation`, bot/app.py): a wizard's steps may land on
  different instances in any order Telegram delivers them.
* `register_webhook()`: every instance calls setWebhook at start with the same URL, secret and
  allowed updates (idempotent); none deletes it when it stops, the others still serve.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.config import Settings

log = logging.getLogger(__name__)


class _Handler(SimpleRequestHandler):
    async def close(self) -> None:
        """The bot's session belongs to the app (App.close), not to the web server."""


class WebhookIntake:
    def __init__(self, dispatcher: Dispatcher, bot: Bot, settings: Settings) -> None:
        self.settings = settings
        self.handler = _Handler(dispatcher, bot, handle_in_background=True, secret_token=settings.webhook_secret_token())

    @property
    def in_hand(self) -> int:
        return len(self.handler._background_feed_update_tasks)

    async def close(self, grace: float = 30.0) -> None:
        """Wait (up to `grace` s) for the updates being handled; the web server is already
        closed, so no new one arrives."""
        tasks = set(self.handler._background_feed_update_tasks)
        if tasks:
            log.info("waiting for %d update(s) in hand", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()


def mount_webhook(app: web.Application, dispatcher: Dispatcher, bot: Bot, settings: Settings) -> WebhookIntake:
    """Serve Telegram's POSTs at the path of WEBHOOK_URL on `app` (before it starts)."""
    intake = WebhookIntake(dispatcher, bot, settings)
    app.router.add_post(settings.webhook_path, intake.handler.handle)
    log.info("webhook: taking updates at %s", settings.webhook_path)
    return intake


async def register_webhook(bot: Bot, settings: Settings, allowed_updates: list[str]) -> None:
    assert settings.webhook_url
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=settings.webhook_secret_token(),
        allowed_updates=allowed_updates,
        drop_pending_updates=False,
    )
    log.info("webhook registered with Telegram (%d update types)", len(allowed_updates))
