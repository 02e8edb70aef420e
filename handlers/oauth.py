"""OAuth2 sign-in in the chat: the wizard's Authorize button, the device-flow message and its
polling, what the chat says when the browser comes back (bot/web.py calls `OAuthFlows`), and
(the admin commands `/oauth_flag on|off` and `/oauth_client ...` are in handlers/admin.py).

The wizard stays on its password step while the person signs in at the provider (they may
still send a password instead). When tokens arrive, the wizard continues exactly as after a
password: the draft keeps the encrypted tokens, IMAP and SMTP are checked (OAUTHBEARER or XOAUTH2), then the
signature step follows. A sign-in whose wizard was cancelled or moved on stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards as kb
from bot.callbacks import WizardCB
from bot.config import Settings
from bot.i18n import Catalog, Translator, pick_language
from bot.render import check_failure
from bot.routing import RouteTable
from bot.states import ConnectMailbox as S
from handlers import connect
from mail.check import check_account
from mail.oauth2 import DeviceAuthorization, DevicePending, OAuthError, TokenSet
from mail.types import MailCheckError
from services.deps import MailDeps
from services.mailboxes import AlreadyConnected, MailboxService, servers_of
from services.oauth import STATE_TTL, OAuthProblem, OAuthService, ServiceOAuth
from storage.models import Mailbox, MailboxState, OAuthState, Service, User

log = logging.getLogger(__name__)
router = RouteTable("oauth")

STATE_MINUTES = int(STATE_TTL.total_seconds() // 60)
MAX_DEVICE_WAIT = 15 * 60


def authorize_rows(t: Translator, data: Mapping[str, Any]) -> list[list[InlineKeyboardButton]]:
    """The Authorize button for the wizard's password step (empty unless offered)."""
    if not data.get("oauth"):
        return []
    return [[kb.wiz(t, data["wiz"], "oauth", "oauth.btn_authorize", service=data.get("service_name", ""))]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the browser's callback page says."""

    lang: str
    ok: bool
    key: str  # "ok" or a Problem value or "wizard_gone"
    service: str


def _sign_in_markup(t: Translator, button_text: str, url: str, nonce: str | None) -> InlineKeyboardMarkup:
    rows: list[list[InlineKeyboardButton]] = [[InlineKeyboardButton(text=button_text, url=url)]]
    if nonce:
        rows.append(kb.nav_row(t, nonce))
    return kb.markup(rows)


class OAuthFlows:
    """The chat side of sign-ins that finish outside an update: the browser's callback and
    device-flow polling. One per bot process (built by bot.app.build_app)."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        deps: MailDeps,
        bot: Bot,
        storage: BaseStorage,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.catalog = catalog
        self.deps = deps
        self.bot = bot
        self.storage = storage
        self._device_tasks: dict[int, asyncio.Task[None]] = {}
        self._username: str | None = None

    async def close(self) -> None:
        tasks = list(self._device_tasks.values())
        self._device_tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def bot_username(self) -> str | None:
        if self._username is None:
            try:
                self._username = (await self.bot.me()).username
            except Exception:  # the page still works without the link
                log.warning("getMe failed; the callback page has no t.me link", exc_info=True)
        return self._username

    def fsm(self, user_id: int) -> FSMContext:
        # private chats: chat id == user id
        return FSMContext(self.storage, StorageKey(bot_id=self.bot.id, chat_id=user_id, user_id=user_id))

    async def _say(self, user_id: int, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message | None:
        try:
            return await self.bot.send_message(user_id, text, reply_markup=reply_markup)
        except Exception:
            log.warning("could not message user %s", user_id, exc_info=True)
            return None

    async def _wizard_waiting(self, user_id: int, wizard: str | None) -> dict[str, Any] | None:
        """The wizard's data when it still waits on its password step for this sign-in."""
        fsm = self.fsm(user_id)
        data = await fsm.get_data()
        if not wizard or data.get("wiz") != wizard or await fsm.get_state() != S.waiting_password.state:
            return None
        return data

    async def _retry_markup(self, t: Translator, user_id: int, wizard: str | None) -> InlineKeyboardMarkup | None:
        data = await self._wizard_waiting(user_id, wizard)
        if data is None:
            return None
        return kb.markup([*authorize_rows(t, data), kb.nav_row(t, data["wiz"])])

    # ---- the browser comes back (code flow) ------------------------------------------------
    async def handle_callback(self, params: Mapping[str, str | None], accept_language: str | None = None) -> Outcome:
        fallback_lang = pick_language((accept_language or "").split(",")[0].split(";")[0].strip() or None)
        async with self.sessionmaker() as session:
            svc = OAuthService(session, self.deps, self.settings)
            try:
                row = await svc.claim(params.get("state"))
            except OAuthProblem as problem:
                await session.commit()
                return await self._problem(session, problem, None, fallback_lang)
            await session.commit()  # from here on the state is used, whatever happens next
            try:
                tokens = await svc.exchange(
                    row,
                    code=params.get("code"),
                    error=params.get("error"),
                    error_description=params.get("error_description"),
                )
            except OAuthProblem as problem:
                return await self._problem(session, problem, row, fallback_lang)
            user = await session.get(User, row.user_id)
            t = self.catalog.get(user.language if user is not None else fallback_lang)
            service = await svc.service(row.service_id)
            name = service.name(t.lang) if service is not None else ""
            if row.mailbox_id is not None:
                await self._reconnect(session, row.user_id, row.mailbox_id, tokens, t, name)
                return Outcome(t.lang, True, "ok", name)
            if not await self.continue_wizard(session, row.user_id, row.wizard, tokens, t, name):
                await svc.discard(row.service_id, tokens)
                await self._say(row.user_id, t("oauth.chat_wizard_gone", service=name))
                return Outcome(t.lang, False, "wizard_gone", name)
            return Outcome(t.lang, True, "ok", name)

    async def _problem(
        self, session: AsyncSession, problem: OAuthProblem, row: OAuthState | None, fallback_lang: str
    ) -> Outcome:
        lang = fallback_lang
        name = ""
        if problem.user_id is not None:
            user = await session.get(User, problem.user_id)
            if user is not None and user.language:
                lang = user.language
            t = self.catalog.get(lang)
            if row is None:
                row = await self._latest_state(session, problem.user_id)
            service = await session.get(Service, row.service_id) if row is not None else None
            name = service.name(lang) if service is not None else ""
            wizard = row.wizard if row is not None else None
            text = t(
                f"oauth.chat_{problem.problem.value}",
                service=name,
                detail=problem.detail or problem.problem.value,
                minutes=STATE_MINUTES,
            )
            await self._say(problem.user_id, text, await self._retry_markup(t, problem.user_id, wizard))
        log.info("OAuth2 callback refused: %s (user %s)", problem.problem.value, problem.user_id)
        return Outcome(lang, False, problem.problem.value, name)

    @staticmethod
    async def _latest_state(session: AsyncSession, user_id: int) -> OAuthState | None:
        stmt = select(OAuthState).where(OAuthState.user_id == user_id).order_by(OAuthState.id.desc()).limit(1)
        return (await session.execute(stmt)).scalar_one_or_none()

    # ---- tokens -> the wizard goes on ------------------------------------------------------
    async def continue_wizard(
        self, session: AsyncSession, user_id: int, wizard: str | None, tokens: TokenSet, t: Translator, service_name: str
    ) -> bool:
        """Store the tokens in the draft, check IMAP and SMTP, show the next step. False when
        the wizard this sign-in belonged to is gone (nothing stored then)."""
        data = await self._wizard_waiting(user_id, wizard)
        if data is None:
            return False
        fsm = self.fsm(user_id)
        account = connect._account(data)
        try:
            await OAuthService(session, self.deps, self.settings).save_draft(user_id, account, tokens)
        except AlreadyConnected:
            await session.rollback()
            await fsm.clear()
            await self._say(user_id, t("connect.already"))
            return True
        await session.commit()
        await self._say(user_id, t("oauth.signed_in", service=service_name))
        progress = await self._say(user_id, t("connect.checking"))
        mailboxes = MailboxService(session, self.deps)
        try:
            await mailboxes.check_draft(user_id, account)
        except MailCheckError as exc:
            await session.commit()
            await fsm.update_data(has_secret=True, fail_kind=exc.kind.value, fail_protocol=exc.protocol.value)
            await fsm.set_state(S.choosing_fix)
            data = await fsm.get_data()
            text = check_failure(t, exc, hint=connect._hint(t, data))
            markup = connect._fix_keyboard(t, data, exc)
            if progress is not None:
                await progress.edit_text(text, reply_markup=markup)
            else:
                await self._say(user_id, text, markup)
            return True
        await session.commit()
        await fsm.update_data(has_secret=True)
        await fsm.set_state(S.waiting_signature)
        if progress is not None:
            await progress.edit_text(t("connect.check_ok"))
        text, markup = await connect._render(S.waiting_signature, await fsm.get_data(), t, mailboxes)
        await self._say(user_id, text, markup)
        return True

    # ---- a new sign-in for an existing account (Reconnect -> Save) --------------------------
    async def start_reauthorization(self, user_id: int, mailbox_id: int) -> bool:
        """Send the user a new sign-in (link or device code) whose tokens replace those of
        their OAuth2 account; on success the account is checked and marked connected. False
        when OAuth2 sign-in is not available for the account's service (flag off, no client):
        the caller then explains that the admin must enable it, or offers a password."""
        async with self.sessionmaker() as session:
            mailbox = await session.get(Mailbox, mailbox_id)
            user = await session.get(User, user_id)
            if mailbox is None or user is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
                return False
            t = self.catalog.get(user.language)
            svc = OAuthService(session, self.deps, self.settings)
            service = await svc.service(mailbox.service_id)
            setup = await svc.offer(service) if service is not None else None
            if setup is None:
                return False
            name = setup.service.name(t.lang)
            if setup.flow == "code":
                url = await svc.begin_code(user_id, setup, email=mailbox.email, login=mailbox.login, mailbox_id=mailbox.id)
                await session.commit()
                await self._say(
                    user_id,
                    t("oauth.open_link", service=name, email=mailbox.email, minutes=STATE_MINUTES),
                    _sign_in_markup(t, t("oauth.btn_sign_in", service=name), url, None),
                )
                return True
            email = mailbox.email
        await self.start_device(user_id, setup, {"email": email}, t, None, mailbox_id=mailbox_id)
        return True

    async def _reconnect(
        self, session: AsyncSession, user_id: int, mailbox_id: int, tokens: TokenSet, t: Translator, service_name: str
    ) -> None:
        """New tokens for an existing account: store, check IMAP and SMTP, mark connected."""
        mailbox = await session.get(Mailbox, mailbox_id)
        if mailbox is None or mailbox.user_id != user_id or mailbox.state == MailboxState.DRAFT.value:
            await self._say(user_id, t("oauth.chat_wizard_gone", service=service_name))
            return
        svc = OAuthService(session, self.deps, self.settings)
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
            await self._say(user_id, check_failure(t, exc))
            return
        mailbox.state = MailboxState.CONNECTED.value
        mailbox.state_since = datetime.now(UTC)
        mailbox.last_error = None
        await session.commit()
        await self.deps.watchers.restart(mailbox_id)  # watch again, catching up on what arrived
        await self._say(user_id, t("oauth.reconnected", service=service_name, email=mailbox.email))

    # ---- device flow -----------------------------------------------------------------------
    async def start_device(
        self,
        user_id: int,
        setup: ServiceOAuth,
        data: Mapping[str, Any],
        t: Translator,
        session: AsyncSession | None,
        *,
        mailbox_id: int | None = None,
    ) -> None:
        """Show the code and link, then poll in the background (one sign-in per user)."""
        name = setup.service.name(t.lang)
        try:
            if session is None:
                async with self.sessionmaker() as own:
                    device = await OAuthService(own, self.deps, self.settings).begin_device(setup)
            else:
                device = await OAuthService(session, self.deps, self.settings).begin_device(setup)
        except OAuthError as exc:
            await self._say(user_id, t("oauth.chat_device_failed", service=name, detail=exc.error),
                            await self._retry_markup(t, user_id, data.get("wiz")))
            return
        minutes = max(1, int((device.expires_at - time.time()) // 60))
        await self._say(
            user_id,
            t("oauth.device_prompt", service=name, email=data.get("email", ""), url=device.verification_uri,
              code=device.user_code, minutes=minutes),
            _sign_in_markup(t, t("oauth.btn_open_device", service=name),
                            device.verification_uri_complete or device.verification_uri, data.get("wiz")),
        )
        old = self._device_tasks.pop(user_id, None)
        if old is not None:
            old.cancel()
        task = asyncio.create_task(
            self._poll_device(user_id, setup.service.id, device, data.get("wiz"), t.lang, mailbox_id),
            name=f"oauth-device-{user_id}",
        )
        self._device_tasks[user_id] = task

    async def _poll_device(
        self, user_id: int, service_id: int, device: DeviceAuthorization, wizard: str | None, lang: str, mailbox_id: int | None
    ) -> None:
        t = self.catalog.get(lang)
        interval = device.interval
        deadline = min(device.expires_at, time.time() + MAX_DEVICE_WAIT)
        try:
            while True:
                await asyncio.sleep(interval)
                if mailbox_id is None and await self._wizard_waiting(user_id, wizard) is None:
                    return  # cancelled, or the person sent a password instead
                async with self.sessionmaker() as session:
                    svc = OAuthService(session, self.deps, self.settings)
                    service = await svc.service(service_id)
                    name = service.name(lang) if service is not None else ""
                    if time.time() > deadline:
                        await self._say(user_id, t("oauth.chat_device_expired", service=name),
                                        await self._retry_markup(t, user_id, wizard))
                        return
                    setup = await svc.offer(service) if service is not None else None
                    if setup is None or setup.flow != "device":
                        await self._say(user_id, t("oauth.chat_not_configured", service=name))
                        return
                    try:
                        tokens = await svc.poll_device(setup, device, interval)
                    except DevicePending as pending:
                        interval = pending.interval
                        continue
                    except OAuthError as exc:
                        if exc.error == "access_denied":
                            text = t("oauth.chat_denied", service=name)
                        elif exc.error == "expired_token":
                            text = t("oauth.chat_device_expired", service=name)
                        else:
                            text = t("oauth.chat_device_failed", service=name, detail=exc.error)
                        await self._say(user_id, text, await self._retry_markup(t, user_id, wizard))
                        return
                    if mailbox_id is not None:
                        await self._reconnect(session, user_id, mailbox_id, tokens, t, name)
                    elif not await self.continue_wizard(session, user_id, wizard, tokens, t, name):
                        await svc.discard(service_id, tokens)
                        await self._say(user_id, t("oauth.chat_wizard_gone", service=name))
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("device sign-in of user %s failed", user_id)
        finally:
            if self._device_tasks.get(user_id) is asyncio.current_task():
                self._device_tasks.pop(user_id, None)


# ---- the wizard's Authorize button -----------------------------------------------------------
@router.callback_query(S.waiting_password, WizardCB.filter(F.action == "oauth"))
async def on_authorize(
    cb: CallbackQuery,
    callback_data: WizardCB,
    state: FSMContext,
    t: Translator,
    mailboxes: MailboxService,
    user: User,
    settings: Settings,
    oauth_flows: OAuthFlows | None = None,
) -> None:
    message = await connect._take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    data = await state.get_data()
    service = await mailboxes.get_service(int(data["service_id"]))
    svc = OAuthService(mailboxes.session, mailboxes.deps, settings)
    setup = await svc.offer(service) if service is not None else None
    if setup is None or oauth_flows is None:
        await state.update_data(oauth=None)
        await message.answer(t("oauth.not_offered", service=data.get("service_name", "")))
        await connect.show(S.waiting_password, message, state, t, mailboxes)
        return
    name = setup.service.name(t.lang)
    if setup.flow == "code":
        url = await svc.begin_code(user.id, setup, email=data["email"], login=data.get("login") or data["email"], wizard=data["wiz"])
        await message.answer(
            t("oauth.open_link", service=name, email=data["email"], minutes=STATE_MINUTES),
            reply_markup=_sign_in_markup(t, t("oauth.btn_sign_in", service=name), url, data["wiz"]),
        )
        return
    await oauth_flows.start_device(user.id, setup, data, t, mailboxes.session)
