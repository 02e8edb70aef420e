"""/search <words>, the Search button under /inbox (asks for the words), and the pages of a
search. The words of the last search live in the user's FSM data with an id (`sid`) that the
page buttons carry, so a page is searched again on the server (fresh results) without the
words having to fit into the 64 bytes of callback data. Every result opens through the same
`LetterCB` as /inbox, which checks the owner."""

from __future__ import annotations

import logging
import secrets

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import keyboards as kb
from bot.callbacks import LetterCB, SearchCB
from bot.i18n import Translator
from bot.render import clip, when
from bot.routing import RouteTable
from bot.states import SearchMail
from mail.search import QueryError
from mail.types import FailureKind, MailCheckError
from services.mailboxes import MailboxService, NotYourMailbox
from services.search import SearchMode, SearchPage, SearchService
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("search")
PER_PAGE = 8
DETAIL_MAX = 200


def _ask_markup(t: Translator) -> InlineKeyboardMarkup:
    return kb.markup([[kb.Button(text=t("btn.cancel"), callback_data=SearchCB(action="cancel").pack())]])


def render_page(t: Translator, found: SearchPage, sid: str) -> tuple[str, InlineKeyboardMarkup]:
    """The results: a numbered line per letter, a button to open each, paging, a new search,
    and a note when the server could not search in UTF-8."""
    query = found.query.text()
    first = found.page * PER_PAGE + 1
    if found.letters:
        last = first + len(found.letters) - 1
        lines = [t("search.title", query=query, first=first, last=last, total=found.total), ""]
    else:
        lines = [t("search.empty", query=query)]
    buttons: list[list[kb.Button]] = []
    for n, letter in enumerate(found.letters, start=first):
        subject = clip(letter.subject, 80) or t("inbox.no_subject")
        lines.append(t(
            "inbox.line", n=n, clip="📎 " if letter.has_attachments else "", subject=subject,
            who=clip(letter.from_name or letter.from_addr, 40), date=when(letter.sent_at),
        ))
        buttons.append([kb.Button(text=f"{n}. {clip(subject, 40)}", callback_data=LetterCB(letter_id=letter.id).pack())])
    if found.mode is SearchMode.LOCAL:
        lines += ["", t("search.mode_local")]
    elif found.mode is SearchMode.ASCII:
        lines += ["", t("search.mode_ascii")]
    nav = []
    if found.page > 0:
        nav.append(kb.Button(text=t("btn.newer"), callback_data=SearchCB(action="page", sid=sid, page=found.page - 1).pack()))
    if first - 1 + len(found.letters) < found.total:
        nav.append(kb.Button(text=t("btn.older"), callback_data=SearchCB(action="page", sid=sid, page=found.page + 1).pack()))
    buttons.append(nav)
    buttons.append(kb.search_row(t))
    return "\n".join(lines), kb.markup(buttons)


def _failure(t: Translator, exc: MailCheckError) -> str:
    if exc.kind is FailureKind.TIMEOUT:
        return t("search.timeout")
    if exc.server_said and exc.detail:
        detail = exc.detail if len(exc.detail) <= DETAIL_MAX else exc.detail[:DETAIL_MAX] + "…"
        return t("search.refused", detail=detail)
    return t("search.unreachable", reason=t(f"fail.{exc.kind.value}", protocol="IMAP"))


async def _run(
    target: Message,
    t: Translator,
    mailboxes: MailboxService,
    user: User,
    state: FSMContext,
    words: str,
    page: int,
    *,
    sid: str = "",
    edit: bool = False,
) -> None:
    try:
        found = await SearchService(mailboxes).search(user.id, words, page, PER_PAGE)
    except QueryError as exc:
        await target.answer(t(f"search.bad_{exc.reason}", limit=exc.limit))
        return  # the user stays where they were (still asked for words, if they were)
    except NotYourMailbox:
        if await state.get_state() == SearchMail.waiting_words.state:
            await state.set_state(None)
        await target.answer(t("inbox.no_mailbox"), reply_markup=kb.connect_only(t))
        return
    except MailCheckError as exc:
        log.info("search failed for user %s: %s", user.id, exc.kind.value)
        await target.answer(_failure(t, exc))
        return
    if await state.get_state() == SearchMail.waiting_words.state:
        await state.set_state(None)
    if not sid:
        sid = secrets.token_urlsafe(6)
        await state.update_data(search={"id": sid, "q": words})
    text, markup = render_page(t, found, sid)
    if edit:
        try:
            await target.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as exc:  # the same page again (fewer results now): nothing to change
            if "message is not modified" not in exc.message:
                raise
    else:
        await target.answer(text, reply_markup=markup)


@router.message(Command("search"))
async def on_search_command(
    message: Message, command: CommandObject, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext
) -> None:
    words = command.args or ""
    if not words.strip():
        await state.set_state(SearchMail.waiting_words)
        await message.answer(t("search.ask"), reply_markup=_ask_markup(t))
        return
    await _run(message, t, mailboxes, user, state, words, 0)


@router.callback_query(SearchCB.filter(F.action == "ask"))
async def on_search_button(cb: CallbackQuery, t: Translator, state: FSMContext) -> None:
    await cb.answer()
    await state.set_state(SearchMail.waiting_words)
    if isinstance(cb.message, Message):
        await cb.message.answer(t("search.ask"), reply_markup=_ask_markup(t))


@router.callback_query(SearchCB.filter(F.action == "cancel"))
async def on_search_cancel(cb: CallbackQuery, t: Translator, state: FSMContext) -> None:
    if await state.get_state() == SearchMail.waiting_words.state:
        await state.set_state(None)
    await cb.answer(t("search.cancelled"))
    if isinstance(cb.message, Message):
        await cb.message.edit_text(t("search.cancelled"))


@router.message(SearchMail.waiting_words, F.text, ~F.text.startswith("/"))
async def on_words(message: Message, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext) -> None:
    await _run(message, t, mailboxes, user, state, message.text or "", 0)


@router.message(SearchMail.waiting_words, ~F.text)
async def on_words_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("search.need_text"))


@router.callback_query(SearchCB.filter(F.action == "page"))
async def on_page(
    cb: CallbackQuery, callback_data: SearchCB, t: Translator, mailboxes: MailboxService, user: User, state: FSMContext
) -> None:
    saved = (await state.get_data()).get("search")
    if not isinstance(saved, dict) or saved.get("id") != callback_data.sid or not isinstance(saved.get("q"), str):
        await cb.answer(t("search.expired"), show_alert=True)
        return
    await cb.answer()
    if isinstance(cb.message, Message):
        await _run(cb.message, t, mailboxes, user, state, saved["q"], callback_data.page, sid=callback_data.sid, edit=True)
