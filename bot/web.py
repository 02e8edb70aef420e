"""The bot's own web server: the page an OAuth2 provider sends the browser back to.

`GET /oauth/callback?state=...&code=...` (or `error=...`) hands the parameters to
`services.oauth_flows.OAuthFlows.handle_callback`, which checks the state, exchanges the code and
continues the chat; the browser gets a small translated page that says what happened, with a
link back to the bot (t.me/<username>). The page is never cached, never framed and sends no
referrer (its URL carries the code). No access log: request lines carry codes and states.

`build_app` starts it on WEB_HOST:WEB_PORT when PUBLIC_URL or API_TOKENS is set (one server
for both); bot/api.py adds /health and the business-process API. `App.close` stops it.
"""

from __future__ import annotations

import html
import logging

from aiohttp import web

from bot.i18n import Catalog
from services.oauth import CALLBACK_PATH
from services.oauth_flows import OAuthFlows, Outcome

log = logging.getLogger(__name__)

FLOWS: web.AppKey[OAuthFlows] = web.AppKey("oauth_flows")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
PARAMS = ("state", "code", "error", "error_description")


def render_page(catalog: Catalog, outcome: Outcome, bot_username: str | None) -> str:
    t = catalog.get(outcome.lang)
    title = t("oauth.page_ok_title") if outcome.ok else t("oauth.page_problem_title")
    body = t("oauth.page_ok", service=outcome.service) if outcome.ok else t(f"oauth.page_{outcome.key}")
    link = ""
    if bot_username:
        href = html.escape(f"https://t.me/{bot_username}", quote=True)
        link = f'<p><a class="back" href="{href}">{t("oauth.page_back")}</a></p>'
    return (
        f'<!doctype html><html lang="{html.escape(outcome.lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(t('oauth.page_title'))}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
        "line-height:1.5}a.back{display:inline-block;padding:.6rem 1rem;border-radius:.4rem;"
        "background:#2481cc;color:#fff;text-decoration:none}</style></head><body>"
        f"<h1>{'✅' if outcome.ok else '⚠️'} {html.escape(title)}</h1><p>{body}</p>{link}</body></html>"
    )


async def oauth_callback(request: web.Request) -> web.Response:
    flows = request.app[FLOWS]
    params = {name: request.query.get(name) for name in PARAMS}
    try:
        outcome = await flows.handle_callback(params, request.headers.get("Accept-Language"))
    except Exception:
        log.exception("OAuth2 callback failed")
        outcome = Outcome("en", False, "provider_error", "")
    text = render_page(flows.catalog, outcome, await flows.bot_username())
    return web.Response(
        status=200 if outcome.ok else 400, text=text, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


def create_web_app(flows: OAuthFlows | None, *, client_max_size: int = 64 * 1024) -> web.Application:
    """The OAuth2 callback when `flows` is given (PUBLIC_URL set); bot/api.py adds /health and
    the process API to the same application."""
    app = web.Application(client_max_size=client_max_size)
    if flows is not None:
        app[FLOWS] = flows
        app.router.add_get(CALLBACK_PATH, oauth_callback)
    return app


class WebServer:
    """An aiohttp application on host:port (port 0: any free port, see `port`)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
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
