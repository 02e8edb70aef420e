"""Reply, reply to all and forward (services/compose.py does the work).

* **Reply / Reply all / Forward** under an alert or an opened letter start a draft; so does
  answering the alert itself in Telegram (a reply to the bot's message whose keyboard names the
  letter). The letter id is checked against the presser by the service, at the start and when
  the letter goes.
* The draft is in the FSM data (`compose`): text (with Telegram's entities), the Telegram file
  ids of photos and documents sent meanwhile, recipients. Each change shows the letter as it
  will go (From, To, Cc, Subject, text, signature, attachments) with Send / Edit text / Add
  recipients / Cancel. Nothing is sent without Send.
* Photos and documents are downloaded from Telegram (`bot.download`, the Bot API's file path)
  only when the letter goes; one over `TELEGRAM_DOWNLOAD_LIMIT` is refused when it arrives.
* A draft is discarded, with a note, once it is older than a day (`compose_clock`: the
  dispatcher's workflow data may carry a clock, tests put a virtual one there).
"""

from __future__ import annotations

import html
import logging
from datetime import datetime
from io import BytesIO
from typing import Any

from aiogram import Bot, F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, MessageEntity
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards as kb
from bot.callbacks import ComposeCB, DraftCB, LetterCB
from bot.config import Settings
from bot.i18n import Html, Translator, escape
from bot.letter_view import MAX_MESSAGE, human_size, shorten, utf16_len, visible_len
from bot.render import failure_reason
from bot.routing import RouteTable
from bot.states import ComposeLetter as S
from bot.telegram_limits import Clock, SystemClock
from mail.compose import Entity, OriginalLetter, recipients_line
from mail.outbox import AttachmentData
from mail.types import MailCheckError
from services.compose import (
    MAX_FILES,
    ComposeDraft,
    ComposeService,
    FileRef,
    ForwardedAttachmentTooBig,
    NoRecipients,
    parse_recipients,
)
from services.mailboxes import LetterNotFound, MailboxService
from services.outgoing import (
    AttachmentsTooLarge,
    MailboxUnavailable,
    MailServerUnreachable,
    SendRefused,
    TooLargeForServer,
)
from storage.models import User

log = logging.getLogger(__name__)
router = RouteTable("compose")
KEY = "compose"
SHOWN_TEXT = 3000  # characters of the user's text in the preview at most (the letter keeps all of it)
SHOWN_FILES = 10
SYSTEM_CLOCK = SystemClock()


# --------------------------------------------------------------------------- helpers
class Words:
    """The quote's words in the user's language, as plain text (they go into the mail)."""

    def __init__(self, t: Translator) -> None:
        self.t = t

    def _plain(self, key: str, **values: Any) -> str:
        return html.unescape(self.t(key, **values))

    def _date(self, moment: datetime | None) -> str:
        if moment is None:
            return "—"
        if self.t.lang == "ru":
            return moment.strftime("%d.%m.%Y %H:%M %z").strip()
        return moment.strftime("%a, %d %b %Y %H:%M %z").strip()

    def reply_intro(self, date: datetime | None, sender: str) -> str:
        return self._plain("compose.quote_intro", date=self._date(date), sender=sender or "—")

    def forward_header(self, original: OriginalLetter) -> list[str]:
        lines = [
            self._plain("compose.forward_title"),
            self._plain("compose.forward_from", value=original.from_text or "—"),
            self._plain("compose.forward_date", value=self._date(original.date)),
            self._plain("compose.forward_subject", value=original.subject),
            self._plain("compose.forward_to", value=original.to_text or "—"),
        ]
        if original.cc_text:
            lines.append(self._plain("compose.forward_cc", value=original.cc_text))
        return lines


def _now(compose_clock: Clock | None) -> datetime:
    return (compose_clock or SYSTEM_CLOCK).wall()


def _entities(items: list[MessageEntity] | None) -> list[Entity]:
    return [Entity(e.type, e.offset, e.length, e.url, e.language) for e in items or []]


def _service(session: AsyncSession, mailboxes: MailboxService) -> ComposeService:
    return ComposeService(session, mailboxes.deps)


async def _load(state: FSMContext, t: Translator, target: Message | None, now: datetime) -> ComposeDraft | None:
    """The open draft; an expired one is discarded with a note (None)."""
    draft = ComposeDraft.from_data((await state.get_data()).get(KEY))
    if draft is None:
        return None
    if draft.expired(now):
        await _drop(state)
        if target is not None:
            await target.answer(t("compose.expired", subject=shorten(draft.subject, 200)))
        return None
    return draft


async def _save(state: FSMContext, draft: ComposeDraft) -> None:
    await state.update_data({KEY: draft.to_data()})


async def _drop(state: FSMContext) -> None:
    data = await state.get_data()
    data.pop(KEY, None)
    await state.set_data(data)
    await state.set_state(None)


def render_draft(t: Translator, draft: ComposeDraft, signature: str) -> str:
    """The letter as it will go, in one message: the user's text is cut (with "…") so the
    whole preview stays within Telegram's 4,096 characters; the letter keeps all of it."""
    head = [t("compose.preview_title"), ""]
    head.append(t("compose.preview_from", value=draft.sender))
    to = recipients_line(draft.to)
    head.append(t("compose.preview_to", value=Html(escape(shorten(to, 600))) if to else Html(t("compose.preview_nobody"))))
    if draft.cc:
        head.append(t("compose.preview_cc", value=shorten(recipients_line(draft.cc), 600)))
    head.append(t("compose.preview_subject", value=shorten(draft.subject, 300)))
    head.append("")
    tail: list[str] = []
    if signature.strip():
        tail.append(escape("-- \n" + signature.strip("\n")[:500]))
    tail.append("")
    tail.append(t("compose.preview_forward" if draft.mode == "fwd" else "compose.preview_quote"))
    items = [(f.name, f.size, "compose.preview_attachment") for f in draft.files]
    items += [(p.name, p.size, "compose.preview_forwarded_attachment") for p in draft.forwarded]
    if items:
        tail.append("")
        tail.append(t("compose.preview_attachments", count=len(items)))
        for n, (name, size, key) in enumerate(items[:SHOWN_FILES], 1):
            tail.append(t(key, n=n, name=shorten(name, 100), size=human_size(t, size)))
        if len(items) > SHOWN_FILES:
            tail.append("…")
    if not draft.text.strip():
        return "\n".join([*head, t("compose.preview_no_text"), *tail])
    room = max(100, min(SHOWN_TEXT, MAX_MESSAGE - 20 - visible_len("\n".join([*head, *tail]))))
    return "\n".join([*head, escape(_cut(draft.text, room)), *tail])


def _cut(text: str, units: int) -> str:
    """At most `units` UTF-16 code units (as Telegram counts), with "…" when cut."""
    if utf16_len(text) <= units:
        return text
    out: list[str] = []
    used = 1  # the ellipsis
    for ch in text:
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > units:
            break
        out.append(ch)
    return "".join(out) + "…"


async def _show(target: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User, draft: ComposeDraft) -> None:
    await state.set_state(S.reviewing)
    await _save(state, draft)
    mailbox = await mailboxes.current(user.id)
    signature = mailbox.signature if mailbox is not None else ""
    await target.answer(render_draft(t, draft, signature or ""), reply_markup=kb.draft_review(t, draft.id))


async def _begin(
    target: Message, state: FSMContext, t: Translator, session: AsyncSession, mailboxes: MailboxService,
    user: User, letter_id: int, mode: str, now: datetime,
) -> ComposeDraft | None:
    try:
        draft = await _service(session, mailboxes).start(user.id, letter_id, mode, Words(t), now)
    except LetterNotFound:
        await target.answer(t("compose.gone"))
        return None
    except MailboxUnavailable:
        await _broken(target, t, mailboxes, user)
        return None
    except MailCheckError as exc:
        await target.answer(t("compose.start_unreachable", reason=Html(failure_reason(t, exc))))
        return None
    return draft


async def _broken(target: Message, t: Translator, mailboxes: MailboxService, user: User) -> None:
    mailbox = await mailboxes.current(user.id)
    if mailbox is None:
        await target.answer(t("compose.gone"))
        return
    await target.answer(t("compose.broken", email=mailbox.email), reply_markup=kb.reconnect_button(t, mailbox.id))


async def _take_content(message: Message, t: Translator, draft: ComposeDraft, settings: Settings) -> bool:
    """Put the message's text / photo / document into the draft; False (and said why) if refused."""
    ref: FileRef | None = None
    if message.photo:
        photo = message.photo[-1]  # the largest size
        ref = FileRef(photo.file_id, f"photo_{photo.file_unique_id}.jpg", "image/jpeg", photo.file_size or 0)
    elif message.document:
        doc = message.document
        ref = FileRef(
            doc.file_id, (doc.file_name or f"file_{doc.file_unique_id}")[:180],
            doc.mime_type or "application/octet-stream", doc.file_size or 0,
        )
    elif message.text is None:
        await message.answer(t("compose.unsupported"))
        return False
    if ref is not None:
        limit = settings.telegram_download_limit
        if ref.size > limit:
            await message.answer(
                t("compose.file_too_big", name=ref.name, size=human_size(t, ref.size), limit=human_size(t, limit))
            )
            return False
        if not draft.add_file(ref):
            await message.answer(t("compose.too_many_files", count=MAX_FILES))
            return False
        if message.caption:
            draft.set_text(message.caption, _entities(message.caption_entities))
        return True
    draft.set_text(message.text or "", _entities(message.entities))
    return True


def _replied_letter(message: Message) -> dict[str, int] | bool:
    """A filter: the message answers one of the bot's messages that names a letter (an alert,
    an opened letter). Gives `replied_letter_id`; the owner is checked by the service."""
    target = message.reply_to_message
    if target is None or target.from_user is None or not target.from_user.is_bot:
        return False
    for row in target.reply_markup.inline_keyboard if target.reply_markup else ():
        for button in row:
            data = button.callback_data or ""
            for parse in (_letter_cb, _compose_cb):
                letter_id = parse(data)
                if letter_id is not None:
                    return {"replied_letter_id": letter_id}
    return False


def _replied_bare(message: Message) -> dict[str, int] | bool:
    """A filter: the message answers a message of the bot that came without its keyboard
    (Telegram may leave `reply_markup` out of `reply_to_message`): the handler asks the
    database which letter, if any, that alert was about."""
    target = message.reply_to_message
    if target is None or target.from_user is None or not target.from_user.is_bot or target.reply_markup is not None:
        return False
    return {"replied_message_id": target.message_id}


def _letter_cb(data: str) -> int | None:
    try:
        return LetterCB.unpack(data).letter_id
    except (ValueError, TypeError):
        return None


def _compose_cb(data: str) -> int | None:
    try:
        return ComposeCB.unpack(data).letter_id
    except (ValueError, TypeError):
        return None


# --------------------------------------------------------------------------- starting
@router.callback_query(ComposeCB.filter())
async def on_compose(
    cb: CallbackQuery, callback_data: ComposeCB, state: FSMContext, t: Translator, session: AsyncSession,
    mailboxes: MailboxService, user: User, compose_clock: Clock | None = None,
) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    draft = await _begin(
        cb.message, state, t, session, mailboxes, user, callback_data.letter_id, callback_data.mode, _now(compose_clock)
    )
    if draft is None:
        return
    await _save(state, draft)
    if draft.mode == "fwd":
        await state.set_state(S.waiting_recipients)
        await cb.message.answer(t("compose.ask_recipients"), reply_markup=kb.draft_cancel(t, draft.id))
    else:
        await state.set_state(S.waiting_text)
        await cb.message.answer(
            t("compose.ask_text", subject=shorten(draft.subject, 200)), reply_markup=kb.draft_cancel(t, draft.id)
        )


@router.message(StateFilter(None, S), ~F.text.startswith("/"), _replied_letter)
async def on_reply_to_alert(
    message: Message, replied_letter_id: int, state: FSMContext, t: Translator, session: AsyncSession,
    mailboxes: MailboxService, user: User, settings: Settings, compose_clock: Clock | None = None,
) -> None:
    """The user answered an alert (or an opened letter) in Telegram: that is a reply."""
    draft = await _begin(message, state, t, session, mailboxes, user, replied_letter_id, "reply", _now(compose_clock))
    if draft is None:
        return
    await _save(state, draft)
    await state.set_state(S.waiting_text)
    if await _take_content(message, t, draft, settings):
        await _show(message, state, t, mailboxes, user, draft)


@router.message(StateFilter(None), ~F.text.startswith("/"), _replied_bare)
async def on_reply_to_bare_alert(
    message: Message, replied_message_id: int, state: FSMContext, t: Translator, session: AsyncSession,
    mailboxes: MailboxService, user: User, settings: Settings, compose_clock: Clock | None = None,
) -> None:
    """An answer to a message of the bot that came without its keyboard: a reply when that
    message was a letter's alert (remembered with the letter), else an ordinary unknown text."""
    letter_id = await mailboxes.letter_of_alert(user.id, replied_message_id)
    if letter_id is None:
        await message.answer(t("error.unknown_command"))
        return
    await on_reply_to_alert(message, letter_id, state, t, session, mailboxes, user, settings, compose_clock)


# --------------------------------------------------------------------------- writing
@router.message(StateFilter(S), Command("cancel"))
async def on_cancel_command(message: Message, state: FSMContext, t: Translator) -> None:
    await _drop(state)
    await message.answer(t("compose.cancelled"))


@router.message(StateFilter(S.waiting_recipients), F.text, ~F.text.startswith("/"))
async def on_recipients(
    message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User,
    compose_clock: Clock | None = None,
) -> None:
    draft = await _load(state, t, message, _now(compose_clock))
    if draft is None:
        await state.set_state(None)
        return
    good, bad = parse_recipients(message.text or "")
    if bad or not good:
        shown = ", ".join(bad) if bad else (message.text or message.caption or "—")[:100]
        await message.answer(t("compose.bad_addresses", count=max(1, len(bad)), list=shown))
        return  # the user stays where they were
    draft.add_recipients(good)
    await _show(message, state, t, mailboxes, user, draft)


@router.message(StateFilter(S), ~F.text.startswith("/"))
async def on_content(
    message: Message, state: FSMContext, t: Translator, mailboxes: MailboxService, user: User, settings: Settings,
    compose_clock: Clock | None = None,
) -> None:
    draft = await _load(state, t, message, _now(compose_clock))
    if draft is None:
        await state.set_state(None)
        return
    if await _take_content(message, t, draft, settings):
        await _show(message, state, t, mailboxes, user, draft)


# --------------------------------------------------------------------------- the buttons
async def _draft_of(cb: CallbackQuery, callback_data: DraftCB, state: FSMContext, t: Translator, now: datetime) -> ComposeDraft | None:
    target = cb.message if isinstance(cb.message, Message) else None
    draft = ComposeDraft.from_data((await state.get_data()).get(KEY))
    if draft is None or draft.id != callback_data.draft:
        await cb.answer(t("compose.stale"), show_alert=True)
        return None
    await cb.answer()
    return await _load(state, t, target, now)


@router.callback_query(DraftCB.filter(F.action == "cancel"))
async def on_cancel(cb: CallbackQuery, callback_data: DraftCB, state: FSMContext, t: Translator, compose_clock: Clock | None = None) -> None:
    draft = await _draft_of(cb, callback_data, state, t, _now(compose_clock))
    if draft is None:
        return
    await _drop(state)
    if isinstance(cb.message, Message):
        await cb.message.answer(t("compose.cancelled"))


@router.callback_query(DraftCB.filter(F.action == "text"))
async def on_edit_text(cb: CallbackQuery, callback_data: DraftCB, state: FSMContext, t: Translator, compose_clock: Clock | None = None) -> None:
    draft = await _draft_of(cb, callback_data, state, t, _now(compose_clock))
    if draft is None or not isinstance(cb.message, Message):
        return
    await state.set_state(S.waiting_text)
    await cb.message.answer(t("compose.ask_new_text"), reply_markup=kb.draft_cancel(t, draft.id))


@router.callback_query(DraftCB.filter(F.action == "rcpt"))
async def on_add_recipients(cb: CallbackQuery, callback_data: DraftCB, state: FSMContext, t: Translator, compose_clock: Clock | None = None) -> None:
    draft = await _draft_of(cb, callback_data, state, t, _now(compose_clock))
    if draft is None or not isinstance(cb.message, Message):
        return
    await state.set_state(S.waiting_recipients)
    await cb.message.answer(t("compose.ask_recipients"), reply_markup=kb.draft_cancel(t, draft.id))


class DownloadRefused(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


async def _download(bot: Bot, draft: ComposeDraft) -> list[AttachmentData]:
    """The user's photos and documents, from Telegram (getFile, then the file's path)."""
    out: list[AttachmentData] = []
    for ref in draft.files:
        buffer = BytesIO()
        try:
            await bot.download(ref.file_id, destination=buffer)
        except TelegramBadRequest as exc:  # "file is too big" (over the Bot API's limit), or gone
            log.info("a file of a draft was not downloaded: %s", exc.message)
            raise DownloadRefused(ref.name) from None
        out.append(AttachmentData(ref.name, ref.mime if "/" in ref.mime else "application/octet-stream", buffer.getvalue()))
    return out


@router.callback_query(DraftCB.filter(F.action == "send"))
async def on_send(
    cb: CallbackQuery, callback_data: DraftCB, state: FSMContext, t: Translator, session: AsyncSession,
    mailboxes: MailboxService, user: User, bot: Bot, settings: Settings, compose_clock: Clock | None = None,
) -> None:
    draft = await _draft_of(cb, callback_data, state, t, _now(compose_clock))
    if draft is None or not isinstance(cb.message, Message):
        return
    message = cb.message
    if not draft.recipients:
        await message.answer(t("compose.no_recipients"))
        return
    try:
        files = await _download(bot, draft)
    except DownloadRefused as exc:
        await message.answer(
            t("compose.download_refused", name=exc.name, limit=human_size(t, settings.telegram_download_limit))
        )
        return
    with_sending = await message.answer(t("compose.sending"))
    try:
        result = await _service(session, mailboxes).send(user.id, draft, files)
    except LetterNotFound:
        await _drop(state)
        await with_sending.edit_text(t("compose.gone"))
        return
    except NoRecipients:
        await with_sending.edit_text(t("compose.no_recipients"))
        return
    except SendRefused as exc:
        if exc.refused:
            draft.remove_recipients(list(exc.refused))
            await _save(state, draft)
            await with_sending.edit_text(
                t("compose.refused_rcpt", list=", ".join(exc.refused), reply=shorten(exc.reply, 400), count=len(exc.refused))
            )
            await _show(message, state, t, mailboxes, user, draft)
        else:
            await with_sending.edit_text(t("compose.refused", reply=shorten(exc.reply, 400)))
        return
    except TooLargeForServer as exc:
        await with_sending.edit_text(
            t("compose.too_large_server", size=human_size(t, exc.size), limit=human_size(t, exc.limit))
        )
        return
    except AttachmentsTooLarge as exc:
        await with_sending.edit_text(
            t("compose.too_large_total", size=human_size(t, exc.total), limit=human_size(t, exc.limit))
        )
        return
    except ForwardedAttachmentTooBig as exc:
        await with_sending.edit_text(
            t("compose.forward_too_big", name=exc.filename, size=human_size(t, exc.size), limit=human_size(t, exc.limit))
        )
        return
    except MailboxUnavailable:
        await with_sending.delete()
        await _broken(message, t, mailboxes, user)
        return
    except MailServerUnreachable as exc:
        await with_sending.edit_text(t("compose.unreachable", reason=shorten(exc.detail, 300)))
        return
    except MailCheckError as exc:
        await with_sending.edit_text(t("compose.unreachable", reason=Html(failure_reason(t, exc))))
        return
    await _drop(state)
    to = shorten(", ".join(r.address for r in draft.recipients), 600)
    if result.saved_to_sent and result.sent_folder:
        await with_sending.edit_text(t("compose.sent", to=to, folder=result.sent_folder))
    else:
        await with_sending.edit_text(t("compose.sent_no_copy", to=to))

