"""OAuth2 sign-in as use cases: start one for the connect wizard or for a broken account, the
provider's answer coming back to /oauth/callback (code flow), and device-flow polling.

No Telegram here. What a caller asks for comes back as an outcome (`SignInStarted`,
`SignInRefused`, `Outcome` for the callback page) that the caller renders; what finishes later
(the callback, the end of polling) is told through a `SignInNotifier`, implemented on the chat
side (handlers/oauth.py `ChatSignIn`) and passed in where the app is assembled (bot/app.py).
The notifier also owns the wizard: only it knows whether the person's wizard still waits on its
password step for this sign-in.

The wizard stays on its password step while the person signs in at the provider (they may still
send a password instead). When tokens arrive, the draft keeps them encrypted, IMAP and SMTP are
checked (OAUTHBEARER or XOAUTH2), and the notifier moves the wizard on exactly as after a
password. A sign-in whose wizard was cancelled or moved on stores nothing and its tokens are
revoked where the provider allows.

Several instances (one database, FSM in Redis):
* A code-flow sign-in is a row in `oauth_states` and the wizard's data is in the FSM storage,
  so ANY instance can finish the callback (the one the provider's redirect reaches, behind a
  load balancer): nothing of it is kept in this process. The row is claimed atomically, so a
  callback delivered twice (to one instance or two) is handled once; the second is told
  "already used".
* Device-flow polling is a task in the instance that started it (`_device_tasks`). A restart,
  or that instance going away, drops it: nothing was issued yet, the code just expires at the
  provider, and the person presses Authorize again (the wizard still offers it). A newer
  Authorize on the same instance replaces the older poll; one on another instance polls beside
  it, and the poll whose wizard has moved on stops at its next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mail.check import check_account
from mail.oauth2 import DeviceAuthorization, DevicePending, OAuthError, TokenSet
from mail.types import MailCheckError
from services.deps import MailDeps, OAuthSettings
from services.mailboxes import AccountInput, AlreadyConnected, MailboxService, servers_of
from services.oauth import STATE_TTL, OAuthProblem, OAuthService, ServiceOAuth
from storage.models import Mailbox, MailboxState, OAuthState, Service, User, utcnow

log = logging.getLogger(__name__)

STATE_MINUTES = int(STATE_TTL.total_seconds() // 60)
MAX_DEVICE_WAIT = 15 * 60


class Refusal(str, enum.Enum):
    """Why a sign-in did not start or did not complete; each has a chat message
    (`oauth.chat_<value>`). The callback's problems (services.oauth.Problem) share the values."""

    NOT_OFFERED = "not_offered"  # flag off, no client, service hidden: send the password instead
    UNKNOWN_STATE = "unknown_state"
    USED_STATE = "used_state"
    DONE_STATE = "done_state"  # a completed sign-in's link opened again: nothing changed
    EXPIRED_STATE = "expired_state"
    DENIED = "denied"
    PROVIDER_ERROR = "provider_error"
    NO_VERIFIER = "no_verifier"
    EXCHANGE_FAILED = "exchange_failed"
    NOT_CONFIGURED = "not_configured"
    WIZARD_GONE = "wizard_gone"  # signed in, but the wizard it belonged to is gone: nothing saved
    DEVICE_EXPIRED = "device_expired"
    DEVICE_FAILED = "device_failed"
    INSECURE_LINK = "insecure_link"  # the provider's verification link is not https


# ---- what the chat side renders -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SignInStarted:
    """Open `open_url` and sign in; with `code` (device flow) enter it at `url`."""

    lang: str
    service: str
    email: str
    url: str
    open_url: str
    code: str | None
    minutes: int
    wizard: str | None  # the wizard it belongs to (None: a broken account signs in again)


@dataclass(frozen=True, slots=True)
class SignInRefused:
    lang: str
    service: str
    reason: Refusal
    detail: str = ""
    wizard: str | None = None  # when that wizard still waits, Authorize is offered again


@dataclass(frozen=True, slots=True)
class SignedIn:
    """Tokens arrived for the wizard; IMAP and SMTP are being checked."""

    lang: str
    service: str
    wizard: str


@dataclass(frozen=True, slots=True)
class WizardChecked:
    """The draft has the tokens and was checked: go on to the signature step, or (failure) let
    the person fix what the servers refused."""

    lang: str
    service: str
    wizard: str
    failure: MailCheckError | None


@dataclass(frozen=True, slots=True)
class WizardAlreadyConnected:
    """The user connected a mailbox meanwhile (one per Telegram account): the wizard ends."""

    lang: str
    wizard: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    lang: str
    service: str
    email: str


@dataclass(frozen=True, slots=True)
class ReconnectFailed:
    """Signed in again, but the mail servers refused (the new tokens are kept)."""

    lang: str
    service: str
    failure: MailCheckError


SignInNews = SignInStarted | SignInRefused | SignedIn | WizardChecked | WizardAlreadyConnected | Reconnected | ReconnectFailed


class SignInNotifier(Protocol):
    """The chat side of sign-ins that finish outside an update."""

    async def wizard_account(self, user_id: int, wizard: str | None) -> AccountInput | None:
        """The account fields of the user's connect wizard when it still waits on its password
        step for this sign-in (`wizard` is its nonce); None when cancelled or moved on."""
        ...

    async def tell(self, user_id: int, news: SignInNews) -> None:
        """Tell the person (never raises: a failed message is logged)."""
        ...

    async def bot_username(self) -> str | None:
        """For the callback page's link back to the chat (None: no link)."""
        ...

    def language(self, tag: str | None) -> str:
        """One of the bot's languages for a stored user language or a browser's tag."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the browser's callback page says."""

    lang: str
    ok: bool
    key: str  # "ok", a services.oauth.Problem value, or "wizard_gone"
    service: str


class OAuthFlows:
    """One per bot process (bot/app.py `_start_oauth`). See the module docstring for several
    instances."""

    def __init__(
        self,
        *,
        settings: OAuthSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        deps: MailDeps,
        notifier: SignInNotifier,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.deps = deps
        self.notifier = notifier
        self._device_tasks: dict[int, asyncio.Task[None]] = {}

    async def close(self) -> None:
        tasks = list(self._device_tasks.values())
        self._device_tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def polling(self, user_id: int) -> bool:
        """Whether a device sign-in of this user is being polled in this process."""
        return user_id in self._device_tasks

    async def bot_username(self) -> str | None:
        return await self.notifier.bot_username()

    def _svc(self, session: AsyncSession) -> OAuthService:
        return OAuthService(session, self.deps, self.settings)

    # ---- starting a sign-in ------------------------------------------------------------------
    async def start(
        self, session: AsyncSession, user_id: int, *, service_id: int, email: str, login: str, wizard: str, lang: str
    ) -> SignInStarted | SignInRefused:
        """The wizard's Authorize: a link (code flow, the state row is added to `session`,
        which the caller commits) or a code whose sign-in is then polled in the background."""
        svc = self._svc(session)
        service = await svc.service(service_id)
        setup = await svc.offer(service) if service is not None else None
        if setup is None:
            return SignInRefused(lang, service.name(lang) if service is not None else "", Refusal.NOT_OFFERED, wizard=wizard)
        name = setup.service.name(lang)
        if setup.flow == "code":
            url = await svc.begin_code(user_id, setup, email=email, login=login, wizard=wizard)
            return SignInStarted(lang, name, email, url, url, None, STATE_MINUTES, wizard)
        return await self._start_device(session, user_id, setup, email=email, wizard=wizard, lang=lang)

    async def start_reauthorization(self, user_id: int, mailbox_id: int) -> bool:
        """Send the user a new sign-in (link or code) whose tokens replace those of their OAuth2
        account; on success the account is checked and marked connected. False when OAuth2
        sign-in is not available for the account's service (flag off, no client): the caller
        then explains that the admin must enable it."""
        async with self.sessionmaker() as session:
            mailbox = await session.get(Mailbox, mailbox_id)
            user = await session.get(User, user_id)
            if mailbox is None or user is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
                return False
            lang = self.notifier.language(user.language)
            svc = self._svc(session)
            service = await svc.service(mailbox.service_id)
            setup = await svc.offer(service) if service is not None else None
            if setup is None:
                return False
            email = mailbox.email
            news: SignInStarted | SignInRefused
            if setup.flow == "code":
                url = await svc.begin_code(user_id, setup, email=email, login=mailbox.login, mailbox_id=mailbox.id)
                await session.commit()
                news = SignInStarted(lang, setup.service.name(lang), email, url, url, None, STATE_MINUTES, None)
            else:
                news = await self._start_device(session, user_id, setup, email=email, wizard=None, lang=lang, mailbox_id=mailbox_id)
        await self.notifier.tell(user_id, news)
        return True

    async def _start_device(
        self,
        session: AsyncSession,
        user_id: int,
        setup: ServiceOAuth,
        *,
        email: str,
        wizard: str | None,
        lang: str,
        mailbox_id: int | None = None,
    ) -> SignInStarted | SignInRefused:
        """Ask the provider for a code, then poll in the background (one sign-in per user in
        this process: a newer one replaces the older)."""
        name = setup.service.name(lang)
        try:
            device = await self._svc(session).begin_device(setup)
        except OAuthError as exc:
            log.info("device authorization for user %s refused: %s", user_id, exc.error)
            reason = Refusal.INSECURE_LINK if exc.error == "insecure_link" else Refusal.DEVICE_FAILED
            return SignInRefused(lang, name, reason, exc.error, wizard)
        old = self._device_tasks.pop(user_id, None)
        if old is not None:
            old.cancel()
        self._device_tasks[user_id] = asyncio.create_task(
            self._poll_device(user_id, setup.service.id, device, wizard, lang, mailbox_id), name=f"oauth-device-{user_id}"
        )
        minutes = max(1, int((device.expires_at - time.time()) // 60))
        return SignInStarted(
            lang, name, email, device.verification_uri, device.verification_uri_complete or device.verification_uri,
            device.user_code, minutes, wizard,
        )

    # ---- the browser comes back (code flow) --------------------------------------------------
    async def handle_callback(self, params: Mapping[str, str | None], accept_language: str | None = None) -> Outcome:
        fallback = self.notifier.language((accept_language or "").split(",")[0].split(";")[0].strip() or None)
        async with self.sessionmaker() as session:
            svc = self._svc(session)
            try:
                row = await svc.claim(params.get("state"))
            except OAuthProblem as problem:
                await session.commit()
                return await self._problem(session, problem, None, fallback)
            await session.commit()  # from here on the state is used, whatever happens next
            try:
                tokens = await svc.exchange(
                    row, code=params.get("code"), error=params.get("error"), error_description=params.get("error_description")
                )
            except OAuthProblem as problem:
                return await self._problem(session, problem, row, fallback)
            user = await session.get(User, row.user_id)
            lang = self.notifier.language(user.language if user is not None else fallback)
            service = await svc.service(row.service_id)
            name = service.name(lang) if service is not None else ""
            kept: bool | None
            if row.mailbox_id is not None:
                kept = await self._reconnect(session, row.user_id, row.mailbox_id, tokens, lang, name)
            else:
                kept = await self._continue_wizard(session, row.user_id, row.wizard, tokens, lang, name)
                if kept is None:
                    await svc.discard(row.service_id, tokens)
                    await self.notifier.tell(row.user_id, SignInRefused(lang, name, Refusal.WIZARD_GONE))
                    return Outcome(lang, False, "wizard_gone", name)
            if kept:
                await svc.mark_done(row)  # a replay of this link is told it changes nothing
                await session.commit()
            return Outcome(lang, True, "ok", name)

    async def _problem(self, session: AsyncSession, problem: OAuthProblem, row: OAuthState | None, fallback: str) -> Outcome:
        lang = fallback
        name = ""
        if problem.user_id is not None:
            user = await session.get(User, problem.user_id)
            if user is not None and user.language:
                lang = self.notifier.language(user.language)
            if row is None:
                row = await self._latest_state(session, problem.user_id)
            service = await session.get(Service, row.service_id) if row is not None else None
            name = service.name(lang) if service is not None else ""
            wizard = row.wizard if row is not None else None
            news = SignInRefused(lang, name, Refusal(problem.problem.value), problem.detail or problem.problem.value, wizard)
            await self.notifier.tell(problem.user_id, news)
        log.info("OAuth2 callback refused: %s (user %s)", problem.problem.value, problem.user_id)
        return Outcome(lang, False, problem.problem.value, name)

    @staticmethod
    async def _latest_state(session: AsyncSession, user_id: int) -> OAuthState | None:
        stmt = select(OAuthState).where(OAuthState.user_id == user_id).order_by(OAuthState.id.desc()).limit(1)
        return (await session.execute(stmt)).scalar_one_or_none()

    # ---- tokens -> the wizard goes on --------------------------------------------------------
    async def _continue_wizard(
        self, session: AsyncSession, user_id: int, wizard: str | None, tokens: TokenSet, lang: str, service_name: str
    ) -> bool | None:
        """Store the tokens in the draft, check IMAP and SMTP, let the chat side show the next
        step. True: the tokens are kept; False: not (the user connected a mailbox meanwhile);
        None: the wizard this sign-in belonged to is gone (nothing stored, nothing told yet)."""
        account = await self.notifier.wizard_account(user_id, wizard)
        if account is None or wizard is None:
            return None
        mailboxes = MailboxService(session, self.deps)
        try:
            await mailboxes.store_tokens(user_id, account, tokens)
        except AlreadyConnected:
            await session.rollback()
            await self.notifier.tell(user_id, WizardAlreadyConnected(lang, wizard))
            return False
        await session.commit()
        await self.notifier.tell(user_id, SignedIn(lang, service_name, wizard))
        failure: MailCheckError | None = None
        try:
            await mailboxes.check_draft(user_id, account)
        except MailCheckError as exc:
            failure = exc
        await session.commit()
        await self.notifier.tell(user_id, WizardChecked(lang, service_name, wizard, failure))
        return True

    # ---- new tokens for an existing account --------------------------------------------------
    async def _reconnect(
        self, session: AsyncSession, user_id: int, mailbox_id: int, tokens: TokenSet, lang: str, service_name: str
    ) -> bool:
        """Store, check IMAP and SMTP, mark connected. False when the account is gone (the
        tokens are not kept)."""
        mailbox = await session.get(Mailbox, mailbox_id)
        if mailbox is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
            await self.notifier.tell(user_id, SignInRefused(lang, service_name, Refusal.WIZARD_GONE))
            return False
        svc = self._svc(session)
        await svc.replace_tokens(mailbox, tokens)
        try:
            await check_account(
                servers_of(mailbox),
                await svc.fresh_credentials(mailbox),
                ssl_context=self.deps.ssl_context,
                guard=self.deps.guard,
                timeout=self.deps.timeout,
            )
        except MailCheckError as exc:
            await session.commit()  # keep the new tokens; the account stays as it was
            await self.notifier.tell(user_id, ReconnectFailed(lang, service_name, exc))
            return True
        mailbox.state = MailboxState.CONNECTED.value
        mailbox.state_since = utcnow()
        mailbox.last_error = None
        mailbox.outage_notified = False
        email = mailbox.email
        await session.commit()
        await self.deps.watchers.restart(mailbox_id)  # watch again, catching up on what arrived
        await self.notifier.tell(user_id, Reconnected(lang, service_name, email))
        return True

    # ---- device flow -------------------------------------------------------------------------
    async def _poll_device(
        self, user_id: int, service_id: int, device: DeviceAuthorization, wizard: str | None, lang: str, mailbox_id: int | None
    ) -> None:
        interval = device.interval
        deadline = min(device.expires_at, time.time() + MAX_DEVICE_WAIT)
        try:
            while True:
                await asyncio.sleep(interval)
                if mailbox_id is None and await self.notifier.wizard_account(user_id, wizard) is None:
                    return  # cancelled, or the person sent a password instead
                async with self.sessionmaker() as session:
                    svc = self._svc(session)
                    service = await svc.service(service_id)
                    name = service.name(lang) if service is not None else ""
                    if time.time() > deadline:
                        await self.notifier.tell(user_id, SignInRefused(lang, name, Refusal.DEVICE_EXPIRED, wizard=wizard))
                        return
                    setup = await svc.offer(service) if service is not None else None
                    if setup is None or setup.flow != "device":
                        await self.notifier.tell(user_id, SignInRefused(lang, name, Refusal.NOT_CONFIGURED))
                        return
                    try:
                        tokens = await svc.poll_device(setup, device, interval)
                    except DevicePending as pending:
                        interval = pending.interval
                        continue
                    except OAuthError as exc:
                        reason = {"access_denied": Refusal.DENIED, "expired_token": Refusal.DEVICE_EXPIRED}.get(
                            exc.error, Refusal.DEVICE_FAILED
                        )
                        await self.notifier.tell(user_id, SignInRefused(lang, name, reason, exc.error, wizard))
                        return
                    if mailbox_id is not None:
                        await self._reconnect(session, user_id, mailbox_id, tokens, lang, name)
                    elif await self._continue_wizard(session, user_id, wizard, tokens, lang, name) is None:
                        await svc.discard(service_id, tokens)
                        await self.notifier.tell(user_id, SignInRefused(lang, name, Refusal.WIZARD_GONE))
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("device sign-in of user %s failed", user_id)
        finally:
            if self._device_tasks.get(user_id) is asyncio.current_task():
                self._device_tasks.pop(user_id, None)
