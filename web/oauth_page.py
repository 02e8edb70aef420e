"""The page an OAuth2 provider sends the browser back to.

`GET /oauth/callback?state=...&code=...` (or `error=...`) hands the parameters to the OAuth2
flows (`OAuthCallbacks.handle_callback`, the chat side, handed in by the wiring), which check
the state, exchange the code and continue the chat; the browser gets a small translated page
that says what happened, with a link back to the bot (t.me/<username>). The page is never
cached, never framed and sends no referrer (its URL carries the code). No access log: request
lines carry codes and states (web/app.py runs the server without one).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from aiohttp import web

from bot.i18n import Catalog
from web.context import CTX, CallbackOutcome

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}
PARAMS = ("state", "code", "error", "error_description")


@dataclass(frozen=True, slots=True)
class PageOutcome:
    """The page's words when the flows themselves failed."""

    lang: str
    ok: bool
    key: str
    service: str


def render_page(catalog: Catalog, outcome: CallbackOutcome, bot_username: str | None) -> str:
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
    ctx = request.app[CTX]
    flows = ctx.oauth
    assert flows is not None  # the route exists only with them
    params = {name: request.query.get(name) for name in PARAMS}
    outcome: CallbackOutcome
    try:
        outcome = await flows.handle_callback(params, request.headers.get("Accept-Language"))
    except Exception:
        log.exception("OAuth2 callback failed")
        outcome = PageOutcome("en", False, "provider_error", "")
    text = render_page(ctx.catalog, outcome, await flows.bot_username())
    return web.Response(
        status=200 if outcome.ok else 400, text=text, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )
