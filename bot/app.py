"""Factories: no import-time singletons. `build_app()` wires everything for one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramServerError
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import BotCommand, BotCommandScopeChat
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.attention import AlertAttention, DigestRunner, GroupSender
from bot.config import Settings
from bot.db_checkpoint import install_commit_before_telegram
from bot.fleet import InstanceGuard, PollingLeader, new_instance_id, redis_key
from bot.gc_pauses import GcPauses
from bot.i18n import Catalog
from bot.letter_actions import LetterActionsUI
from bot.middlewares import ContextMiddleware
from bot.notifications import ChatNotifier
from bot.sender import TelegramSender
from bot.telegram_limits import Clock, LimitConfig, RedisBudget, close_limiter, install_limiter
from bot.telegram_session import KeptTypesSession
from bot.webhook import mount_webhook
from handlers import all_routers
from handlers.oauth import ChatSignIn
from mail.discovery import DiscoveryEnv, RealDiscoveryEnv
from mail.netguard import HostGuard
from mail.tls import make_ssl_context
from mail.watcher import WatchConfig, WatcherPool
from services.attention import AttentionData
from services.catalog import seed_services
from services.deps import MailDeps, WatchControl
from services.fleet import FleetWatcher, LeaseStore
from services.letter_actions import AlertActions, LetterStateSync
from services.oauth_flows import OAuthFlows
from services.watching import AlertData, DbWatchStore
from storage.crypto import SecretBox, load_or_create_keys
from storage.db import create_engine, create_sessionmaker, migrate
from storage.keys import check_keys, stored_secrets
from storage.locks import is_postgres, lock_key, xact_lock
from web.app import WebServer, create_web_app
from web.context import WebContext
from web.middleware import check_tokens
from web.ratelimit import MemoryRateLimit, RateLimit, RedisRateLimit

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    catalog: Catalog
    deps: MailDeps
    bot: Bot
    dispatcher: Dispatcher
    sender: TelegramSender
    watchers: WatcherPool
    store: DbWatchStore
    notifier: ChatNotifier
    fleet: FleetWatcher
    extra: dict[str, object] = field(default_factory=dict)
    instance_id: str = ""
    guard: InstanceGuard | None = None
    gc_pauses: GcPauses = field(default_factory=GcPauses)

    async def start_watching(self) -> None:
        """Sends a previous life of this instance left unanswered become uncertain; then this
        instance's share of the mailboxes (leases), and the timer that resends pending alerts."""
        await self.notifier.recover(at_start=True)
        await self.fleet.tick()  # the first share at once; the loop renews from here
        self.fleet.run_in_background()
        self.notifier.run_retries()
        self.gc_pauses.run_in_background()  # full GC passes once an hour, not as the heap grows
        digests = self.extra.get("digests")
        if digests is not None:  # quiet-hours digests (bot/attention.py), on the app's clock
            digests.run()  # type: ignore[attr-defined]

    async def close(self) -> None:
        """A graceful stop (SIGTERM): no new work; the alerts on their way are answered and
        recorded (at most SHUTDOWN_GRACE seconds) while the watchers log out and the leases
        are handed back; then the connections close."""
        # broadcasts first: their requests in flight finish while the bot session is open
        for part in ("broadcasts", "digests", "web", "webhook", "api_rate", "oauth_flows", "letter_actions"):  # + web server, webhook, API limiter, device polling
            closer = self.extra.pop(part, None)
            if closer is not None:
                await closer.close()  # type: ignore[attr-defined]
        for result in await asyncio.gather(self.fleet.close(), self.notifier.close(), return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("stopping: %r", result, exc_info=result)
        await self.gc_pauses.close()
        await self.bot.session.close()
        await close_limiter(self.bot)
        await self.dispatcher.storage.close()
        await self.engine.dispose()
        if self.guard is not None:  # last: another instance may take over from here
            await self.guard.close()
            self.guard = None


def create_bot(settings: Settings, *, clock: Clock | None = None) -> Bot:
    """The Bot, with every request going through the Telegram limiter (rate, 429, 5xx).
    ``clock``: the limiter's time (its pacing, flood pauses and back-off); real by default."""
    if settings.bot_token is None:
        raise ValueError("BOT_TOKEN is not set")
    session = KeptTypesSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    bot = Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )
    install_commit_before_telegram(bot)  # outermost: commits before waiting for a slot
    limits = LimitConfig(global_rate=settings.telegram_global_rate)
    budget = None
    if settings.redis_url:  # several instances: one Telegram budget for the fleet
        prefix = redis_key(settings, "telegram", str(bot.id))
        budget = RedisBudget.from_url(settings.redis_url, prefix, limits, clock)
    install_limiter(bot, limits, clock=clock, budget=budget)
    return bot


FSM_TTL = timedelta(days=30)  # a conversation left alone that long is forgotten (Redis only)


def create_storage(settings: Settings) -> BaseStorage:
    """Conversation state: Redis with REDIS_URL (shared by the fleet, survives a restart),
    else this process's memory (one instance only: bot/fleet.py refuses a second)."""
    if settings.redis_url:
        from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage

        from bot.fleet import create_redis

        return RedisStorage(
            create_redis(settings),
            key_builder=DefaultKeyBuilder(prefix=redis_key(settings, "fsm"), with_bot_id=True),
            state_ttl=FSM_TTL,
            data_ttl=FSM_TTL,
        )
    return MemoryStorage()


def create_dispatcher(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    deps: MailDeps,
    settings: Settings,
    sender: TelegramSender | None = None,
    storage: BaseStorage | None = None,
) -> Dispatcher:
    storage = storage or create_storage(settings)
    # with Redis, one user's updates are handled one at a time across every instance (two quick
    # presses landing on two instances never interleave); in memory, as before
    from aiogram.fsm.storage.redis import RedisStorage

    from bot.fleet import RenewedRedisIsolation

    isolation = RenewedRedisIsolation(storage.redis, storage.key_builder) if isinstance(storage, RedisStorage) else None
    dp = Dispatcher(storage=storage, events_isolation=isolation, catalog=catalog, settings=settings, mail_deps=deps)
    middleware = ContextMiddleware(sessionmaker, catalog, deps, on_user_returned=sender.unblock if sender else None)
    dp.message.outer_middleware(middleware)
    dp.callback_query.outer_middleware(middleware)
    dp.my_chat_member.outer_middleware(middleware)
    dp.include_routers(*all_routers())
    return dp


def create_mail_deps(
    settings: Settings,
    secrets: SecretBox,
    discovery_env: DiscoveryEnv | None = None,
    *,
    guard: HostGuard,
    ssl_context: ssl.SSLContext,
    watchers: WatchControl,
) -> MailDeps:
    return MailDeps(
        ssl_context=ssl_context,
        guard=guard,
        discovery_env=discovery_env or RealDiscoveryEnv(guard=guard, ssl_context=ssl_context),
        secrets=secrets,
        timeout=settings.mail_timeout,
        import_limit=settings.import_limit,
        watchers=watchers,
    )


async def build_app(
    settings: Settings,
    *,
    discovery_env: DiscoveryEnv | None = None,
    clock: Clock | None = None,
    limiter_clock: Clock | None = None,
) -> App:
    """Migrate the database, seed the service list and wire bot + dispatcher. ``clock``: the
    time quiet hours are judged by and digests wait on (tests pass a virtual one);
    ``limiter_clock``: the Telegram limiter's (tests pass a faster one to wait out flood
    pauses in less real time)."""
    check_tokens(settings.api_token_list)  # weak API tokens stop the start (no token is printed)
    instance_id = settings.instance_id or new_instance_id()
    instance_guard = InstanceGuard(settings, instance_id)
    await instance_guard.acquire()  # AnotherInstance: this one must not run next to those running
    try:
        app = await _build(settings, discovery_env, instance_id, instance_guard, limiter_clock)
    except BaseException:
        await instance_guard.close()
        raise
    _start_attention(app, clock)
    return app


def _start_attention(app: App, clock: Clock | None) -> None:
    """Rules, quiet hours and bursts on the notifier, and the digest runner (started with
    the watching, stopped with the app)."""
    data = AttentionData(app.sessionmaker)
    group = GroupSender(data, app.sender, app.catalog, instance_id=app.instance_id)
    app.notifier.attention = AlertAttention(data, group, clock)
    app.extra["digests"] = DigestRunner(
        data, app.notifier.data, group, clock=clock, held=app.notifier.held
    )


async def _build(
    settings: Settings,
    discovery_env: DiscoveryEnv | None,
    instance_id: str,
    instance_guard: InstanceGuard,
    limiter_clock: Clock | None = None,
) -> App:
    if settings.redis_url:
        from bot.fleet import check_redis

        await check_redis(settings)
    await migrate(settings.database_url)  # instances started together take turns (storage/db.py)
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    try:
        secrets = await _seed_and_keys(settings, engine, sessionmaker)
    except BaseException:
        await engine.dispose()
        raise
    catalog = Catalog()
    guard = HostGuard(allow_private=settings.allow_private_mail_hosts)
    ssl_context = make_ssl_context(str(settings.mail_ca_file) if settings.mail_ca_file else None)
    bot = create_bot(settings, clock=limiter_clock)
    alert_data = AlertData(sessionmaker)
    sender = TelegramSender(bot, on_blocked=alert_data.deactivate_user)
    notifier = ChatNotifier(
        alert_data, sender, catalog, instance_id=instance_id,
        grace=settings.shutdown_grace, retry_every=settings.alert_retry_interval,
    )
    store = DbWatchStore(sessionmaker, on_connected=notifier.recovered, instance_id=instance_id)
    watchers = WatcherPool(
        store,
        notifier,
        ssl_context=ssl_context,
        guard=guard,
        config=WatchConfig(
            idle_refresh=settings.watch_idle_refresh,
            outage_after=settings.watch_outage_notice,
            connect_timeout=settings.mail_timeout,
        ),
    )
    # the leases on an engine of their own: a renewal must not wait behind hundreds of
    # watchers' queries for a connection, or the leases run out under load
    lease_engine = create_engine(settings.database_url, pool_size=2)
    leases = LeaseStore(create_sessionmaker(lease_engine), instance_id, ttl=settings.watch_lease_ttl)
    fleet = FleetWatcher(
        leases, watchers, renew_every=settings.watch_lease_renew, start_rate=settings.watch_start_rate,
        on_gained=notifier.pending_for, owns_store=True,
    )
    notifier.held = fleet.held
    notifier.live = leases.live_instances
    deps = create_mail_deps(settings, secrets, discovery_env, guard=guard, ssl_context=ssl_context, watchers=fleet)
    store.deps = deps
    dispatcher = create_dispatcher(
        sessionmaker=sessionmaker, catalog=catalog, deps=deps, settings=settings, sender=sender
    )
    app = App(
        settings, engine, sessionmaker, catalog, deps, bot, dispatcher, sender, watchers, store, notifier, fleet,
        instance_id=instance_id, guard=instance_guard,
    )
    await _start_oauth(app)
    _start_broadcasts(app)
    _start_letter_actions(app)
    return app


def _start_letter_actions(app: App) -> None:
    """Letter actions (bot/letter_actions.py): the handlers' helper, and the alert's action
    buttons and remembered message (for the state shown to follow the server's changes)."""
    sync = LetterStateSync(app.sessionmaker)
    ui = LetterActionsUI(app.bot, app.catalog, AlertActions(app.sessionmaker, app.deps), sync=sync)
    app.dispatcher["letter_actions"] = ui
    app.extra["letter_actions"] = ui
    app.notifier.alert_states = ui.alert_states
    app.notifier.extend_alert = ui.extend_alert
    app.notifier.alert_sent = ui.alert_sent
    app.notifier.on_letters_changed = ui.letters_changed
    app.watchers.letter_sync = sync


SEED_LOCK = lock_key("mailbridge:seed")


async def _seed_and_keys(
    settings: Settings, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> SecretBox:
    """Seed the service list (instances take turns on PostgreSQL), then settle the keys: a new
    key file only on SQLite with no secret stored yet (KeyConfigError otherwise), and the keys
    must read the stored secrets (KeysDoNotMatch otherwise)."""
    async with contextlib.AsyncExitStack() as stack:
        if is_postgres(engine):
            await stack.enter_async_context(xact_lock(engine, SEED_LOCK))
        async with sessionmaker() as session:
            await seed_services(session, settings.mail_provider_overrides)
            await session.commit()
    async with sessionmaker() as session:
        stored = await stored_secrets(session)
    refuse = None
    if stored:
        refuse = f"the database already holds {stored} encrypted secret(s), which a new key could never read"
    elif not settings.is_sqlite:
        refuse = "the database is PostgreSQL, which instances on several hosts may share, and a key file lives on one host"
    keys = load_or_create_keys(
        settings.encryption_keys.get_secret_value() if settings.encryption_keys else None,
        settings.encryption_key_file,
        refuse_new=refuse,
    )
    box = SecretBox(keys)
    async with sessionmaker() as session:
        await check_keys(session, box)
    return box


def _start_broadcasts(app: App) -> None:
    """Outage broadcasts: the runner sends confirmed notices through app.sender (BULK)."""
    from bot.broadcasts import BroadcastRunner

    runner = BroadcastRunner(sessionmaker=app.sessionmaker, sender=app.sender, catalog=app.catalog)
    app.dispatcher["broadcasts"] = runner
    app.extra["broadcasts"] = runner


async def _start_oauth(app: App) -> None:
    """OAuth2 sign-in: the chat side for callbacks and device polling, and the web server for
    the provider's redirect (only with PUBLIC_URL), shared with the API and /health. The
    service (services/oauth_flows.py) tells the chat through ChatSignIn (handlers/oauth.py)."""
    chat = ChatSignIn(
        bot=app.bot, storage=app.dispatcher.storage, catalog=app.catalog, sessionmaker=app.sessionmaker, deps=app.deps
    )
    flows = OAuthFlows(
        settings=app.settings, sessionmaker=app.sessionmaker, deps=app.deps, notifier=chat
    )
    app.dispatcher["oauth_flows"] = flows
    app.extra["oauth_flows"] = flows
    # ONE web server per process: the OAuth2 callback (PUBLIC_URL), the business-process API
    # (API_TOKENS) and /health, on WEB_HOST:WEB_PORT; none when neither is configured
    settings = app.settings
    if settings.web_enabled:
        ctx = WebContext(
            settings=settings, sessionmaker=app.sessionmaker, engine=app.engine, deps=app.deps,
            watch_states=app.watchers.states, catalog=app.catalog, rate_limit=create_api_rate_limit(settings),
            oauth=flows if settings.public_url else None,
            instance_id=app.instance_id, held=app.fleet.held, live_instances=app.fleet.live_instances,
        )
        app.extra["api_rate"] = ctx.rate_limit
        web_app = create_web_app(ctx)
        if settings.webhook_url:
            app.extra["webhook"] = mount_webhook(web_app, app.dispatcher, app.bot, settings)
        web = WebServer(web_app, settings.web_host, settings.web_port)
        await web.start()
        app.extra["web"] = web


def create_api_rate_limit(settings: Settings) -> RateLimit:
    """API_RATE_PER_MINUTE per token: shared by every instance through Redis when REDIS_URL is
    set, else kept in this process (one instance)."""
    if settings.redis_url:
        return RedisRateLimit.from_url(
            settings.redis_url, settings.api_rate_per_minute, prefix=redis_key(settings, "api-rate") + ":"
        )
    return MemoryRateLimit(settings.api_rate_per_minute)


USER_COMMANDS = ("start", "inbox", "search", "settings", "cancel", "help")
ADMIN_COMMANDS = ("admin",)


async def set_commands(app: App) -> None:
    """The command menu, in English (the default) and Russian. Admins see /admin in theirs too
    (a per-chat menu): nobody else gets a hint that admin commands exist."""
    for lang in ("en", "ru"):
        t = app.catalog.get(lang)
        code = None if lang == "en" else lang
        users = [BotCommand(command=c, description=t(f"cmd.{c}")) for c in USER_COMMANDS]
        await app.bot.set_my_commands(users, language_code=code)
        admins = users + [BotCommand(command=c, description=t(f"cmd.{c}")) for c in ADMIN_COMMANDS]
        for admin_id in app.settings.admin_ids:
            try:
                await app.bot.set_my_commands(
                    admins, scope=BotCommandScopeChat(chat_id=admin_id), language_code=code
                )
            except TelegramBadRequest as exc:  # e.g. the admin has not opened the bot yet
                log.warning("admin %s: command menu not set: %s", admin_id, exc.message)
                continue  # the other admins still get theirs


async def wait_for_telegram(bot: Bot, *, max_delay: float = 60.0) -> None:
    """getMe until Telegram answers (network down at start-up is not a reason to exit; a
    refused token is: TelegramUnauthorizedError goes up)."""
    delay = 1.0
    while True:
        try:
            await bot.me()
            return
        except (TelegramNetworkError, TelegramServerError) as exc:
            log.warning("Telegram is not reachable (%s); trying again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


def allowed_updates(dispatcher: Dispatcher) -> list[str]:
    """What Telegram sends us: what the handlers use, plus my_chat_member (a user blocking or
    unblocking the bot)."""
    return sorted(set(dispatcher.resolve_used_update_types()) | {"my_chat_member"})


async def _start_background(app: App) -> asyncio.Task[None]:
    watching = asyncio.create_task(app.start_watching())
    broadcasts = app.extra.get("broadcasts")
    if broadcasts is not None:  # broadcasts a stop interrupted go on where they stopped
        await broadcasts.resume()  # type: ignore[attr-defined]
    return watching


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, enabled: bool) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if enabled else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def run(app: App, *, handle_signals: bool = True) -> None:
    """Take updates until stopped: from WEBHOOK_URL when set, else by polling."""
    if app.settings.webhook_url:
        await run_webhook(app, handle_signals=handle_signals)
    else:
        await run_polling(app, handle_signals=handle_signals)


async def run_webhook(app: App, *, handle_signals: bool = True, stop: asyncio.Event | None = None) -> None:
    """Webhook mode: register the webhook (each instance, idempotently), then serve until
    SIGTERM / SIGINT (or `stop`). Updates arrive on the web server (bot/webhook.py)."""
    from bot.webhook import register_webhook

    stop = stop or asyncio.Event()
    with _stop_on_signals(stop, handle_signals):
        await wait_for_telegram(app.bot)
        await register_webhook(app.bot, app.settings, allowed_updates(app.dispatcher))
        try:
            await set_commands(app)
        except TelegramNetworkError as exc:
            log.warning("Telegram is not reachable (%s); the command menu is not set", exc)
        watching = await _start_background(app)
        log.info("instance %s running: updates by webhook", app.instance_id)
        try:
            await stop.wait()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching


async def run_polling(app: App, *, handle_as_tasks: bool = True, handle_signals: bool = True) -> None:
    """Polling mode. On PostgreSQL only the leader polls (bot/fleet.py PollingLeader): the
    others wait and take over when it stops or dies; every instance watches mailboxes and
    serves its web server meanwhile. Stops on SIGTERM / SIGINT or `dispatcher.stop_polling()`."""
    await wait_for_telegram(app.bot)
    try:
        await set_commands(app)
    except TelegramNetworkError as exc:  # polling retries by itself; the menu can wait
        log.warning("Telegram is not reachable yet (%s); polling will keep trying", exc)
    watching = await _start_background(app)
    stop = asyncio.Event()
    leader = None
    if is_postgres(app.engine):
        leader = PollingLeader(app.settings.database_url, app.instance_id, app.bot.id)
        app.extra["leader"] = leader
    log.info("instance %s running: updates by polling%s", app.instance_id, " (one instance polls)" if leader else "")
    try:
        with _stop_on_signals(stop, handle_signals):
            while not stop.is_set():
                if leader is None:
                    log.info("instance %s polls Telegram", app.instance_id)
                elif not await _first(leader.acquire(), stop):
                    return
                try:
                    await app.bot.delete_webhook(drop_pending_updates=False)
                except TelegramNetworkError as exc:
                    log.warning("Telegram is not reachable yet (%s); polling will keep trying", exc)
                polling = asyncio.create_task(app.dispatcher.start_polling(
                    app.bot,
                    handle_as_tasks=handle_as_tasks,
                    handle_signals=False,
                    close_bot_session=False,
                    allowed_updates=allowed_updates(app.dispatcher),
                ))
                lost = asyncio.create_task(leader.lost() if leader is not None else asyncio.Event().wait())
                stopping = asyncio.create_task(stop.wait())
                try:
                    await asyncio.wait({polling, lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                    stopping.cancel()
                    if not polling.done():
                        try:
                            await app.dispatcher.stop_polling()
                        except RuntimeError:  # asked to stop before polling even began
                            polling.cancel()
                    await asyncio.wait({polling})
                    if not polling.cancelled():
                        polling.result()  # an error of the polling loop goes up
                if not lost.done() or lost.cancelled():  # polling ended or stop: not a lost lead
                    return
    finally:
        if leader is not None:
            app.extra.pop("leader", None)
            await leader.release()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching


async def _first(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run `work` until it is done (True) or `stop` is set first (False)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.done() and not task.cancelled() and task.exception() is None
