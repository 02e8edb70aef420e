"""OAuth2 sign-in in the chat: the wizard's Authorize button, and `ChatSignIn`, the chat side
of sign-ins that finish outside an update (services/oauth_flows.py tells it; bot/app.py wires
it). The use cases are in services/oauth_flows.py; this module only reads the wizard's state
and renders what the service reports. The admin commands `/oauth_flag` and `/oauth_client`
are in handlers/admin.py, under the admin router's filter.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, F
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import keyboards as kb
from bot.callbacks import WizardCB
from bot.i18n import Catalog, Translator, pick_language
from bot.render import check_failure
from bot.routing import RouteTable
from bot.states import ConnectMailbox as S
from handlers import connect
from services.deps import MailDeps
from services.mailboxes import AccountInput, MailboxService
from services.oauth_flows import (
    STATE_MINUTES,
    OAuthFlows,
    Reconnected,
    ReconnectFailed,
    Refusal,
    SignedIn,
    SignInNews,
    SignInRefused,
    SignInStarted,
    WizardAlreadyConnected,
    WizardChecked,
)
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("oauth")

PROGRESS_KEY = "oauth_progress"  # FSM data: the "checking…" message to edit with the result


def authorize_rows(t: Translator, data: dict[str, Any]) -> list[list[InlineKeyboardButton]]:
    """The Authorize button for the wizard's password step (empty unless offered)."""
    if not data.get("oauth"):
        return []
    return [[kb.wiz(t, data["wiz"], "oauth", "oauth.btn_authorize", service=data.get("service_name", ""))]]


def started_view(t: Translator, started: SignInStarted) -> tuple[str, InlineKeyboardMarkup]:
    """The link (code flow) or the code and its link (device flow), with Back/Cancel of the
    wizard it belongs to."""
    if started.code is None:
        text = t("oauth.open_link", service=started.service, email=started.email, minutes=started.minutes)
        label = t("oauth.btn_sign_in", service=started.service)
    else:
        text = t("oauth.device_prompt", service=started.service, email=started.email, url=started.url,
                 code=started.code, minutes=started.minutes)
        label = t("oauth.btn_open_device", service=started.service)
    rows: list[list[InlineKeyboardButton]] = [[InlineKeyboardButton(text=label, url=started.open_url)]]
    if started.wizard:
        rows.append(kb.nav_row(t, started.wizard))
    return text, kb.markup(rows)


def refused_text(t: Translator, refused: SignInRefused) -> str:
    return t(f"oauth.chat_{refused.reason.value}", service=refused.service, detail=refused.detail or refused.reason.value,
             minutes=STATE_MINUTES)


# ---- the wizard's Authorize button -----------------------------------------------------------
@router.callback_query(S.waiting_password, WizardCB.filter(F.action == "oauth"))
async def on_authorize(
    cb: CallbackQuery,
    callback_data: WizardCB,
    state: FSMContext,
    t: Translator,
    mailboxes: MailboxService,
    user: User,
    oauth_flows: OAuthFlows | None = None,
) -> None:
    message = await connect._take(cb, callback_data.wiz, state, t)
    if message is None:
        return
    data = await state.get_data()
    outcome: SignInStarted | SignInRefused
    if oauth_flows is None:
        outcome = SignInRefused(t.lang, data.get("service_name", ""), Refusal.NOT_OFFERED, wizard=data["wiz"])
    else:
        outcome = await oauth_flows.start(
            mailboxes.session, user.id, service_id=int(data["service_id"]), email=data["email"],
            login=data.get("login") or data["email"], wizard=data["wiz"], lang=t.lang,
        )
    if isinstance(outcome, SignInStarted):
        text, markup = started_view(t, outcome)
        await message.answer(text, reply_markup=markup)
        return
    if outcome.reason == Refusal.NOT_OFFERED:  # the Authorize button goes away
        await state.update_data(oauth=None)
        await message.answer(t("oauth.not_offered", service=data.get("service_name", "")))
    else:  # the password step again, Authorize still there for another try
        await message.answer(refused_text(t, outcome))
    await connect.show(S.waiting_password, message, state, t, mailboxes)


# ---- what finishes outside an update -----------------------------------------------------------
class ChatSignIn:
    """services.oauth_flows.SignInNotifier for Telegram: reads and moves the person's connect
    wizard (FSM storage, shared by every instance when it is Redis) and sends the messages.
    Holds nothing between calls but a cached bot username."""

    def __init__(
        self,
        *,
        bot: Bot,
        storage: BaseStorage,
        catalog: Catalog,
        sessionmaker: async_sessionmaker[AsyncSession],
        deps: MailDeps,
    ) -> None:
        self.bot = bot
        self.storage = storage
        self.catalog = catalog
        self.sessionmaker = sessionmaker
        self.deps = deps
        self._username: str | None = None

    def fsm(self, user_id: int) -> FSMContext:
        # private chats: chat id == user id
        return FSMContext(self.storage, StorageKey(bot_id=self.bot.id, chat_id=user_id, user_id=user_id))

    def language(self, tag: str | None) -> str:
        return pick_language(tag)

    async def bot_username(self) -> str | None:
        if self._username is None:
            try:
                self._username = (await self.bot.me()).username
            except Exception:  # the page still works without the link
                log.warning("getMe failed; the callback page has no t.me link", exc_info=True)
        return self._username

    async def _waiting(self, user_id: int, wizard: str | None) -> dict[str, Any] | None:
        """The wizard's data when it still waits on its password step for this sign-in."""
        fsm = self.fsm(user_id)
        data = await fsm.get_data()
        if not wizard or data.get("wiz") != wizard or await fsm.get_state() != S.waiting_password.state:
            return None
        return data

    async def wizard_account(self, user_id: int, wizard: str | None) -> AccountInput | None:
        data = await self._waiting(user_id, wizard)
        return connect._account(data) if data is not None else None

    async def _say(self, user_id: int, text: str, reply_markup: InlineKeyboardMarkup | None = None) -> Message | None:
        try:
            return await self.bot.send_message(user_id, text, reply_markup=reply_markup)
        except Exception:
            log.warning("could not message user %s", user_id, exc_info=True)
            return None

    async def tell(self, user_id: int, news: SignInNews) -> None:
        t = self.catalog.get(news.lang)
        try:
            await self._tell(user_id, news, t)
        except Exception:
            log.warning("could not tell user %s about the sign-in (%s)", user_id, type(news).__name__, exc_info=True)

    async def _tell(self, user_id: int, news: SignInNews, t: Translator) -> None:
        if isinstance(news, SignInStarted):
            await self._say(user_id, *started_view(t, news))
        elif isinstance(news, SignInRefused):
            data = await self._waiting(user_id, news.wizard)  # still on the password step: try again
            retry = kb.markup([*authorize_rows(t, data), kb.nav_row(t, data["wiz"])]) if data is not None else None
            await self._say(user_id, refused_text(t, news), retry)
        elif isinstance(news, WizardAlreadyConnected):
            if await self._waiting(user_id, news.wizard) is not None:
                await self.fsm(user_id).clear()
            await self._say(user_id, t("connect.already"))
        elif isinstance(news, SignedIn):
            await self._say(user_id, t("oauth.signed_in", service=news.service))
            progress = await self._say(user_id, t("connect.checking"))
            if progress is not None and await self._waiting(user_id, news.wizard) is not None:
                await self.fsm(user_id).update_data({PROGRESS_KEY: progress.message_id})
        elif isinstance(news, WizardChecked):
            await self._checked(user_id, news, t)
        elif isinstance(news, Reconnected):
            await self._say(user_id, t("oauth.reconnected", service=news.service, email=news.email))
        elif isinstance(news, ReconnectFailed):
            await self._say(user_id, check_failure(t, news.failure, oauth=True))

    async def _checked(self, user_id: int, news: WizardChecked, t: Translator) -> None:
        """The draft was checked: the wizard moves on as after a password."""
        fsm = self.fsm(user_id)
        data = await self._waiting(user_id, news.wizard)
        if data is None:  # cancelled during the check: the draft goes with the wizard
            return
        progress = data.get(PROGRESS_KEY)
        await fsm.update_data({PROGRESS_KEY: None, "has_secret": True})
        if news.failure is not None:
            exc = news.failure
            await fsm.update_data(fail_kind=exc.kind.value, fail_protocol=exc.protocol.value)
            await fsm.set_state(S.choosing_fix)
            data = await fsm.get_data()
            await self._show(user_id, progress, check_failure(t, exc, hint=connect._hint(t, data)), connect._fix_keyboard(t, data, exc))
            return
        await fsm.set_state(S.waiting_signature)
        await self._show(user_id, progress, t("connect.check_ok"), None)
        async with self.sessionmaker() as session:
            text, markup = await connect._render(S.waiting_signature, await fsm.get_data(), t, MailboxService(session, self.deps))
        await self._say(user_id, text, markup)

    async def _show(self, user_id: int, message_id: int | None, text: str, markup: InlineKeyboardMarkup | None) -> None:
        """Edit the "checking…" message into the result (or send it when that is gone)."""
        if message_id:
            try:
                await self.bot.edit_message_text(text=text, chat_id=user_id, message_id=int(message_id), reply_markup=markup)
                return
            except Exception:
                log.debug("could not edit the progress message", exc_info=True)
        await self._say(user_id, text, markup)
