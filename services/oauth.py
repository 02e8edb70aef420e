"""OAuth2 sign-in for mailboxes: the feature flag, per-service clients, sign-in states, token
storage and refresh. No Telegram code here (services/oauth_flows.py runs the sign-ins,
handlers/oauth.py and web/oauth_page.py talk to people). services/mailboxes.py uses this module for
OAuth2 credentials; this module does not use it back (no import cycle).

* Flag `enablePostmanOauth2`: configuration wins when it sets the flag; otherwise the admins'
  value in `feature_flags` decides (default off).
* A service offers OAuth2 when it has a client (id + encrypted secret) and usable endpoints:
  the standard services' come from the providers data (mail/oauth2.py), an admin may override
  them and must give them for company servers and Other. Flow per service: the device flow
  where the provider has one (Microsoft, Yandex), else authorization code + PKCE, which needs
  PUBLIC_URL (the provider sends the browser back to the bot's /oauth/callback).
* A code-flow sign-in is a row in `oauth_states`: only sha256(state) is stored, the PKCE
  verifier is encrypted, the row is bound to the Telegram user, single-use and expires after
  10 minutes. `claim()` marks it used before anything else happens, so a replay finds it used.
  Once the sign-in's tokens are kept, `mark_done()` drops the PKCE verifier (not needed any
  more): a replay of a completed sign-in is told DONE_STATE ("changes nothing"), not "nothing
  was saved".
* Tokens live in `Mailbox.secret_enc` as encrypted JSON {access_token, refresh_token,
  expires_at, token_type}. `fresh_credentials()` refreshes when less than a minute is left and
  stores a rotated refresh token at once; `invalid_grant` marks the account broken
  (ReauthorizationRequired): only a new sign-in helps.
Secrets never reach a log line, an exception message or FSM storage.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol as TypingProtocol

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from mail.oauth2 import (
    ClientConfig,
    DeviceAuthorization,
    Endpoints,
    OAuthClient,
    OAuthError,
    TokenSet,
    authorization_url,
    builtin_endpoints,
    new_code_verifier,
)
from mail.types import Credentials, FailureKind, MailCheckError, Protocol
from services.deps import MailDeps, OAuthSettings
from services.hooks import checkpoint
from storage.locks import is_postgres, lock_key, xact_lock
from storage.models import (
    AuthKind,
    FeatureFlag,
    Mailbox,
    MailboxState,
    OAuthState,
    Service,
    ServiceKind,
    utcnow,
)
from storage.repositories import ServiceRepo

log = logging.getLogger(__name__)

FLAG = "enablePostmanOauth2"
CALLBACK_PATH = "/oauth/callback"
STATE_TTL = timedelta(minutes=10)
STATE_KEEP = timedelta(days=1)  # expired rows stay a while so a late click is told "expired"
REFRESH_MARGIN = 60.0
# tokens another instance got a moment ago are used while they have this long left (a provider
# handing out tokens shorter-lived than REFRESH_MARGIN would otherwise get one refresh per instance)
SHARED_REFRESH_MARGIN = 10.0
MAX_STATE_LEN = 200
BROKEN_ERROR = "oauth:invalid_grant"


class Problem(str, enum.Enum):
    """Why a sign-in did not complete; each has a page and a chat message."""

    UNKNOWN_STATE = "unknown_state"  # forged, truncated or from another bot
    USED_STATE = "used_state"  # replayed, or replaced by a newer sign-in
    DONE_STATE = "done_state"  # the link of a sign-in that got its tokens, opened again
    EXPIRED_STATE = "expired_state"
    DENIED = "denied"  # the person pressed Deny at the provider
    PROVIDER_ERROR = "provider_error"
    NO_VERIFIER = "no_verifier"  # the PKCE verifier is missing or unreadable
    EXCHANGE_FAILED = "exchange_failed"  # the provider refused the code
    NOT_CONFIGURED = "not_configured"  # flag off or client removed meanwhile


class OAuthProblem(Exception):
    def __init__(self, problem: Problem, *, user_id: int | None = None, detail: str = "") -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.user_id = user_id
        self.detail = detail[:200]


class ReauthorizationRequired(MailCheckError):
    """The provider no longer accepts the refresh token (invalid_grant): the account is marked
    broken and only a new sign-in (Reconnect -> Save) restores it."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            Protocol.IMAP,
            FailureKind.AUTH_FAILED,
            detail or "the sign-in was withdrawn at the provider (invalid_grant); sign in again",
        )


@dataclass(frozen=True, slots=True)
class ServiceOAuth:
    """A service's usable OAuth2 set-up."""

    service: Service
    endpoints: Endpoints
    client: ClientConfig
    flow: str  # "code" | "device"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A state that passed every check, with the provider's tokens."""

    row: OAuthState
    tokens: TokenSet


def hash_state(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)



class _RefreshCoordinator:
    """One refresh at a time per mailbox in this process, and a refresh done by one task is
    reused by the others that raced it with the same (now rotated) refresh token. Across
    instances (PostgreSQL), `OAuthService._refresh_shared` adds an advisory lock per mailbox."""

    def __init__(self, keep: int = 512) -> None:
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[tuple[int, str], TokenSet] = OrderedDict()
        self._keep = keep

    def lock(self, mailbox_id: int) -> asyncio.Lock:
        lock = self._locks.get(mailbox_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[mailbox_id] = lock
        return lock

    def recent(self, mailbox_id: int, refresh_token: str) -> TokenSet | None:
        return self._recent.get((mailbox_id, hash_state(refresh_token)))

    def remember(self, mailbox_id: int, refresh_token: str, tokens: TokenSet) -> None:
        self._recent[(mailbox_id, hash_state(refresh_token))] = tokens
        while len(self._recent) > self._keep:
            self._recent.popitem(last=False)


_refreshes = _RefreshCoordinator()


class _UseCase(TypingProtocol):
    session: AsyncSession
    deps: MailDeps


async def wizard_flow(mailboxes: _UseCase, settings: OAuthSettings | None, service: Service) -> str | None:
    """The sign-in flow the connect wizard offers for `service` ("code" / "device"), or None
    (flag off, no client, no usable flow). Nothing about OAuth2 shows when this is None."""
    if settings is None:
        return None
    setup = await OAuthService(mailboxes.session, mailboxes.deps, settings).offer(service)
    return setup.flow if setup is not None else None


class OAuthService:
    def __init__(
        self,
        session: AsyncSession,
        deps: MailDeps,
        settings: OAuthSettings | None = None,
        *,
        refresh_margin: float = REFRESH_MARGIN,
        refreshes: _RefreshCoordinator | None = None,
    ) -> None:
        self.session = session
        self.deps = deps
        self.settings = settings
        self.refresh_margin = refresh_margin
        self.refreshes = refreshes or _refreshes  # one per process (tests give each "instance" its own)
        self.services = ServiceRepo(session)

    # ---- the feature flag ------------------------------------------------------------------
    async def flag_enabled(self) -> bool:
        if self.settings is not None and self.settings.oauth_flag_configured:
            return bool(self.settings.enable_postman_oauth2)
        row = await self.session.get(FeatureFlag, FLAG)
        return bool(row is not None and row.enabled)

    async def set_flag(self, enabled: bool, by: int | None = None) -> bool:
        """Store the admins' choice; returns the flag's effective value (configuration wins)."""
        row = await self.session.get(FeatureFlag, FLAG)
        if row is None:
            row = FeatureFlag(name=FLAG, enabled=enabled, updated_by=by, updated_at=utcnow())
            self.session.add(row)
        else:
            row.enabled, row.updated_by, row.updated_at = enabled, by, utcnow()
        await self.session.flush()
        return await self.flag_enabled()

    # ---- clients per service ---------------------------------------------------------------
    @staticmethod
    def endpoints_for(service: Service) -> Endpoints | None:
        base = builtin_endpoints(service.code) if service.kind == ServiceKind.STANDARD.value else None
        if base is None:
            if not service.oauth2_token_url:
                return None
            base = Endpoints(token_url=service.oauth2_token_url)
        endpoints = base.with_overrides(
            authorize_url=service.oauth2_authorize_url,
            token_url=service.oauth2_token_url,
            device_url=service.oauth2_device_url,
            revoke_url=service.oauth2_revoke_url,
            scopes=(service.oauth2_scopes or "").split() or None,
        )
        try:
            endpoints.validate()
        except ValueError:
            log.warning("service %s: unusable OAuth2 endpoints", service.code)
            return None
        return endpoints

    def client_for(self, service: Service) -> ClientConfig | None:
        if not service.oauth2_client_id:
            return None
        secret = None
        if service.oauth2_client_secret_enc:
            try:
                secret = self.deps.secrets.decrypt(service.oauth2_client_secret_enc)
            except ValueError:
                log.error("service %s: the OAuth2 client secret cannot be decrypted", service.code)
                return None
        return ClientConfig(service.oauth2_client_id, secret)

    def setup_for(self, service: Service) -> ServiceOAuth | None:
        """The service's OAuth2 set-up when sign-in can be offered (flag not considered)."""
        endpoints = self.endpoints_for(service)
        client = self.client_for(service)
        if endpoints is None or client is None:
            return None
        if endpoints.supports_device:
            flow = "device"
        elif endpoints.supports_code and self.settings is not None and self.settings.public_url:
            flow = "code"
        else:
            return None
        return ServiceOAuth(service, endpoints, client, flow)

    async def offer(self, service: Service) -> ServiceOAuth | None:
        """What the wizard shows an Authorize button for: flag on and a usable set-up."""
        if not service.enabled or not await self.flag_enabled():
            return None
        return self.setup_for(service)

    async def configure_client(
        self,
        service_code: str,
        client_id: str,
        client_secret: str | None,
        *,
        authorize_url: str | None = None,
        token_url: str | None = None,
        device_url: str | None = None,
        scopes: Sequence[str] = (),
    ) -> Service:
        """Set a service's OAuth2 client (the secret encrypted). Raises LookupError for an
        unknown service and ValueError for unusable endpoints."""
        service = await self.services.by_code(service_code)
        if service is None:
            raise LookupError(service_code)
        if not client_id or len(client_id) > 500 or any(c.isspace() for c in client_id):
            raise ValueError("client id")
        candidate = Endpoints(token_url=token_url or "https://placeholder.invalid/token")
        candidate = candidate.with_overrides(authorize_url=authorize_url, device_url=device_url)
        candidate.validate()
        if service.kind != ServiceKind.STANDARD.value or builtin_endpoints(service.code) is None:
            if not token_url or not (authorize_url or device_url):
                raise ValueError("endpoints required")
        service.oauth2_client_id = client_id
        service.oauth2_client_secret_enc = self.deps.secrets.encrypt(client_secret) if client_secret else None
        service.oauth2_authorize_url = authorize_url or None
        service.oauth2_token_url = token_url or None
        service.oauth2_device_url = device_url or None
        service.oauth2_scopes = " ".join(scopes) or None
        await self.session.flush()
        return service

    async def service(self, service_id: int) -> Service | None:
        return await self.services.get(service_id)

    # ---- authorization code flow -----------------------------------------------------------
    def redirect_uri(self) -> str:
        if self.settings is None or not self.settings.public_url:
            raise RuntimeError("PUBLIC_URL is not set")
        return self.settings.public_url + CALLBACK_PATH

    async def begin_code(
        self,
        user_id: int,
        setup: ServiceOAuth,
        *,
        email: str,
        login: str,
        wizard: str | None = None,
        mailbox_id: int | None = None,
    ) -> str:
        """A new sign-in: store its state and return the provider's authorization URL. Older
        unfinished sign-ins of the same user stop working."""
        now = utcnow()
        await self.session.execute(delete(OAuthState).where(OAuthState.expires_at < now - STATE_KEEP))
        await self.session.execute(
            update(OAuthState)
            .where(OAuthState.user_id == user_id, OAuthState.used_at.is_(None))
            .values(used_at=now)
        )
        state = secrets.token_urlsafe(32)
        verifier = new_code_verifier()
        self.session.add(
            OAuthState(
                state_hash=hash_state(state),
                user_id=user_id,
                service_id=setup.service.id,
                flow="code",
                purpose="reconnect" if mailbox_id else "connect",
                mailbox_id=mailbox_id,
                wizard=wizard,
                email=email,
                login=login,
                code_verifier_enc=self.deps.secrets.encrypt(verifier),
                created_at=now,
                expires_at=now + STATE_TTL,
            )
        )
        await self.session.flush()
        return authorization_url(
            setup.endpoints,
            setup.client,
            redirect_uri=self.redirect_uri(),
            state=state,
            verifier=verifier,
            login_hint=email,
        )

    async def claim(self, state: str | None) -> OAuthState:
        """Find the state and mark it used (the caller commits at once). Raises OAuthProblem
        for an unknown, used or expired state."""
        if not state or len(state) > MAX_STATE_LEN:
            raise OAuthProblem(Problem.UNKNOWN_STATE)
        row = (
            await self.session.execute(select(OAuthState).where(OAuthState.state_hash == hash_state(state)))
        ).scalar_one_or_none()
        if row is None:
            raise OAuthProblem(Problem.UNKNOWN_STATE)
        now = utcnow()
        result = await self.session.execute(
            update(OAuthState)
            .where(OAuthState.id == row.id, OAuthState.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            done = row.code_verifier_enc is None  # (mark_done) the sign-in got its tokens
            raise OAuthProblem(Problem.DONE_STATE if done else Problem.USED_STATE, user_id=row.user_id)
        await self.session.refresh(row)
        if _aware(row.expires_at) <= now:
            raise OAuthProblem(Problem.EXPIRED_STATE, user_id=row.user_id)
        return row

    async def exchange(
        self, row: OAuthState, *, code: str | None, error: str | None = None, error_description: str | None = None
    ) -> TokenSet:
        """The provider's answer for a claimed state -> tokens. Raises OAuthProblem."""
        if error:
            problem = Problem.DENIED if error == "access_denied" else Problem.PROVIDER_ERROR
            detail = "".join(ch for ch in f"{error}: {error_description or ''}" if ch.isprintable())
            raise OAuthProblem(problem, user_id=row.user_id, detail=detail.strip(": "))
        if not code or len(code) > 4096:
            raise OAuthProblem(Problem.PROVIDER_ERROR, user_id=row.user_id, detail="no code")
        verifier = None
        if row.code_verifier_enc:
            try:
                verifier = self.deps.secrets.decrypt(row.code_verifier_enc)
            except ValueError:
                verifier = None
        if not verifier:
            raise OAuthProblem(Problem.NO_VERIFIER, user_id=row.user_id)
        service = await self.services.get(row.service_id)
        setup = await self.offer(service) if service is not None else None
        if setup is None:
            raise OAuthProblem(Problem.NOT_CONFIGURED, user_id=row.user_id)
        await checkpoint(self.session)  # no transaction held across the provider's answer
        try:
            async with self._client(setup) as http:
                return await http.exchange_code(code, redirect_uri=self.redirect_uri(), verifier=verifier)
        except OAuthError as exc:
            log.info("code exchange for user %s refused: %s", row.user_id, exc.error)
            raise OAuthProblem(Problem.EXCHANGE_FAILED, user_id=row.user_id, detail=exc.error) from None

    async def mark_done(self, row: OAuthState) -> None:
        """This (claimed) state's tokens are kept: the verifier is dropped, which also tells a
        later replay that the sign-in went through."""
        row.code_verifier_enc = None
        await self.session.flush()

    # ---- device flow -----------------------------------------------------------------------
    async def begin_device(self, setup: ServiceOAuth) -> DeviceAuthorization:
        await checkpoint(self.session)  # no transaction held across the provider's answer
        async with self._client(setup) as http:
            return await http.start_device()

    async def poll_device(self, setup: ServiceOAuth, device: DeviceAuthorization, interval: int) -> TokenSet:
        """One poll: TokenSet, or DevicePending / OAuthError from mail.oauth2."""
        await checkpoint(self.session)  # no transaction held across the provider's answer
        async with self._client(setup) as http:
            return await http.poll_device(device, interval)

    # ---- tokens ----------------------------------------------------------------------------
    def store_tokens(self, mailbox: Mailbox, tokens: TokenSet) -> None:
        mailbox.secret_enc = self.deps.secrets.encrypt(tokens.to_json())
        mailbox.auth_kind = AuthKind.OAUTH2.value

    def tokens_of(self, mailbox: Mailbox) -> TokenSet:
        if mailbox.auth_kind != AuthKind.OAUTH2.value:
            raise ValueError("not an OAuth2 mailbox")
        return TokenSet.from_json(self.deps.secrets.decrypt(mailbox.secret_enc))

    async def replace_tokens(self, mailbox: Mailbox, tokens: TokenSet) -> None:
        """A new sign-in for an existing (e.g. broken) account."""
        self.store_tokens(mailbox, tokens)
        await self.session.flush()

    async def fresh_credentials(self, mailbox: Mailbox) -> Credentials:
        """OAuth2 credentials (OAUTHBEARER or XOAUTH2) with an access token valid for at least `refresh_margin` s.
        A refresh is stored in the session (flushed; the caller commits). Raises
        ReauthorizationRequired on invalid_grant (account marked broken), MailCheckError
        (TIMEOUT/PROTOCOL) when the provider can't be reached or answers oddly."""
        tokens = self.tokens_of(mailbox)
        if not tokens.expires_within(self.refresh_margin) or not tokens.refresh_token:
            return Credentials(mailbox.login, oauth2_token=tokens.access_token)
        async with self.refreshes.lock(mailbox.id):
            tokens = self.tokens_of(mailbox)
            old_refresh = tokens.refresh_token
            if tokens.expires_within(self.refresh_margin) and old_refresh:
                done = self.refreshes.recent(mailbox.id, old_refresh)
                if done is not None and not done.expires_within(self.refresh_margin):
                    tokens = done
                    self.store_tokens(mailbox, tokens)
                    await self.session.flush()
                elif self._shared_engine() is not None:
                    tokens = await self._refresh_shared(mailbox, old_refresh)
                    self.refreshes.remember(mailbox.id, old_refresh, tokens)
                else:
                    tokens = await self._refresh(mailbox, old_refresh)
                    self.refreshes.remember(mailbox.id, old_refresh, tokens)
                    self.store_tokens(mailbox, tokens)
                    await self.session.flush()
        return Credentials(mailbox.login, oauth2_token=tokens.access_token)

    def _shared_engine(self) -> AsyncEngine | None:
        """The engine when the database is PostgreSQL (several instances may refresh the same
        mailbox); None on SQLite, where one instance runs (bot/fleet.py)."""
        bind = self.session.bind
        return bind if isinstance(bind, AsyncEngine) and is_postgres(bind) else None

    async def _refresh_shared(self, mailbox: Mailbox, refresh_token: str) -> TokenSet:
        """A refresh serialised across instances, so a rotated refresh token is used once.

        Under an advisory lock per mailbox (a transaction on a connection of its own, nothing
        else locked): read the stored tokens again; when another instance refreshed meanwhile,
        use its tokens (or refresh with its new refresh token); else refresh. The new tokens are
        written through the lock's connection and committed as the lock is released, so the
        next instance to get the lock reads them. The session's copy is set as already stored:
        its later commit never writes back an older token."""
        engine = self._shared_engine()
        assert engine is not None
        await checkpoint(self.session)  # the session holds nothing the lock's transaction writes
        key = lock_key(f"mailbridge:oauth-refresh:{mailbox.id}")
        async with xact_lock(engine, key, wait=2 * self.deps.timeout + 5) as conn:
            stored = (await conn.execute(select(Mailbox.secret_enc).where(Mailbox.id == mailbox.id))).scalar_one_or_none()
            if stored is None:
                raise MailCheckError(Protocol.IMAP, FailureKind.PROTOCOL, "the account was deleted")
            current = TokenSet.from_json(self.deps.secrets.decrypt(stored))
            if current.refresh_token != refresh_token:  # another instance refreshed first
                log.info("mailbox %s: tokens refreshed by another instance meanwhile", mailbox.id)
                if not current.expires_within(SHARED_REFRESH_MARGIN) or not current.refresh_token:
                    set_committed_value(mailbox, "secret_enc", stored)
                    return current
                refresh_token = current.refresh_token
            tokens = await self._refresh(mailbox, refresh_token)
            new = self.deps.secrets.encrypt(tokens.to_json())
            await conn.execute(
                update(Mailbox).where(Mailbox.id == mailbox.id).values(secret_enc=new, auth_kind=AuthKind.OAUTH2.value)
            )
        set_committed_value(mailbox, "secret_enc", new)
        return tokens

    async def _refresh(self, mailbox: Mailbox, refresh_token: str) -> TokenSet:
        service = await self.services.get(mailbox.service_id)
        endpoints = self.endpoints_for(service) if service is not None else None
        client = self.client_for(service) if service is not None else None
        if service is None or endpoints is None or client is None:
            raise MailCheckError(Protocol.IMAP, FailureKind.PROTOCOL, "the service has no OAuth2 client configured")
        await checkpoint(self.session)  # no transaction held across the provider's answer
        try:
            async with OAuthClient(endpoints, client, ssl_context=self.deps.ssl_context, timeout=self.deps.timeout) as http:
                tokens = await http.refresh(refresh_token)
        except OAuthError as exc:
            if exc.invalid_grant:
                log.warning("mailbox %s: refresh token refused (invalid_grant); account broken", mailbox.id)
                if mailbox.state != MailboxState.DRAFT.value:
                    mailbox.state = MailboxState.BROKEN.value
                    mailbox.state_since = utcnow()
                mailbox.last_error = BROKEN_ERROR
                await self.session.flush()
                raise ReauthorizationRequired() from None
            kind = FailureKind.TIMEOUT if exc.error == "network" else FailureKind.PROTOCOL
            raise MailCheckError(Protocol.IMAP, kind, f"token refresh failed: {exc.error}") from None
        log.info("mailbox %s: access token refreshed", mailbox.id)
        return tokens

    async def revoke(self, mailbox: Mailbox) -> bool:
        """Revoke the mailbox's grant at the provider when it supports revocation (call before
        deleting the account). True when the provider confirmed; never raises for the provider."""
        if mailbox.auth_kind != AuthKind.OAUTH2.value:
            return False
        try:
            tokens = self.tokens_of(mailbox)
        except (ValueError, KeyError, json.JSONDecodeError):
            return False
        service = await self.services.get(mailbox.service_id)
        endpoints = self.endpoints_for(service) if service is not None else None
        client = self.client_for(service) if service is not None else None
        if endpoints is None or client is None or not endpoints.supports_revocation:
            return False
        token, hint = (tokens.refresh_token, "refresh_token") if tokens.refresh_token else (tokens.access_token, "access_token")
        if endpoints.revoke_style == "yandex":
            token, hint = tokens.access_token, "access_token"
        await checkpoint(self.session)  # no transaction held across the provider's answer
        try:
            async with OAuthClient(endpoints, client, ssl_context=self.deps.ssl_context, timeout=self.deps.timeout) as http:
                await http.revoke(token, hint=hint)
        except OAuthError as exc:
            log.warning("mailbox %s: token revocation failed: %s", mailbox.id, exc.error)
            return False
        log.info("mailbox %s: OAuth2 grant revoked at the provider", mailbox.id)
        return True

    async def discard(self, service_id: int, tokens: TokenSet) -> None:
        """Tokens nobody will use (the sign-in's wizard is gone): revoke them where possible."""
        service = await self.services.get(service_id)
        endpoints = self.endpoints_for(service) if service is not None else None
        client = self.client_for(service) if service is not None else None
        if endpoints is None or client is None or not endpoints.supports_revocation:
            return
        yandex = endpoints.revoke_style == "yandex"
        token = tokens.refresh_token if tokens.refresh_token and not yandex else tokens.access_token
        await checkpoint(self.session)  # no transaction held across the provider's answer
        try:
            async with OAuthClient(endpoints, client, ssl_context=self.deps.ssl_context, timeout=self.deps.timeout) as http:
                await http.revoke(token, hint="refresh_token" if token == tokens.refresh_token else "access_token")
        except OAuthError as exc:
            log.info("could not revoke unused tokens: %s", exc.error)

    # ---- internals -------------------------------------------------------------------------
    def _client(self, setup: ServiceOAuth) -> OAuthClient:
        return OAuthClient(setup.endpoints, setup.client, ssl_context=self.deps.ssl_context, timeout=self.deps.timeout)
