"""A fake Telegram Bot API server and a simulated Telegram user, for tests.

The real aiogram ``Bot`` talks to :class:`FakeTelegram` over HTTP::

    fake = FakeTelegram()
    await fake.start()
    bot = Bot(fake.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))
    user = fake.user(42)
    async with run_polling(dp, bot, fake):
        await user.send("/start")          # returns once the bot has handled the update
        assert "Welcome" in user.last().text

What is modelled (answers shaped like Telegram's, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}``):

* getMe, getUpdates (long polling, ``offset``/``limit``/``timeout``/``allowed_updates``, 409 when a
  second consumer polls or a webhook is set), setWebhook, deleteWebhook, getWebhookInfo,
  set/get/deleteMyCommands, sendMessage, editMessageText, editMessageCaption,
  editMessageReplyMarkup, deleteMessage, deleteMessages, answerCallbackQuery, sendDocument
  (multipart upload, 50 MB cap), getFile + file download (files of the bot's and of the user's
  messages; over 20 MB getFile answers "file is too big", as the standard Bot API does),
  sendChatAction, getChat, logOut, close.
* The user may send text with entities, answer a message (``reply_to``: the update carries
  ``reply_to_message`` with its inline keyboard), and send photos and documents
  (:meth:`FakeUser.send_photo`, :meth:`FakeUser.send_document`).
* Telegram's HTML parse mode (tdlib's parser rules and error texts), text and caption length
  limits, ``callback_data`` 1-64 bytes, "message is not modified", "message to edit/delete not
  found", editing text without ``reply_markup`` removes the inline keyboard (as Telegram does).
* Fault injection: :meth:`FakeTelegram.fail`, :meth:`FakeTelegram.block`,
  :meth:`FakeTelegram.set_delay` and the opt-in :attr:`FakeTelegram.rate_limit`.
* Webhook delivery: once the bot called setWebhook (url, ``secret_token``, ``allowed_updates``
  are recorded), each queued update is POSTed as Telegram does, with the
  ``X-Telegram-Bot-Api-Secret-Token`` header, to the next of :attr:`FakeTelegram.webhook_targets`
  in turn (the local addresses behind the public https URL, as a load balancer spreads them);
  a 2xx answer confirms the update, anything else is retried a few times.
  :attr:`FakeTelegram.deliveries` records (update id, target, status).

"Processed": the bot under test runs ``dp.start_polling(bot, handle_as_tasks=True, ...)`` as in
production, so several updates (of one user, too) are handled concurrently and getUpdates moves on
before a handler is done. :meth:`FakeTelegram.track_processing` puts an outer update middleware on
the dispatcher (aiogram's public middleware API) that tells the fake when the handling of an update
has finished; :meth:`FakeUser.send` and :meth:`FakeUser.press` wait for exactly that. Without
tracking, an update counts as processed once a getUpdates with ``offset > N`` arrives (enough for
``handle_as_tasks=False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import BodyPartReader, web

log = logging.getLogger("tests.fake_telegram")

T = TypeVar("T")

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")
DEFAULT_PROCESS_TIMEOUT = 15.0

# Update types Telegram sends when allowed_updates was never set or set to [].
_ALL_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)
_DEFAULT_UPDATE_TYPES = _ALL_UPDATE_TYPES - {
    "chat_member",
    "message_reaction",
    "message_reaction_count",
}

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

# Field coercion for form-encoded requests (every value arrives as a string there).
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "link_preview_options",
        "reply_parameters",
        "message_ids",
        "media",
    }
)
_INT_FIELDS = frozenset(
    {
        "offset",
        "limit",
        "timeout",
        "message_id",
        "from_chat_id",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
        "max_connections",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "disable_content_type_detection",
        "has_spoiler",
        "allow_paid_broadcast",
        "show_caption_above_media",
    }
)
# Methods that answer 403 when the user blocked the bot (fake.block()).
_BLOCKABLE_PREFIXES = ("send", "edit", "copy", "forward")
# Methods counted by the opt-in rate limiter.
_RATE_LIMITED = frozenset({"sendMessage", "sendDocument", "copyMessage", "forwardMessage"})


# --------------------------------------------------------------------------------------------
# Telegram's HTML parse mode
# --------------------------------------------------------------------------------------------


class HtmlParseError(ValueError):
    """The text is not valid Telegram HTML; str(exc) is the part after "can't parse entities: "."""


_HTML_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}
_HTML_SPACE = " \t\r\n\f\v"
# Whitespace Telegram trims from both ends of a message text.
_TRIM = " \t\r\n\f\v"


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _decode_html_entity(src: str, pos: int) -> tuple[str | None, int]:
    """Decode ``&...`` at ``pos`` the way tdlib does; (None, pos) when it is not an entity."""
    n = len(src)
    end = pos + 1
    if end < n and src[end] == "#":
        end += 1
        value = 0
        digits = 0
        if end < n and src[end] == "x":
            end += 1
            while end < n and src[end] in "0123456789abcdefABCDEF":
                value = value * 16 + int(src[end], 16)
                end += 1
                digits += 1
        else:
            while end < n and src[end].isascii() and src[end].isdigit():
                value = value * 10 + int(src[end])
                end += 1
                digits += 1
        if digits == 0 or value == 0 or value >= 0x10FFFF or end - pos >= 10:
            return None, pos
        if 0xD800 <= value <= 0xDFFF:
            return None, pos
        char = chr(value)
    else:
        while end < n and src[end].isascii() and src[end].isalpha():
            end += 1
        name = src[pos + 1 : end]
        char = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}.get(name)  # type: ignore[assignment]
        if char is None:
            return None, pos
    if end < n and src[end] == ";":
        end += 1
    return char, end


@dataclass
class _OpenTag:
    name: str
    argument: str
    offset: int  # UTF-16 offset in the output
    out_index: int  # index into the output pieces list
    byte_offset: int


def parse_html(src: str, *, strict_ampersand: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into (plain text, entities) or raise :class:`HtmlParseError`.

    Follows tdlib's parser (tags, attributes, entities, error texts). ``strict_ampersand``
    additionally refuses a ``&`` that does not start a known entity; real Telegram keeps such an
    ampersand literally (``Tom & Jerry`` is accepted there).
    """
    out: list[str] = []
    u16 = 0
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []
    n = len(src)
    i = 0

    def boff(pos: int) -> int:
        return len(src[:pos].encode("utf-8", "surrogatepass"))

    while i < n:
        c = src[i]
        if c == "&":
            char, j = _decode_html_entity(src, i)
            if char is not None:
                out.append(char)
                u16 += utf16_len(char)
                i = j
                continue
            if strict_ampersand:
                raise HtmlParseError(
                    f'Character "&" at byte offset {boff(i)} does not start an HTML entity '
                    "(escape it as &amp;; FakeTelegram is stricter than Telegram here)"
                )
        if c != "<":
            out.append(c)
            u16 += 2 if ord(c) > 0xFFFF else 1
            i += 1
            continue

        begin = i
        i += 1
        if i >= n or src[i] != "/":
            # start tag
            while i < n and src[i] not in _HTML_SPACE and src[i] != ">":
                i += 1
            if i >= n:
                raise HtmlParseError(f"Unclosed start tag at byte offset {boff(begin)}")
            tag = src[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {boff(begin)}')
            argument = ""
            span_class: str | None = None
            while src[i] != ">":
                while i < n and src[i] in _HTML_SPACE:
                    i += 1
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {boff(begin)}")
                if src[i] == ">":
                    break
                attr_begin = i
                while i < n and src[i] not in _HTML_SPACE and src[i] not in "=>":
                    i += 1
                attr = src[attr_begin:i]
                if not attr:
                    raise HtmlParseError(
                        f'Empty attribute name in the tag "{tag}" at byte offset {boff(begin)}'
                    )
                while i < n and src[i] in _HTML_SPACE:
                    i += 1
                if i >= n:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {boff(begin)}')
                if src[i] != "=":
                    # a value-less attribute, as in <blockquote expandable>
                    if tag == "blockquote" and attr.lower() == "expandable":
                        argument = "expandable"
                    continue
                i += 1
                while i < n and src[i] in _HTML_SPACE:
                    i += 1
                if i >= n:
                    raise HtmlParseError(f'Unclosed start tag "{tag}" at byte offset {boff(begin)}')
                if src[i] not in "'\"":
                    token_begin = i
                    while i < n and (src[i].isascii() and src[i].isalnum() or src[i] in ".-"):
                        i += 1
                    value = src[token_begin:i].lower()
                    if i >= n or (src[i] not in _HTML_SPACE and src[i] != ">"):
                        raise HtmlParseError(
                            f"Unexpected end of name token at byte offset {boff(token_begin)}"
                        )
                else:
                    quote = src[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and src[i] != quote:
                        if src[i] == "&":
                            char, j = _decode_html_entity(src, i)
                            if char is not None:
                                chars.append(char)
                                i = j
                                continue
                        chars.append(src[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise HtmlParseError(f"Unclosed start tag at byte offset {boff(begin)}")
                attr = attr.lower()
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-") :]
                elif tag == "span" and attr == "class":
                    span_class = value
                elif tag == "tg-emoji" and attr == "emoji-id":
                    argument = value
            i += 1  # the '>'
            if tag == "span" and span_class != "tg-spoiler":
                raise HtmlParseError(
                    f'Tag "span" must have class "tg-spoiler" at byte offset {boff(begin)}'
                )
            if tag == "tg-emoji" and not (argument.isascii() and argument.isdigit()):
                raise HtmlParseError("Invalid custom emoji identifier specified")
            stack.append(_OpenTag(tag, argument, u16, len(out), boff(begin)))
            continue

        # end tag
        if not stack:
            raise HtmlParseError(f"Unexpected end tag at byte offset {boff(begin)}")
        i += 1
        while i < n and src[i] not in _HTML_SPACE and src[i] != ">":
            i += 1
        end_name = src[begin + 2 : i]
        while i < n and src[i] in _HTML_SPACE:
            i += 1
        if i >= n or src[i] != ">":
            raise HtmlParseError(f"Unclosed end tag at byte offset {boff(begin)}")
        i += 1
        top = stack[-1]
        if end_name and end_name != top.name:
            raise HtmlParseError(
                f'Unmatched end tag at byte offset {boff(begin)}, expected "</{top.name}>", '
                f'found "</{end_name}>"'
            )
        stack.pop()
        length = u16 - top.offset
        if length <= 0:
            continue
        entity: dict[str, Any] = {"offset": top.offset, "length": length}
        if top.name in _SIMPLE_ENTITY:
            entity["type"] = _SIMPLE_ENTITY[top.name]
        elif top.name == "a":
            url = top.argument or "".join(out[top.out_index :])
            if not url:
                continue
            entity["type"] = "text_link"
            entity["url"] = url
        elif top.name == "code":
            entity["type"] = "code"
            if top.argument:
                entity["language"] = top.argument
        elif top.name == "pre":
            last = entities[-1] if entities else None
            if (
                last is not None
                and last["type"] == "code"
                and last["offset"] == top.offset
                and last["length"] == length
            ):
                entities.pop()
                entity["type"] = "pre"
                if "language" in last:
                    entity["language"] = last["language"]
            else:
                entity["type"] = "pre"
        elif top.name == "blockquote":
            entity["type"] = "expandable_blockquote" if top.argument else "blockquote"
        elif top.name == "tg-emoji":
            entity["type"] = "custom_emoji"
            entity["custom_emoji_id"] = top.argument
        entities.append(entity)

    if stack:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)  # a language is only kept on <pre><code class=...>
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Trim surrounding whitespace as Telegram does and shift/clip the entities."""
    stripped = text.strip(_TRIM)
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip(_TRIM))])
    total = utf16_len(stripped)
    fixed = []
    for entity in entities:
        start = max(0, entity["offset"] - lead)
        end = min(total, entity["offset"] + entity["length"] - lead)
        if end > start:
            fixed.append({**entity, "offset": start, "length": end - start})
    return stripped, fixed


# --------------------------------------------------------------------------------------------
# Records visible to tests
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP request to the fake (every method, getUpdates included)."""

    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() on arrival
    response: dict[str, Any] | None = None  # the JSON body answered; None while pending
    status: int | None = None
    done_at: float | None = None
    cancelled: bool = False  # the client went away (e.g. polling stopped) before the answer


@dataclass(frozen=True)
class UploadedFile:
    """A file part of a multipart request."""

    filename: str
    data: bytes
    content_type: str | None = None


@dataclass(frozen=True)
class Document:
    """A document in the chat; iterating gives (filename, data)."""

    filename: str
    data: bytes
    mime_type: str
    file_id: str
    file_unique_id: str

    def __iter__(self) -> Iterator[Any]:
        return iter((self.filename, self.data))

    def to_api(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_name": self.filename,
            "mime_type": self.mime_type,
            "file_size": len(self.data),
        }


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None = None
    url: str | None = None
    copy_text: str | None = None  # a CopyTextButton's text (pressing it copies, no update)


@dataclass(frozen=True)
class ChatMessage:
    """A message as the user sees it at the time of the snapshot."""

    message_id: int
    from_bot: bool
    text: str  # plain text (entities removed, HTML entities unescaped); caption for documents
    html: str | None  # the raw text (or caption) exactly as the bot sent it
    buttons: list[list[Button]]
    deleted: bool
    disable_notification: bool
    document: Document | None
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    parse_mode: str | None
    date: int
    edit_count: int
    reply_to_message_id: int | None

    @property
    def edited(self) -> bool:
        return self.edit_count > 0

    @property
    def labels(self) -> list[str]:
        return [b.text for row in self.buttons for b in row]

    def button(self, label: str) -> Button:
        for row in self.buttons:
            for b in row:
                if b.text == label:
                    return b
        raise AssertionError(f"no button {label!r} in message {self.message_id}: {self.labels}")


@dataclass
class CallbackAnswer:
    """One callback query the user sent, and the bot's answer to it (if any)."""

    query_id: str
    data: str
    message_id: int
    answered: bool = False
    text: str | None = None
    show_alert: bool = False
    url: str | None = None
    cache_time: int | None = None


@dataclass
class _Stored:
    message_id: int
    chat_id: int
    from_bot: bool
    date: int
    text: str
    html: str | None
    entities: list[dict[str, Any]]
    parse_mode: str | None = None
    reply_markup: dict[str, Any] | None = None
    deleted: bool = False
    disable_notification: bool = False
    protect_content: bool = False
    document: Document | None = None
    photo: Document | None = None  # a photo the user sent (one size)
    edit_date: int | None = None
    edit_count: int = 0
    revision: int = 0
    reply_to: int | None = None

    def buttons(self) -> list[list[Button]]:
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [
            [
                Button(b.get("text", ""), b.get("callback_data"), b.get("url"), (b.get("copy_text") or {}).get("text"))
                for b in row
            ]
            for row in rows
        ]

    def snapshot(self) -> ChatMessage:
        return ChatMessage(
            message_id=self.message_id,
            from_bot=self.from_bot,
            text=self.text,
            html=self.html,
            buttons=self.buttons(),
            deleted=self.deleted,
            disable_notification=self.disable_notification,
            document=self.document,
            entities=[dict(e) for e in self.entities],
            reply_markup=json.loads(json.dumps(self.reply_markup)) if self.reply_markup else None,
            parse_mode=self.parse_mode,
            date=self.date,
            edit_count=self.edit_count,
            reply_to_message_id=self.reply_to,
        )


@dataclass
class _Chat:
    user: FakeUser
    messages: dict[int, _Stored] = field(default_factory=dict)
    next_message_id: int = 1
    blocked: bool = False


@dataclass
class _PendingUpdate:
    update_id: int
    kind: str
    payload: dict[str, Any]
    confirmed: bool = False
    delivered: bool = False  # returned by a getUpdates
    processed: bool = False  # handled to the end (see FakeTelegram.track_processing)
    dropped: str | None = None


@dataclass
class _Fault:
    method: str | None
    status: int
    description: str
    retry_after: int | None
    remaining: int | None
    chat_id: int | None


class ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _scope_chat(params: dict[str, Any]) -> Any:
    scope = params.get("scope")
    return scope.get("chat_id") if isinstance(scope, dict) else None


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)


# --------------------------------------------------------------------------------------------
# The simulated user
# --------------------------------------------------------------------------------------------


class FakeUser:
    """A Telegram user in a private chat with the bot."""

    def __init__(
        self,
        fake: FakeTelegram,
        user_id: int,
        language_code: str = "en",
        first_name: str = "Test",
        username: str | None = None,
    ) -> None:
        self._fake = fake
        self.id = user_id
        self.chat_id = user_id
        self.language_code = language_code
        self.first_name = first_name
        self.username = username
        self.callback_answers: list[CallbackAnswer] = []
        self.chat_actions: list[str] = []

    def __repr__(self) -> str:
        return f"FakeUser(id={self.id}, first_name={self.first_name!r})"

    # --- api shapes ---
    def to_api(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def chat_api(self) -> dict[str, Any]:
        chat: dict[str, Any] = {
            "id": self.chat_id,
            "type": "private",
            "first_name": self.first_name,
        }
        if self.username:
            chat["username"] = self.username
        return chat

    @property
    def _chat(self) -> _Chat:
        return self._fake._chats[self.chat_id]

    # --- acting ---
    async def send(
        self,
        text: str,
        *,
        wait: bool = True,
        timeout: float | None = None,
        reply_to: int | None = None,
        entities: list[dict[str, Any]] | None = None,
    ) -> int:
        """Send a text message to the bot; wait until the bot has processed it; return its id.
        ``reply_to``: the message it answers; ``entities``: formatting (UTF-16 offsets)."""
        if entities is not None:
            return await self._send_stored(
                self._fake._add_message(
                    self.chat_id, from_bot=False, text=text, html=None, entities=entities, reply_to=reply_to
                ),
                wait, timeout,
            )
        entities = []
        match = re.match(r"/[A-Za-z0-9_]{1,64}(@[A-Za-z0-9_]{3,32})?", text)
        if match and (
            match.end() == len(text)
            or not (text[match.end()].isalnum() or text[match.end()] == "_")
        ):
            entities.append(
                {"type": "bot_command", "offset": 0, "length": utf16_len(match.group(0))}
            )
        stored = self._fake._add_message(
            self.chat_id, from_bot=False, text=text, html=None, entities=entities, reply_to=reply_to
        )
        return await self._send_stored(stored, wait, timeout)

    async def _send_stored(self, stored: _Stored, wait: bool, timeout: float | None) -> int:
        payload = self._fake._message_api(stored)
        update_id = self._fake.queue_update({"message": payload})
        if wait:
            await self._fake.wait_processed(update_id, timeout=timeout)
        return stored.message_id

    def _user_file(self, filename: str, data: bytes, mime_type: str, prefix: str) -> Document:
        doc = Document(
            filename=filename, data=data, mime_type=mime_type,
            file_id=prefix + secrets.token_urlsafe(24), file_unique_id="AQAD" + secrets.token_urlsafe(8),
        )
        self._fake._files[doc.file_id] = doc
        return doc

    async def send_photo(
        self, data: bytes, *, caption: str = "", reply_to: int | None = None, timeout: float | None = None
    ) -> int:
        """Send a photo (one size, JPEG) to the bot; the bot can getFile and download it."""
        photo = self._user_file("photo.jpg", data, "image/jpeg", "AgAC")
        stored = self._fake._add_message(
            self.chat_id, from_bot=False, text=caption, html=None, entities=[], photo=photo, reply_to=reply_to
        )
        return await self._send_stored(stored, True, timeout)

    async def send_document(
        self, filename: str, data: bytes, *, mime_type: str = "application/octet-stream", caption: str = "",
        timeout: float | None = None,
    ) -> int:
        """Send a document to the bot; the bot can getFile and download it."""
        doc = self._user_file(filename, data, mime_type, "BQAC")
        stored = self._fake._add_message(
            self.chat_id, from_bot=False, text=caption, html=None, entities=[], document=doc
        )
        return await self._send_stored(stored, True, timeout)

    async def press(
        self,
        label: str,
        message_id: int | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> CallbackAnswer:
        """Press the inline button with that exact label (newest bot message having it)."""
        candidates = self._bot_messages()
        if message_id is not None:
            target = self._chat.messages.get(message_id)
            if target is None or target.deleted or not target.from_bot:
                raise AssertionError(f"no bot message {message_id} in chat {self.chat_id}")
            candidates = [target]
        for stored in reversed(candidates):
            for row in stored.buttons():
                for button in row:
                    if button.text != label:
                        continue
                    if button.callback_data is None:
                        raise AssertionError(
                            f"button {label!r} in message {stored.message_id} is not a callback "
                            f"button (url={button.url!r})"
                        )
                    return await self._callback(stored, button.callback_data, wait, timeout)
        available = {
            s.message_id: [b.text for row in s.buttons() for b in row]
            for s in candidates
            if s.buttons()
        }
        where = f"message {message_id}" if message_id is not None else "any bot message"
        raise AssertionError(
            f"no inline button {label!r} in {where}; available labels by message id: {available}"
        )

    async def press_data(
        self,
        callback_data: str,
        message_id: int,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> CallbackAnswer:
        """Send a callback query with arbitrary (forged) data from the given bot message."""
        stored = self._chat.messages.get(message_id)
        if stored is None or stored.deleted:
            raise AssertionError(f"no message {message_id} in chat {self.chat_id}")
        return await self._callback(stored, callback_data, wait, timeout)

    async def _callback(
        self, stored: _Stored, data: str, wait: bool, timeout: float | None
    ) -> CallbackAnswer:
        query_id = str(self._fake._next_query_id())
        answer = CallbackAnswer(query_id=query_id, data=data, message_id=stored.message_id)
        self.callback_answers.append(answer)
        self._fake._queries[query_id] = answer
        payload = {
            "id": query_id,
            "from": self.to_api(),
            "message": self._fake._message_api(stored),
            "chat_instance": str(-(10**18) - self.chat_id),
            "data": data,
        }
        update_id = self._fake.queue_update({"callback_query": payload})
        if wait:
            await self._fake.wait_processed(update_id, timeout=timeout)
        return answer

    # --- looking ---
    def _bot_messages(self) -> list[_Stored]:
        return [m for m in self._chat.messages.values() if m.from_bot and not m.deleted]

    def messages(self) -> list[ChatMessage]:
        """The chat as the user sees it now (deleted messages left out, edits applied)."""
        return [m.snapshot() for m in self._chat.messages.values() if not m.deleted]

    def all_messages(self) -> list[ChatMessage]:
        """Every message ever in the chat, deleted ones included (ChatMessage.deleted)."""
        return [m.snapshot() for m in self._chat.messages.values()]

    def last(self) -> ChatMessage:
        """The newest bot message still in the chat (after edits)."""
        bot_messages = self._bot_messages()
        if not bot_messages:
            raise AssertionError(
                f"the bot has sent no message (still visible) to chat {self.chat_id}"
            )
        return bot_messages[-1].snapshot()

    def message(self, message_id: int) -> ChatMessage:
        stored = self._chat.messages.get(message_id)
        if stored is None:
            raise AssertionError(f"no message {message_id} in chat {self.chat_id}")
        return stored.snapshot()

    def buttons(self, message_id: int | None = None) -> list[str]:
        """Labels of the newest bot message with an inline keyboard (or of the given message)."""
        if message_id is not None:
            return self.message(message_id).labels
        for stored in reversed(self._bot_messages()):
            if stored.buttons():
                return [b.text for row in stored.buttons() for b in row]
        return []

    def is_deleted(self, message_id: int) -> bool:
        stored = self._chat.messages.get(message_id)
        if stored is None:
            raise AssertionError(f"message {message_id} never existed in chat {self.chat_id}")
        return stored.deleted

    def mark(self) -> int:
        """A point in the chat's history, for ``wait_for(..., since=mark)``."""
        return self._fake._rev

    async def wait_for(
        self,
        predicate: Callable[[ChatMessage], bool],
        timeout: float = 5.0,
        *,
        new_only: bool = False,
        since: int | None = None,
    ) -> ChatMessage:
        """Wait until a bot message satisfies ``predicate`` and return it (newest first).

        Messages already in the chat count, unless ``new_only`` (only messages sent or edited
        after this call) or ``since=user.mark()`` (only those sent or edited after the mark:
        race-free when the bot may act before the wait starts)."""
        if new_only and since is None:
            since = self._fake._rev

        def check() -> ChatMessage | None:
            for stored in reversed(self._bot_messages()):
                if since is not None and stored.revision <= since:
                    continue
                snap = stored.snapshot()
                if predicate(snap):
                    return snap
            return None

        def describe() -> str:
            seen = [(m.message_id, m.text[:80]) for m in self._bot_messages()[-10:]]
            return f"no bot message in chat {self.chat_id} matched within {timeout}s; last ones: {seen}"

        return await self._fake._wait_until(check, timeout, describe)

    async def wait_deleted(self, message_id: int, timeout: float = 5.0) -> None:
        """Wait until the message (bot's or user's) has been deleted."""
        self.message(message_id)  # it must exist
        await self._fake._wait_until(
            lambda: self._chat.messages[message_id].deleted,
            timeout,
            lambda: f"message {message_id} in chat {self.chat_id} not deleted within {timeout}s",
        )

    async def wait_for_text(self, fragment: str, timeout: float = 5.0) -> ChatMessage:
        return await self.wait_for(lambda m: fragment in m.text, timeout)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeTelegram:
    """An in-process fake of the Telegram Bot API (aiohttp server on 127.0.0.1)."""

    def __init__(
        self,
        token: str = "123456:TEST-token",
        bot_username: str = "mailbridge_test_bot",
        bot_name: str = "Mailbridge Test",
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.bot_id = int(token.split(":", 1)[0])
        self.base_url = ""
        self.calls: list[Call] = []
        self.rate_limit: tuple[float, float] | None = None
        self.rate_limit_burst: tuple[float, float] | None = (
            None  # bucket sizes; default max(1, rate)
        )
        self.strict_ampersand = True  # see parse_html()
        self.max_upload_bytes = MAX_UPLOAD_BYTES
        self.max_download_bytes = MAX_DOWNLOAD_BYTES
        # False: a reply's `reply_to_message` comes without the answered message's keyboard
        self.replies_carry_keyboard = True
        self.process_timeout = DEFAULT_PROCESS_TIMEOUT
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.webhook_targets: list[str] = []
        self.deliveries: list[tuple[int, str, int | None]] = []
        self._next_target = 0
        self._delivering: set[asyncio.Task[Any]] = set()
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}

        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, FakeUser] = {}
        self._updates: list[_PendingUpdate] = []
        self._all_updates: dict[int, _PendingUpdate] = {}
        self._update_ids = itertools.count(1)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._queries: dict[str, CallbackAnswer] = {}
        self._allowed_updates: frozenset[str] = _DEFAULT_UPDATE_TYPES
        self._faults: list[_Fault] = []
        self._delays: dict[str | None, float] = {}
        self._holds: dict[tuple[str, Any], float] = {}
        self._buckets: dict[Any, list[float]] = {}
        self._files: dict[str, Document] = {}
        self._file_paths: dict[str, Document] = {}
        self._rev = 0

        self._changed = asyncio.Event()
        self._poll_seq = 0
        self._idle_polls = 0
        self._empty_polls = 0
        self._closing = False
        self._pollers: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._tracking = False

    # --- lifecycle ---
    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._closing = False

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        for task in list(self._delivering):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- users and chats ---
    def user(
        self,
        user_id: int,
        language_code: str = "en",
        first_name: str = "Test",
        username: str | None = None,
    ) -> FakeUser:
        """The user with that id (created on first call: their private chat with the bot exists)."""
        existing = self._users.get(user_id)
        if existing is not None:
            return existing
        user = FakeUser(self, user_id, language_code, first_name, username)
        self._users[user_id] = user
        self._chats[user.chat_id] = _Chat(user)
        return user

    def bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_name,
            "username": self.bot_username,
        }

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # --- fault injection ---
    def fail(
        self,
        method: str | None,
        *,
        status: int,
        description: str = "",
        retry_after: int | None = None,
        times: int | None = 1,
        chat_id: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching calls with that error (``times=None``: until
        :meth:`clear_faults`). ``method=None`` matches every method except getUpdates (name
        getUpdates explicitly to fail polling). A 429 always carries ``parameters.retry_after``
        (default 1). ``description`` is used verbatim; empty means Telegram's usual text."""
        if status == 429 and retry_after is None:
            retry_after = 1
        if not description:
            base = _STATUS_TEXT.get(status, "Error")
            description = f"{base}: retry after {retry_after}" if status == 429 else base
        self._faults.append(_Fault(method, status, description, retry_after, times, chat_id))

    def clear_faults(self) -> None:
        self._faults.clear()

    def block(self, chat_id: int, *, notify: bool = False) -> int | None:
        """The user blocks the bot: sends/edits to the chat answer 403 "Forbidden: bot was
        blocked by the user". With ``notify``, also queue the ``my_chat_member`` update Telegram
        sends (if the bot's allowed_updates take it) and return its update id."""
        self._chat_or_fail(chat_id).blocked = True
        return self._queue_member_update(chat_id, old="member", new="kicked") if notify else None

    def unblock(self, chat_id: int, *, notify: bool = False) -> int | None:
        self._chat_or_fail(chat_id).blocked = False
        return self._queue_member_update(chat_id, old="kicked", new="member") if notify else None

    def set_delay(self, method: str | None, seconds: float) -> None:
        """Delay answers to ``method`` (None: every method but getUpdates); 0 removes it."""
        if seconds <= 0:
            self._delays.pop(method, None)
        else:
            self._delays[method] = seconds

    def hold(self, method: str, seconds: float, *, chat_id: int | None = None) -> None:
        """Carry out ``method`` (for ``chat_id`` only, if given) at once, as Telegram does when
        the request arrives, but send the answer ``seconds`` later; 0 removes it. The client
        waits with its request "on its way"; if it hangs up meanwhile, the message was
        delivered all the same (unlike :meth:`set_delay`, which delays before anything is
        done)."""
        if seconds <= 0:
            self._holds.pop((method, chat_id), None)
        else:
            self._holds[(method, chat_id)] = seconds

    # --- updates ---
    def queue_update(self, body: dict[str, Any]) -> int:
        """Queue a raw update (``{"message": {...}}`` etc., without update_id); return its id.

        Raises AssertionError when the bot's current allowed_updates would not take it (Telegram
        drops such updates)."""
        kind = next(k for k in body if k != "update_id")
        if kind not in self._allowed_updates:
            raise AssertionError(
                f"a {kind!r} update would never reach the bot: its allowed_updates are "
                f"{sorted(self._allowed_updates)} (does the dispatcher have a {kind} handler?)"
            )
        update_id = next(self._update_ids)
        pending = _PendingUpdate(update_id, kind, {"update_id": update_id, **body})
        self._updates.append(pending)
        self._all_updates[update_id] = pending
        self._notify()
        if self.webhook_url and self.webhook_targets:
            target = self.webhook_targets[self._next_target % len(self.webhook_targets)]
            self._next_target += 1
            task = asyncio.get_running_loop().create_task(self._deliver(pending, target))
            self._delivering.add(task)
            task.add_done_callback(self._delivering.discard)
        return update_id

    def track_processing(self, dp: Any) -> None:
        """Know when the dispatcher has finished handling each update, so that waits hold with
        ``handle_as_tasks=True`` (updates handled concurrently, as in production)."""
        dp.update.outer_middleware(self._processing_middleware)
        self._tracking = True

    async def _processing_middleware(
        self, handler: Callable[[Any, dict[str, Any]], Awaitable[Any]], event: Any, data: dict[str, Any]
    ) -> Any:
        try:
            return await handler(event, data)
        finally:
            pending = self._all_updates.get(getattr(event, "update_id", -1))
            if pending is not None:
                pending.processed = True
                self._notify()

    async def wait_all_processed(self, timeout: float = 5.0) -> None:
        """Wait until every update the bot has fetched is handled (nothing in flight)."""
        if not self._tracking:
            return
        await self._wait_until(
            lambda: all(u.processed or u.dropped for u in self._all_updates.values() if u.delivered),
            timeout,
            lambda: f"updates still being handled after {timeout}s",
        )

    async def post_update(self, target: str, payload: dict[str, Any], secret: str | None) -> int:
        """POST one update to a webhook address as Telegram does; return the HTTP status."""
        import aiohttp

        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with aiohttp.ClientSession() as http, http.post(
            target, json=payload, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            await resp.read()
            return resp.status

    async def _deliver(self, pending: _PendingUpdate, target: str, attempts: int = 5) -> None:
        for attempt in range(attempts):
            status: int | None = None
            try:
                status = await self.post_update(target, pending.payload, self.webhook_secret)
            except Exception as exc:  # noqa: BLE001 - connection refused etc.: Telegram retries
                log.debug("webhook delivery of %s to %s failed: %r", pending.update_id, target, exc)
            self.deliveries.append((pending.update_id, target, status))
            if status is not None and 200 <= status < 300:
                pending.confirmed = True
                with contextlib.suppress(ValueError):
                    self._updates.remove(pending)
                self._notify()
                return
            await asyncio.sleep(0.2 * (attempt + 1))
        pending.dropped = f"webhook delivery to {target} failed {attempts} times"
        self._notify()

    async def wait_processed(self, update_id: int, timeout: float | None = None) -> None:
        """Wait until the bot has handled the update: to the end when processing is tracked
        (:meth:`track_processing`), else until confirmed (getUpdates with offset > update_id)."""
        pending = self._all_updates[update_id]
        timeout = self.process_timeout if timeout is None else timeout

        def check() -> bool:
            if pending.dropped:
                raise AssertionError(
                    f"update {update_id} ({pending.kind}) was dropped: {pending.dropped}"
                )
            for task in self._pollers:
                if task.done():
                    exc = None if task.cancelled() else task.exception()
                    raise AssertionError(
                        f"polling stopped before update {update_id} ({pending.kind}) was processed"
                        + (f": {exc!r}" if exc else "")
                    ) from exc
            return pending.processed if self._tracking else pending.confirmed

        def describe() -> str:
            polls = self.calls_of("getUpdates")
            last = polls[-1].params if polls else None
            if pending.confirmed:
                return f"update {update_id} ({pending.kind}) fetched but not handled within {timeout}s"
            return (
                f"update {update_id} ({pending.kind}) not processed within {timeout}s: no getUpdates "
                f"with offset > {update_id} arrived (last getUpdates params: {last}). Is "
                "dp.start_polling(bot, ...) running against this fake?"
            )

        await self._wait_until(check, timeout, describe)

    async def wait_polling(self, timeout: float = 5.0) -> None:
        """Wait until the bot is idle in getUpdates (long-polling with nothing left to fetch)."""
        empty_before = self._empty_polls

        def check() -> bool:
            for task in self._pollers:
                if task.done():
                    exc = None if task.cancelled() else task.exception()
                    raise AssertionError(f"polling ended: {exc!r}") from exc
            return self._idle_polls > 0 or self._empty_polls > empty_before

        await self._wait_until(check, timeout, lambda: f"the bot did not poll within {timeout}s")

    def attach_poller(self, task: asyncio.Task[Any]) -> None:
        """Let waits fail fast when this polling task ends."""
        self._pollers.append(task)
        task.add_done_callback(lambda _t: self._notify())

    def detach_poller(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._pollers.remove(task)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return [u.payload for u in self._updates]

    @property
    def allowed_updates(self) -> frozenset[str]:
        return self._allowed_updates

    def _queue_member_update(self, chat_id: int, old: str, new: str) -> int | None:
        user = self._chat_or_fail(chat_id).user
        body = {
            "my_chat_member": {
                "chat": user.chat_api(),
                "from": user.to_api(),
                "date": int(time.time()),
                "old_chat_member": {
                    "status": old,
                    "user": self.bot_user(),
                    **({"until_date": 0} if old == "kicked" else {}),
                },
                "new_chat_member": {
                    "status": new,
                    "user": self.bot_user(),
                    **({"until_date": 0} if new == "kicked" else {}),
                },
            }
        }
        if "my_chat_member" in self._allowed_updates:
            return self.queue_update(body)
        return None

    # --- waiting helpers ---
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(
        self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(describe())
            event = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _bump(self) -> int:
        self._rev += 1
        return self._rev

    def _next_query_id(self) -> int:
        return next(self._query_ids)

    # --- messages ---
    def _chat_or_fail(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise AssertionError(f"no chat {chat_id}: create it with fake.user({chat_id})")
        return chat

    def _add_message(
        self,
        chat_id: int,
        *,
        from_bot: bool,
        text: str,
        html: str | None,
        entities: list[dict[str, Any]],
        **extra: Any,
    ) -> _Stored:
        chat = self._chats[chat_id]
        stored = _Stored(
            message_id=chat.next_message_id,
            chat_id=chat_id,
            from_bot=from_bot,
            date=int(time.time()),
            text=text,
            html=html,
            entities=entities,
            revision=self._bump(),
            **extra,
        )
        chat.next_message_id += 1
        chat.messages[stored.message_id] = stored
        self._notify()
        return stored

    def _message_api(self, stored: _Stored) -> dict[str, Any]:
        chat = self._chats[stored.chat_id]
        msg: dict[str, Any] = {
            "message_id": stored.message_id,
            "from": self.bot_user() if stored.from_bot else chat.user.to_api(),
            "chat": chat.user.chat_api(),
            "date": stored.date,
        }
        if stored.photo is not None:
            msg["photo"] = [{
                "file_id": stored.photo.file_id, "file_unique_id": stored.photo.file_unique_id,
                "width": 800, "height": 600, "file_size": len(stored.photo.data),
            }]
            if stored.text:
                msg["caption"] = stored.text
                if stored.entities:
                    msg["caption_entities"] = stored.entities
        elif stored.document is not None:
            msg["document"] = stored.document.to_api()
            if stored.text:
                msg["caption"] = stored.text
                if stored.entities:
                    msg["caption_entities"] = stored.entities
        else:
            msg["text"] = stored.text
            if stored.entities:
                msg["entities"] = stored.entities
        if stored.edit_date is not None:
            msg["edit_date"] = stored.edit_date
        if stored.reply_markup and "inline_keyboard" in stored.reply_markup:
            msg["reply_markup"] = stored.reply_markup
        if stored.protect_content:
            msg["has_protected_content"] = True
        if stored.reply_to is not None:
            target = chat.messages.get(stored.reply_to)
            if target is not None and not target.deleted:
                inner = self._message_api(target)
                inner.pop("reply_to_message", None)
                if not self.replies_carry_keyboard:
                    inner.pop("reply_markup", None)
                msg["reply_to_message"] = inner
        return msg

    # --- HTTP plumbing ---
    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        doc = self._file_paths.get(request.match_info["path"])
        if doc is None:
            return self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        return web.Response(body=doc.data, content_type=doc.mime_type)

    @staticmethod
    def _json(status: int, body: dict[str, Any]) -> web.Response:
        return web.Response(
            status=status,
            text=json.dumps(body, ensure_ascii=False),
            content_type="application/json",
        )

    async def _handle_api(self, request: web.Request) -> web.Response:
        raw_method = request.match_info["method"]
        entry = _METHODS.get(raw_method.lower())
        method = entry[0] if entry else raw_method
        call = Call(method=method, params={}, at=time.monotonic())
        self.calls.append(call)
        try:
            call.params = await self._read_params(request)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            if entry is None:
                raise ApiError(404, "Not Found")
            delay = self._delays.get(
                method, self._delays.get(None) if method != "getUpdates" else None
            )
            if delay:
                await asyncio.sleep(delay)
            self._check_faults(method, call.params)
            self._check_blocked(method, call.params)
            self._check_rate(method, call.params)
            result = await entry[1](self, call.params)
            status, body = 200, {"ok": True, "result": result}
            hold = self._holds.get((method, call.params.get("chat_id"))) or self._holds.get((method, None))
            if hold:
                await asyncio.sleep(hold)  # the message is in the chat; only the answer is late
        except ApiError as exc:
            status = exc.status
            body = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
        except web.HTTPRequestEntityTooLarge:
            status = 413
            body = {"ok": False, "error_code": 413, "description": "Request Entity Too Large"}
        except asyncio.CancelledError:
            call.cancelled = True
            call.done_at = time.monotonic()
            raise
        call.status = status
        call.response = body
        call.done_at = time.monotonic()
        if status != 200:
            log.debug("%s -> %s %s", method, status, body.get("description"))
        return self._json(status, body)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if request.method == "POST" and request.can_read_body:
            if ctype == "multipart/form-data":
                params.update(await self._read_multipart(request))
            elif ctype == "application/json":
                try:
                    data = await request.json()
                except ValueError as exc:
                    raise _bad("can't parse JSON object") from exc
                if not isinstance(data, dict):
                    raise _bad("can't parse JSON object")
                params.update(data)
            else:
                params.update(dict(await request.post()))
        params = {k: self._coerce(k, v) for k, v in params.items()}
        # Resolve "attach://<part>" references so Call.params shows the uploaded file itself.
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                part = params.get(value[len("attach://") :])
                if isinstance(part, UploadedFile):
                    params[key] = part
                    params.pop(value[len("attach://") :], None)
        return params

    async def _read_multipart(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        too_large = False
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: not used by Telegram clients
            name = part.name or ""
            if part.filename is None:
                params[name] = (await part.read(decode=True)).decode(part.get_charset("utf-8"))
                continue
            chunks: list[bytes] = []
            size = 0
            while chunk := await part.read_chunk(1 << 20):
                size += len(chunk)
                if size > self.max_upload_bytes:
                    too_large = True
                    chunks.clear()
                    continue  # keep draining so the client can read our answer
                chunks.append(chunk)
            params[name] = UploadedFile(
                filename=part.filename,
                data=b"".join(chunks),
                content_type=part.headers.get("Content-Type"),
            )
        if too_large:
            raise ApiError(413, "Request Entity Too Large")
        return params

    @staticmethod
    def _coerce(name: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if name in _JSON_FIELDS:
            try:
                return json.loads(value)
            except ValueError as exc:
                if name == "reply_markup":
                    raise _bad("can't parse reply keyboard markup JSON object") from exc
                raise _bad(f"can't parse {name} JSON object") from exc
        if name in _INT_FIELDS:
            try:
                return int(value)
            except ValueError as exc:
                raise _bad(f"invalid {name} specified") from exc
        if name in _BOOL_FIELDS:
            return value.lower() in ("true", "1")
        if name in ("chat_id", "user_id") and re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    # --- checks before a method runs ---
    def _check_faults(self, method: str, params: dict[str, Any]) -> None:
        for fault in self._faults:
            if fault.method is None and method == "getUpdates":
                continue
            if fault.method is not None and fault.method.lower() != method.lower():
                continue
            if fault.chat_id is not None and fault.chat_id not in (
                params.get("chat_id"),
                _scope_chat(params),  # setMyCommands for one chat
            ):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
            parameters = (
                {"retry_after": fault.retry_after} if fault.retry_after is not None else None
            )
            raise ApiError(fault.status, fault.description, parameters)

    def _check_blocked(self, method: str, params: dict[str, Any]) -> None:
        if not method.startswith(_BLOCKABLE_PREFIXES):
            return
        chat = self._chats.get(params.get("chat_id"))  # type: ignore[arg-type]
        if chat is not None and chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def _check_rate(self, method: str, params: dict[str, Any]) -> None:
        if self.rate_limit is None or method not in _RATE_LIMITED:
            return
        now = time.monotonic()
        burst = self.rate_limit_burst or (None, None)
        keys = [
            ("global", self.rate_limit[0], burst[0]),
            (("chat", params.get("chat_id")), self.rate_limit[1], burst[1]),
        ]
        waits = []
        for key, rate, size in keys:
            if not rate or rate <= 0:
                continue
            capacity = size if size else max(1.0, rate)
            bucket = self._buckets.setdefault(key, [capacity, now])
            bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] < 1:
                waits.append(math.ceil((1 - bucket[0]) / rate))
        if waits:
            retry = max(1, max(waits))
            raise ApiError(429, f"Too Many Requests: retry after {retry}", {"retry_after": retry})
        for key, rate, _size in keys:
            if rate and rate > 0:
                self._buckets[key][0] -= 1

    # --- helpers for method implementations ---
    def _target_chat(self, params: dict[str, Any]) -> _Chat:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str):
            for chat in self._chats.values():
                if chat.user.username and f"@{chat.user.username}".lower() == chat_id.lower():
                    return chat
            raise _bad("chat not found")
        found = self._chats.get(chat_id)
        if found is None:
            raise _bad("chat not found")
        return found

    def _render(
        self, text: Any, parse_mode: Any, entities: Any, *, caption: bool = False
    ) -> tuple[str, list[dict[str, Any]], str | None]:
        """Return (plain text, entities, parse_mode) or raise the error Telegram gives."""
        if text is None:
            text = ""
        text = str(text)
        mode = parse_mode or None
        if mode is not None and str(mode).lower() == "html":
            try:
                plain, found = parse_html(text, strict_ampersand=self.strict_ampersand)
            except HtmlParseError as exc:
                raise _bad(f"can't parse entities: {exc}") from exc
            mode = "HTML"
        elif mode is not None and str(mode).lower() in ("markdown", "markdownv2"):
            plain, found = text, []  # not modelled: kept as sent
        elif mode is not None:
            raise _bad("unsupported parse_mode")
        else:
            plain, found = text, [dict(e) for e in (entities or []) if isinstance(e, dict)]
        plain, found = _trim(plain, found)
        limit = MAX_CAPTION_LENGTH if caption else MAX_TEXT_LENGTH
        if caption:
            if len(plain) > limit:
                raise _bad("message caption is too long")
        else:
            if not plain:
                raise _bad("message text is empty")
            if len(plain) > limit:
                raise _bad("message is too long")
        return plain, found, mode

    @staticmethod
    def _check_markup(markup: Any) -> dict[str, Any] | None:
        if markup is None or markup == "":
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad(
                    'can\'t parse inline keyboard markup: field "inline_keyboard" must be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise _bad("can't parse inline keyboard button: Text must be non-empty")
                    kinds = [k for k in button if k != "text"]
                    if not kinds:
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                        )
                    if "callback_data" in button:
                        data = button["callback_data"]
                        size = len(str(data).encode("utf-8"))
                        if not isinstance(data, str) or size < 1 or size > MAX_CALLBACK_DATA_BYTES:
                            raise _bad("BUTTON_DATA_INVALID")
                    if "copy_text" in button:  # CopyTextButton: {"text": 1-256 characters}
                        copy = button["copy_text"]
                        text = copy.get("text") if isinstance(copy, dict) else None
                        if not isinstance(text, str) or not 1 <= len(text) <= 256:
                            raise _bad("can't parse inline keyboard button: copy_text.text must be 1-256 characters")
                    if "url" in button:
                        url = button["url"]
                        if not isinstance(url, str) or not url or any(c.isspace() for c in url):
                            raise _bad("BUTTON_URL_INVALID")
        return markup

    def _bot_message(self, params: dict[str, Any], *, action: str) -> _Stored:
        if params.get("inline_message_id"):
            raise _bad("inline messages are not modelled by FakeTelegram")
        chat = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        stored = chat.messages.get(message_id)
        if stored is None or stored.deleted:
            raise _bad(f"message to {action} not found")
        if not stored.from_bot:
            raise _bad("message can't be edited")
        return stored

    def _resolve_file(
        self, value: Any, params: dict[str, Any], field_name: str
    ) -> tuple[str, bytes, str | None]:
        if isinstance(value, UploadedFile):
            return value.filename, value.data, value.content_type
        if isinstance(value, str) and value.startswith("attach://"):
            part = params.get(value[len("attach://") :])
            if isinstance(part, UploadedFile):
                return part.filename, part.data, part.content_type
            raise _bad(f"wrong file identifier/HTTP URL specified ({field_name})")
        if isinstance(value, str) and value in self._files:
            doc = self._files[value]
            return doc.filename, doc.data, doc.mime_type
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            raise _bad("wrong file identifier/HTTP URL specified")  # no internet in tests
        if not value:
            raise _bad(f"there is no {field_name} in the request")
        raise _bad("wrong file identifier/HTTP URL specified")

    def _reply_target(self, chat: _Chat, params: dict[str, Any]) -> int | None:
        reply_id = params.get("reply_to_message_id")
        allow = bool(params.get("allow_sending_without_reply"))
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            reply_id = reply.get("message_id")
            allow = bool(reply.get("allow_sending_without_reply"))
        if reply_id is None:
            return None
        target = chat.messages.get(int(reply_id))
        if target is None or target.deleted:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return target.message_id

    # --- methods ---
    async def _m_get_me(self, p: dict[str, Any]) -> Any:
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _m_log_out(self, p: dict[str, Any]) -> Any:
        return True

    async def _m_get_updates(self, p: dict[str, Any]) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                "to delete the webhook first",
            )
        offset = int(p.get("offset") or 0)
        limit = int(p.get("limit") or 100)
        limit = max(1, min(100, limit))
        timeout = max(0, int(p.get("timeout") or 0))
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else _DEFAULT_UPDATE_TYPES
        self._confirm(offset)

        self._poll_seq += 1
        my_seq = self._poll_seq
        self._notify()  # wakes an older pending poll, which then answers 409
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        idle = False
        try:
            while True:
                if my_seq != self._poll_seq:
                    raise ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                    )
                if self._updates or self._closing:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if not idle:
                    idle = True
                    self._idle_polls += 1
                    self._notify()
                event = self._changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            if idle:
                self._idle_polls -= 1
        for pending in self._updates[:limit]:
            pending.delivered = True
        batch = [u.payload for u in self._updates[:limit]]
        if not batch:
            self._empty_polls += 1
            self._notify()
        return batch

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            keep = []
            for pending in self._updates:
                if pending.update_id < offset:
                    pending.confirmed = True
                else:
                    keep.append(pending)
            if len(keep) != len(self._updates):
                self._updates = keep
                self._notify()
        elif offset < 0:
            cut = len(self._updates) + offset
            if cut > 0:
                for pending in self._updates[:cut]:
                    pending.dropped = "forgotten by getUpdates with a negative offset"
                self._updates = self._updates[cut:]
                self._notify()

    async def _m_set_webhook(self, p: dict[str, Any]) -> Any:
        url = p.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = str(url)
        secret = p.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        self.webhook_secret = str(secret) if secret else None
        allowed = p.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(allowed) if allowed else _DEFAULT_UPDATE_TYPES
        if p.get("drop_pending_updates"):
            self._drop_pending("setWebhook(drop_pending_updates=True)")
        self._poll_seq += 1  # a pending getUpdates ends with 409
        self._notify()
        return True

    async def _m_delete_webhook(self, p: dict[str, Any]) -> Any:
        self.webhook_url = ""
        self.webhook_secret = None
        if p.get("drop_pending_updates"):
            self._drop_pending("deleteWebhook(drop_pending_updates=True)")
        return True

    def _drop_pending(self, why: str) -> None:
        for pending in self._updates:
            pending.dropped = f"dropped by {why}"
        self._updates = []
        self._notify()

    async def _m_get_webhook_info(self, p: dict[str, Any]) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    @staticmethod
    def _commands_key(p: dict[str, Any]) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(p.get("language_code") or "")

    async def _m_set_my_commands(self, p: dict[str, Any]) -> Any:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand")
            name = str(command.get("command", ""))
            description = str(command.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name.lower()):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name.lower(), "description": description})
        self.commands[self._commands_key(p)] = cleaned
        return True

    async def _m_get_my_commands(self, p: dict[str, Any]) -> Any:
        return list(self.commands.get(self._commands_key(p), []))

    async def _m_delete_my_commands(self, p: dict[str, Any]) -> Any:
        self.commands.pop(self._commands_key(p), None)
        return True

    async def _m_send_message(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        text, entities, mode = self._render(p.get("text"), p.get("parse_mode"), p.get("entities"))
        markup = self._check_markup(p.get("reply_markup"))
        reply_to = self._reply_target(chat, p)
        stored = self._add_message(
            chat.user.chat_id,
            from_bot=True,
            text=text,
            html=str(p.get("text")),
            entities=entities,
            parse_mode=mode,
            reply_markup=markup,
            disable_notification=bool(p.get("disable_notification")),
            protect_content=bool(p.get("protect_content")),
            reply_to=reply_to,
        )
        return self._message_api(stored)

    async def _m_send_document(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        filename, data, content_type = self._resolve_file(p.get("document"), p, "document")
        if not data:
            raise _bad("file must be non-empty")
        if len(data) > self.max_upload_bytes:
            raise ApiError(413, "Request Entity Too Large")
        caption = p.get("caption")
        text, entities, mode = self._render(
            caption, p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        markup = self._check_markup(p.get("reply_markup"))
        reply_to = self._reply_target(chat, p)
        mime = content_type if content_type and content_type != "application/octet-stream" else None
        mime = mime or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        doc = Document(
            filename=filename,
            data=data,
            mime_type=mime,
            file_id="BQACAgIAAxk" + secrets.token_urlsafe(24),
            file_unique_id="AgAD" + secrets.token_urlsafe(8),
        )
        self._files[doc.file_id] = doc
        stored = self._add_message(
            chat.user.chat_id,
            from_bot=True,
            text=text,
            html=None if caption is None else str(caption),
            entities=entities,
            parse_mode=mode,
            reply_markup=markup,
            disable_notification=bool(p.get("disable_notification")),
            protect_content=bool(p.get("protect_content")),
            document=doc,
            reply_to=reply_to,
        )
        return self._message_api(stored)

    async def _m_get_file(self, p: dict[str, Any]) -> Any:
        doc = self._files.get(str(p.get("file_id") or ""))
        if doc is None:
            raise _bad("invalid file_id")
        if len(doc.data) > self.max_download_bytes:
            raise _bad("file is too big")
        folder = "photos" if doc.file_id.startswith("AgAC") else "documents"
        path = f"{folder}/file_{len(self._file_paths)}_{doc.filename}"
        for known, known_doc in self._file_paths.items():
            if known_doc is doc:
                path = known
                break
        self._file_paths[path] = doc
        return {
            "file_id": doc.file_id,
            "file_unique_id": doc.file_unique_id,
            "file_size": len(doc.data),
            "file_path": path,
        }

    def _edited(self, stored: _Stored) -> Any:
        stored.edit_date = int(time.time())
        stored.edit_count += 1
        stored.revision = self._bump()
        self._notify()
        return self._message_api(stored)

    async def _m_edit_message_text(self, p: dict[str, Any]) -> Any:
        stored = self._bot_message(p, action="edit")
        if stored.document is not None:
            raise _bad("there is no text in the message to edit")
        text, entities, mode = self._render(p.get("text"), p.get("parse_mode"), p.get("entities"))
        markup = self._check_markup(p.get("reply_markup"))
        if text == stored.text and entities == stored.entities and markup == stored.reply_markup:
            raise _bad(_NOT_MODIFIED)
        stored.text, stored.entities, stored.parse_mode = text, entities, mode
        stored.html = str(p.get("text"))
        stored.reply_markup = markup  # no reply_markup: Telegram removes the inline keyboard
        return self._edited(stored)

    async def _m_edit_message_caption(self, p: dict[str, Any]) -> Any:
        stored = self._bot_message(p, action="edit")
        if stored.document is None:
            raise _bad("there is no caption in the message to edit")
        caption = p.get("caption")
        text, entities, mode = self._render(
            caption, p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        markup = self._check_markup(p.get("reply_markup"))
        if text == stored.text and entities == stored.entities and markup == stored.reply_markup:
            raise _bad(_NOT_MODIFIED)
        stored.text, stored.entities, stored.parse_mode = text, entities, mode
        stored.html = None if caption is None else str(caption)
        stored.reply_markup = markup
        return self._edited(stored)

    async def _m_edit_message_reply_markup(self, p: dict[str, Any]) -> Any:
        stored = self._bot_message(p, action="edit")
        markup = self._check_markup(p.get("reply_markup"))
        if markup == stored.reply_markup or (not markup and not stored.reply_markup):
            raise _bad(_NOT_MODIFIED)
        stored.reply_markup = markup
        return self._edited(stored)

    async def _m_delete_message(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        stored = chat.messages.get(p.get("message_id"))  # type: ignore[arg-type]
        if stored is None or stored.deleted:
            raise _bad("message to delete not found")
        stored.deleted = True
        stored.revision = self._bump()
        self._notify()
        return True

    async def _m_delete_messages(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        ids = p.get("message_ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must be a non-empty list of at most 100 identifiers")
        for message_id in ids:
            stored = chat.messages.get(message_id)
            if stored is not None and not stored.deleted:
                stored.deleted = True
                stored.revision = self._bump()
        self._notify()
        return True

    async def _m_answer_callback_query(self, p: dict[str, Any]) -> Any:
        answer = self._queries.get(str(p.get("callback_query_id") or ""))
        if answer is None or answer.answered:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = p.get("text")
        if text is not None and len(str(text)) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        answer.answered = True
        answer.text = None if text is None else str(text)
        answer.show_alert = bool(p.get("show_alert"))
        answer.url = p.get("url")
        answer.cache_time = p.get("cache_time")
        self._notify()
        return True

    async def _m_send_chat_action(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        action = p.get("action")
        if action not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        chat.user.chat_actions.append(str(action))
        return True

    async def _m_get_chat(self, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        return {
            **chat.user.chat_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True,
                "limited_gifts": True,
                "unique_gifts": True,
                "premium_subscription": True,
                "gifts_from_channels": True,
            },
        }


_Handler = Callable[[FakeTelegram, dict[str, Any]], Awaitable[Any]]
_METHODS: dict[str, tuple[str, _Handler]] = {
    name.lower(): (name, handler)
    for name, handler in {
        "getMe": FakeTelegram._m_get_me,
        "logOut": FakeTelegram._m_log_out,
        "close": FakeTelegram._m_log_out,
        "getUpdates": FakeTelegram._m_get_updates,
        "setWebhook": FakeTelegram._m_set_webhook,
        "deleteWebhook": FakeTelegram._m_delete_webhook,
        "getWebhookInfo": FakeTelegram._m_get_webhook_info,
        "setMyCommands": FakeTelegram._m_set_my_commands,
        "getMyCommands": FakeTelegram._m_get_my_commands,
        "deleteMyCommands": FakeTelegram._m_delete_my_commands,
        "sendMessage": FakeTelegram._m_send_message,
        "sendDocument": FakeTelegram._m_send_document,
        "getFile": FakeTelegram._m_get_file,
        "editMessageText": FakeTelegram._m_edit_message_text,
        "editMessageCaption": FakeTelegram._m_edit_message_caption,
        "editMessageReplyMarkup": FakeTelegram._m_edit_message_reply_markup,
        "deleteMessage": FakeTelegram._m_delete_message,
        "deleteMessages": FakeTelegram._m_delete_messages,
        "answerCallbackQuery": FakeTelegram._m_answer_callback_query,
        "sendChatAction": FakeTelegram._m_send_chat_action,
        "getChat": FakeTelegram._m_get_chat,
    }.items()
}


def make_bot(fake: FakeTelegram, **kwargs: Any) -> Bot:
    """A real aiogram ``Bot`` talking HTTP to ``fake`` (parse_mode HTML unless ``default`` given)."""
    kwargs.setdefault("default", DefaultBotProperties(parse_mode="HTML"))
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    return Bot(fake.token, session=session, **kwargs)


@contextlib.asynccontextmanager
async def run_polling(
    dp: Any,
    bot: Any,
    fake: FakeTelegram | None = None,
    *,
    polling_timeout: int = 10,
    ready_timeout: float = 5.0,
    **kwargs: Any,
) -> AsyncIterator[asyncio.Task[Any]]:
    """Run ``dp.start_polling(bot, handle_signals=False)`` as a task, updates handled as tasks
    (concurrently) as in production unless ``handle_as_tasks=False`` is passed.

    With ``fake``, waits until the bot is idle in getUpdates before yielding, tracks when each
    update is handled (send/press wait for it) and lets send/press fail fast if polling dies.
    On exit: the updates in flight finish, ``dp.stop_polling()`` and the task awaited (its
    exception, if any, propagates)."""
    handle_as_tasks = kwargs.pop("handle_as_tasks", True)
    if fake is not None and handle_as_tasks:
        fake.track_processing(dp)
    task = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_as_tasks=handle_as_tasks,
            handle_signals=False,
            polling_timeout=polling_timeout,
            **kwargs,
        )
    )
    if fake is not None:
        fake.attach_poller(task)
    try:
        if fake is not None:
            try:
                await fake.wait_polling(ready_timeout)
            except AssertionError:
                if task.done():
                    await task  # surface the real error
                raise
        yield task
    finally:
        try:
            if fake is not None and not task.done():
                with contextlib.suppress(AssertionError):
                    await fake.wait_all_processed()
            if not task.done():
                await dp.stop_polling()
            await task
        finally:
            if fake is not None:
                fake.detach_poller(task)
