"""The bot's one web server: `create_web_app(ctx)` builds the aiohttp application with the
OAuth2 callback page (when the context has the OAuth2 flows: PUBLIC_URL), `/health` (always)
and the business-process API `/api/v1` (when API_TOKENS is set); `WebServer` runs it on
WEB_HOST:WEB_PORT. bot/app.py builds the context and starts the server when PUBLIC_URL or
API_TOKENS is set; `App.close` stops it."""

from __future__ import annotations

import logging

from aiohttp import web

from services.oauth import CALLBACK_PATH
from web.context import CTX, WebContext
from web.middleware import ServerLog, api_middleware, check_tokens
from web.oauth_page import oauth_callback
from web.routes import add_routes

log = logging.getLogger(__name__)
OAUTH_ONLY_MAX_BODY = 64 * 1024


def create_web_app(ctx: WebContext) -> web.Application:
    """One application: the OAuth2 callback (ctx.oauth), /health, and /api/v1 with its
    middleware when API tokens are configured (weak tokens are refused here too)."""
    settings = ctx.settings
    tokens = settings.api_token_list
    check_tokens(tokens)
    app = web.Application(client_max_size=settings.api_max_body_bytes if tokens else OAUTH_ONLY_MAX_BODY)
    app[CTX] = ctx
    if ctx.oauth is not None:
        app.router.add_get(CALLBACK_PATH, oauth_callback)
    if tokens:
        app.middlewares.append(api_middleware)
    add_routes(app, api=bool(tokens))
    return app


class WebServer:
    """An aiohttp application on host:port (port 0: any free port, see `port`). No access log
    (the OAuth2 callback's request line carries codes); the server's own log says a malformed
    request in one line (web.middleware.ServerLog)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, logger=ServerLog())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("web server on %s:%s", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
