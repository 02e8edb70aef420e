"""What the web routes need, handed in by whoever assembles the app (bot/app.py): no route
reaches for the bot's `App`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.i18n import Catalog
from services.deps import MailDeps
from services.idempotency import IdempotencyStore
from services.outgoing import OutgoingService
from web.ratelimit import RateLimit, caller_key


class CallbackOutcome(Protocol):
    """What the browser's callback page says (handlers' / services' `Outcome` fits)."""

    @property
    def lang(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    @property
    def key(self) -> str: ...  # "ok" or the problem, e.g. "expired"

    @property
    def service(self) -> str: ...


class OAuthCallbacks(Protocol):
    """The chat side of an OAuth2 sign-in that comes back through the browser (`OAuthFlows`)."""

    async def handle_callback(
        self, params: Mapping[str, str | None], accept_language: str | None = None
    ) -> CallbackOutcome: ...

    async def bot_username(self) -> str | None: ...


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    deps: MailDeps
    watch_states: Callable[[], Mapping[int, Any]]
    catalog: Catalog
    rate_limit: RateLimit  # per API token (web/ratelimit.py), chosen by the wiring
    oauth: OAuthCallbacks | None = None  # the callback page is served only with it (PUBLIC_URL)
    # this instance in the fleet (/health): its id, the mailboxes it holds, the live instances
    instance_id: str = ""
    held: Callable[[], Collection[int]] = frozenset
    live_instances: Callable[[], Sequence[str]] = tuple

    @cached_property
    def tokens(self) -> list[bytes]:
        return [t.encode("ascii", "replace") for t in self.settings.api_token_list]

    @cached_property
    def caller_keys(self) -> list[str]:
        """Each token's rate-limit key, by position."""
        return [caller_key(t) for t in self.tokens]

    def service(self, session: AsyncSession) -> OutgoingService:
        return OutgoingService(session, self.deps, attachments_limit=self.settings.api_max_attachments_bytes)

    def idempotency(self) -> IdempotencyStore:
        return IdempotencyStore(self.sessionmaker)


CTX: web.AppKey[WebContext] = web.AppKey("web_context")
