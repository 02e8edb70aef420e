"""Tests of the fake Telegram Bot API with a real aiogram Bot and Dispatcher over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router, html
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.backoff import BackoffConfig

from tests.harness.fake_telegram import FakeTelegram, make_bot, parse_html, run_polling

USER_ID = 1001

MENU = InlineKeyboardMarkup(
    inline_keyboard=[
        [
            InlineKeyboardButton(text="📥 Inbox", callback_data="inbox"),
            InlineKeyboardButton(text="Settings", callback_data="settings"),
        ],
        [InlineKeyboardButton(text="Help site", url="https://example.com/help")],
    ]
)
BACK = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="⬅ Back", callback_data="back")]]
)
EML = b"From: alice@example.com\r\nSubject: Hi\r\n\r\nHello\r\n"


def build_dispatcher(events: list[Any] | None = None) -> Dispatcher:
    """The small bot the fake is tested with."""
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        assert message.from_user is not None
        await message.answer(f"Hello, <b>{html.quote(message.from_user.first_name)}</b>!")

    @router.message(Command("menu"))
    async def menu(message: Message) -> None:
        await message.answer("Main menu", reply_markup=MENU)

    @router.message(Command("password"))
    async def password(message: Message) -> None:
        await message.delete()  # never leave a password in the chat
        await message.answer("Password received and removed from the chat.")

    @router.message(Command("export"))
    async def export(message: Message) -> None:
        await message.answer_document(
            BufferedInputFile(EML, filename="message.eml"), caption="Your <b>export</b>"
        )

    @router.message(Command("broken"))
    async def broken(message: Message) -> None:
        await message.answer("Subject: <script> & friends")  # unescaped: Telegram refuses it

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(html.quote(message.text or ""))

    @router.callback_query(F.data == "inbox")
    async def inbox(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("Inbox: <i>3 new</i>", reply_markup=BACK)
        await query.answer("Loaded")

    @router.callback_query(F.data == "back")
    async def back(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("Main menu", reply_markup=MENU)
        await query.answer()

    @router.callback_query(F.data == "settings")
    async def settings(query: CallbackQuery) -> None:
        await query.answer("Not yet", show_alert=True)

    @router.my_chat_member()
    async def member(update: ChatMemberUpdated) -> None:
        if events is not None:
            events.append(update.new_chat_member.status)

    dp = Dispatcher()
    dp.include_router(router)
    return dp


@pytest.fixture
async def bot(fake_telegram: FakeTelegram) -> Any:
    bot = make_bot(fake_telegram)
    yield bot
    await bot.session.close()


# ------------------------------------------------------------------ conversation through polling


async def test_polling_start_and_clean_stop(fake_telegram: FakeTelegram, bot: Bot) -> None:
    fake = fake_telegram
    user = fake.user(USER_ID, first_name="Ann <3")
    async with run_polling(build_dispatcher(), bot, fake) as task:
        # what aiogram calls on start: getMe, then getUpdates with resolved allowed_updates
        assert [c.method for c in fake.calls[:2]] == ["getMe", "getUpdates"]
        first_poll = fake.calls[1].params
        assert first_poll["allowed_updates"] == ["callback_query", "message", "my_chat_member"]
        assert first_poll["timeout"] == 10 and "offset" not in first_poll
        assert fake.allowed_updates == {"callback_query", "message", "my_chat_member"}

        await user.send("/start")
        assert user.last().text == "Hello, Ann <3!"
        assert user.last().html == "Hello, <b>Ann &lt;3</b>!"
        assert user.last().entities == [{"offset": 7, "length": 6, "type": "bold"}]
        assert fake.calls_of("getUpdates")[-1].params["offset"] == 2  # update 1 confirmed
    assert task.done() and task.exception() is None
    # the last long poll was abandoned by aiogram (cancelled), nothing else is left pending
    assert [(c.method, c.cancelled) for c in fake.calls if c.response is None] == [
        ("getUpdates", True)
    ]
    with pytest.raises(AssertionError, match="not processed"):
        await user.send("anyone there?", timeout=0.2)


async def test_send_echo_and_message_list(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(), bot, fake_telegram):
        mid = await user.send("a < b & c > d")
        assert user.last().text == "a < b & c > d"
        assert user.last().html == "a &lt; b &amp; c &gt; d"
        chat = user.messages()
        assert [(m.message_id, m.from_bot, m.text) for m in chat] == [
            (mid, False, "a < b & c > d"),
            (mid + 1, True, "a < b & c > d"),
        ]
        # the update the bot got carried a bot_command entity for a leading /word
        await user.send("/start@mailbridge_test_bot now")
        assert user.last().text == "Hello, Test!"


async def test_keyboard_press_edit_and_answer(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(), bot, fake_telegram):
        await user.send("/menu")
        menu = user.last()
        assert user.buttons() == ["📥 Inbox", "Settings", "Help site"]
        assert menu.button("Help site").url == "https://example.com/help"

        answer = await user.press("📥 Inbox")
        edited = user.last()
        assert edited.message_id == menu.message_id and edited.edited
        assert edited.text == "Inbox: 3 new" and edited.html == "Inbox: <i>3 new</i>"
        assert user.buttons() == ["⬅ Back"]
        assert answer.answered and answer.text == "Loaded" and not answer.show_alert
        assert user.callback_answers == [answer]

        await user.press("⬅ Back")
        assert user.last().text == "Main menu" and user.last().edit_count == 2

        settings = await user.press("Settings", message_id=menu.message_id)
        assert settings.answered and settings.show_alert and settings.text == "Not yet"

        with pytest.raises(AssertionError, match=r"'Nope'.*'📥 Inbox', 'Settings', 'Help site'"):
            await user.press("Nope")
        with pytest.raises(AssertionError, match="not a callback button"):
            await user.press("Help site")

        forged = await user.press_data("admin:drop_all", menu.message_id)
        assert not forged.answered  # no handler: aiogram leaves the query unanswered
        with pytest.raises(TelegramBadRequest, match="query is too old"):
            await bot.answer_callback_query(settings.query_id)  # answered twice


async def test_bot_deletes_user_message(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(), bot, fake_telegram):
        mid = await user.send("/password hunter2")
        assert user.is_deleted(mid)
        await user.wait_deleted(mid, timeout=0.1)
        assert [m.text for m in user.messages()] == ["Password received and removed from the chat."]
        assert [m.deleted for m in user.all_messages()] == [True, False]
        with pytest.raises(TelegramBadRequest, match="message to delete not found"):
            await bot.delete_message(user.chat_id, mid)


async def test_document_upload_and_download(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(), bot, fake_telegram):
        await user.send("/export")
    doc_message = user.last()
    assert doc_message.document is not None
    filename, data = doc_message.document
    assert (filename, data) == ("message.eml", EML)
    assert doc_message.document.mime_type == "message/rfc822"
    assert doc_message.text == "Your export" and doc_message.html == "Your <b>export</b>"
    call = fake_telegram.calls_of("sendDocument")[-1]
    assert call.params["document"].filename == "message.eml"
    downloaded = await bot.download(doc_message.document.file_id)
    assert downloaded is not None and downloaded.read() == EML


async def test_handler_error_is_logged_and_update_still_confirmed(
    fake_telegram: FakeTelegram, bot: Bot
) -> None:
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(), bot, fake_telegram):
        await user.send("/broken")
        failed = fake_telegram.calls_of("sendMessage")[-1]
        assert failed.status == 400
        assert failed.response is not None
        assert failed.response["description"] == (
            'Bad Request: can\'t parse entities: Unsupported start tag "script" at byte offset 9'
        )
        assert [m.from_bot for m in user.messages()] == [False]
        await user.send("still alive")
        assert user.last().text == "still alive"


async def test_wait_for_new_and_edited_messages(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    mark = user.mark()
    sent = await bot.send_message(user.chat_id, "📬 New mail from <b>Alice</b>")
    found = await user.wait_for(lambda m: "New mail" in m.text, since=mark)
    assert found.message_id == sent.message_id and found.text == "📬 New mail from Alice"

    # a waiter that is already waiting wakes up on an edit
    edit_waiter = asyncio.create_task(
        user.wait_for(lambda m: m.text.endswith("(read)"), since=user.mark())
    )
    edit = bot.edit_message_text(
        "📬 New mail from Alice (read)", chat_id=user.chat_id, message_id=sent.message_id
    )
    await asyncio.gather(edit, edit_waiter)
    assert edit_waiter.result().edited

    # already present messages count unless new_only
    assert (
        await user.wait_for(lambda m: "Alice" in m.text, timeout=0.1)
    ).message_id == sent.message_id
    with pytest.raises(AssertionError, match="matched within 0.1s"):
        await user.wait_for(lambda m: "Bob" in m.text, timeout=0.1)


async def test_my_chat_member_on_block(fake_telegram: FakeTelegram, bot: Bot) -> None:
    events: list[str] = []
    user = fake_telegram.user(USER_ID)
    async with run_polling(build_dispatcher(events), bot, fake_telegram):
        update_id = fake_telegram.block(user.chat_id, notify=True)
        assert update_id is not None
        await fake_telegram.wait_processed(update_id)
        assert events == ["kicked"]
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(user.chat_id, "hello?")


async def test_polling_survives_getupdates_429(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    quick = BackoffConfig(min_delay=0.05, max_delay=0.2, factor=1.3, jitter=0.1)
    async with run_polling(build_dispatcher(), bot, fake_telegram, backoff_config=quick):
        fake_telegram.fail("getUpdates", status=429, retry_after=5, times=2)
        await user.send("ping")  # aiogram's polling backs off by its own config, not retry_after
        assert user.last().text == "ping"
        # updates are handled as tasks: the polls that meet the 429s may follow the reply
        await fake_telegram.wait_polling()
    statuses = [c.status for c in fake_telegram.calls_of("getUpdates")]
    assert statuses.count(429) == 2


# ------------------------------------------------------------------ validation like Telegram


BAD_HTML = [
    ("<br>", 'Unsupported start tag "br" at byte offset 0'),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("привет <x>", 'Unsupported start tag "x" at byte offset 13'),
    ("x <b", "Unclosed start tag at byte offset 2"),
    ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
    ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ("x</b>", "Unexpected end tag at byte offset 1"),
    ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ("<a href=x/>y</a>", "Unexpected end of name token at byte offset 8"),
    ("Tom & Jerry", 'Character "&" at byte offset 4 does not start an HTML entity'),
]


async def test_bad_html_is_refused(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    for text, description in BAD_HTML:
        with pytest.raises(TelegramBadRequest) as caught:
            await bot.send_message(user.chat_id, text)
        expected = f"Bad Request: can't parse entities: {description}"
        assert caught.value.message.startswith(expected), (text, caught.value.message)
    assert user.messages() == []


async def test_html_is_parsed_into_text_and_entities(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    raw = (
        '<b>Bold <i>both</i></b> <a href="https://example.com/?a=1&amp;b=2">link</a> '
        '<pre><code class="language-python">x = 1</code></pre> <tg-spoiler>s</tg-spoiler> '
        "&lt;&gt;&amp;&quot;&#65;&#x42; 😀<u>u</u>"
    )
    sent = await bot.send_message(user.chat_id, raw)
    text = 'Bold both link x = 1 s <>&"AB 😀u'
    assert sent.text == text and user.last().text == text and user.last().html == raw
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [
        ("bold", 0, 9),
        ("italic", 5, 4),
        ("text_link", 10, 4),
        ("pre", 15, 5),
        ("spoiler", 21, 1),
        ("underline", 32, 1),  # the emoji counts 2 UTF-16 units
    ]
    assert sent.entities is not None and sent.entities[2].url == "https://example.com/?a=1&b=2"
    assert sent.entities[3].language == "python"
    # Telegram itself keeps a bare "&"; the fake refuses it unless told otherwise
    fake_telegram.strict_ampersand = False
    assert (await bot.send_message(user.chat_id, "Tom & Jerry &nbsp;")).text == "Tom & Jerry &nbsp;"
    assert (
        parse_html("<blockquote expandable>q</blockquote>")[1][0]["type"] == "expandable_blockquote"
    )


async def test_text_length_limits(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    assert (await bot.send_message(user.chat_id, "x" * 4096)).text == "x" * 4096
    # the limit applies after entity parsing: markup does not count
    await bot.send_message(user.chat_id, "<b>" + "&amp;" * 4096 + "</b>")
    assert user.last().text == "&" * 4096
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(user.chat_id, "x" * 4097)
    for empty in ("", "  \n ", "<b></b>"):
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(user.chat_id, empty)
    with pytest.raises(TelegramBadRequest, match="message caption is too long"):
        await bot.send_document(user.chat_id, BufferedInputFile(b"x", "a.txt"), caption="c" * 1025)


async def test_callback_data_limit(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text="go", callback_data=data)]]
        )

    await bot.send_message(user.chat_id, "ok", reply_markup=keyboard("d" * 64))
    assert user.last().buttons[0][0].callback_data == "d" * 64
    for data in ("d" * 65, "я" * 33):  # 33 Cyrillic letters are 66 bytes
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(user.chat_id, "too long", reply_markup=keyboard(data))
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.edit_message_reply_markup(
                chat_id=user.chat_id, message_id=user.last().message_id, reply_markup=keyboard(data)
            )
    text_only = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="plain")]])
    with pytest.raises(TelegramBadRequest, match="Text buttons are unallowed"):
        await bot.send_message(user.chat_id, "x", reply_markup=text_only)


async def test_edit_and_delete_rules(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    sent = await bot.send_message(user.chat_id, "<b>Menu</b>", reply_markup=MENU)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<strong>Menu</strong>",
            chat_id=user.chat_id,
            message_id=sent.message_id,
            reply_markup=MENU,
        )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=user.chat_id, message_id=sent.message_id, reply_markup=MENU
        )
    # like Telegram, editing the text without reply_markup removes the inline keyboard
    edited = await bot.edit_message_text(
        "<b>Menu</b>", chat_id=user.chat_id, message_id=sent.message_id
    )
    assert isinstance(edited, Message) and edited.reply_markup is None and edited.edit_date
    assert user.last().buttons == []
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=user.chat_id, message_id=999)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(user.chat_id, 999)
    assert await bot.delete_message(user.chat_id, sent.message_id)
    assert user.is_deleted(sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=user.chat_id, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(424242, "nobody here")


# ------------------------------------------------------------------ fault injection


async def test_429_injection(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    fake_telegram.fail("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(user.chat_id, "hi")
    assert caught.value.retry_after == 7
    # aiogram rewrites the message, keeping Telegram's description at the end
    assert caught.value.message.endswith("Original description: Too Many Requests: retry after 7")
    await bot.send_message(user.chat_id, "hi")  # only the next call failed
    assert [c.status for c in fake_telegram.calls_of("sendMessage")] == [429, 200]


async def test_403_block(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    other = fake_telegram.user(USER_ID + 1)
    fake_telegram.block(user.chat_id)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(user.chat_id, "hi")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(user.chat_id, "typing")
    await bot.send_message(other.chat_id, "hi")
    fake_telegram.unblock(user.chat_id)
    await bot.send_message(user.chat_id, "welcome back")
    assert [m.text for m in user.messages()] == ["welcome back"]


async def test_5xx_and_filters(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    other = fake_telegram.user(USER_ID + 1)
    fake_telegram.fail("sendMessage", status=502)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(user.chat_id, "hi")
    fake_telegram.fail(None, status=500, times=2)  # any method but getUpdates
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    with pytest.raises(TelegramServerError):
        await bot.send_chat_action(user.chat_id, "typing")
    await bot.send_chat_action(user.chat_id, "typing")
    assert user.chat_actions == ["typing"]
    fake_telegram.fail(
        None, status=403, description="Forbidden: user is deactivated", chat_id=other.chat_id
    )
    await bot.send_message(user.chat_id, "fine")
    with pytest.raises(TelegramForbiddenError, match="user is deactivated"):
        await bot.send_message(other.chat_id, "gone")


async def test_rate_limit(fake_telegram: FakeTelegram, bot: Bot) -> None:
    users = [fake_telegram.user(USER_ID + i) for i in range(3)]
    fake_telegram.rate_limit = (2, 1)  # 2 msg/s overall, 1 msg/s per chat
    await bot.send_message(users[0].chat_id, "one")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(users[0].chat_id, "two")  # same chat within the second
    assert caught.value.retry_after == 1
    await bot.send_message(users[1].chat_id, "other chat")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(users[2].chat_id, "third in the second overall")
    fake_telegram.rate_limit = None
    await bot.send_message(users[0].chat_id, "unlimited again")


async def test_delay(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    fake_telegram.set_delay("sendMessage", 0.2)
    started = time.monotonic()
    await bot.send_message(user.chat_id, "slow")
    assert time.monotonic() - started >= 0.2
    # 0 removes a delay: a long one, so that one left in force could not pass for load
    fake_telegram.set_delay("sendMessage", 30)
    fake_telegram.set_delay("sendMessage", 0)
    started = time.monotonic()
    await bot.send_message(user.chat_id, "fast")
    assert time.monotonic() - started < 5  # ~0.005 s; 30 s with the delay


async def test_hold_delivers_at_once_and_answers_late(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user, other = fake_telegram.user(USER_ID), fake_telegram.user(USER_ID + 1)
    fake_telegram.hold("sendMessage", 30, chat_id=user.chat_id)
    sending = asyncio.create_task(bot.send_message(user.chat_id, "on its way"))
    # in the chat long before the answer (30 s) comes back
    await user.wait_for(lambda m: m.text == "on its way", timeout=5)
    assert not sending.done()
    started = time.monotonic()
    await bot.send_message(other.chat_id, "other chats are not held")
    assert time.monotonic() - started < 5
    sending.cancel()  # the client hangs up: the message stays delivered
    with pytest.raises(asyncio.CancelledError):
        await sending
    await asyncio.sleep(0.1)
    assert [m.text for m in user.messages()] == ["on its way"]
    fake_telegram.hold("sendMessage", 0, chat_id=user.chat_id)
    started = time.monotonic()
    await bot.send_message(user.chat_id, "answered at once again")
    assert time.monotonic() - started < 5  # ~0.005 s; 30 s if the hold were left


async def test_upload_limit(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID)
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_document(
            user.chat_id, BufferedInputFile(b"\0" * (50 * 1024 * 1024 + 1), "big.bin")
        )
    with pytest.raises(TelegramBadRequest, match="file must be non-empty"):
        await bot.send_document(user.chat_id, BufferedInputFile(b"", "empty.txt"))
    assert user.messages() == []


# ------------------------------------------------------------------ other methods, raw HTTP


async def test_commands_chat_and_webhook(fake_telegram: FakeTelegram, bot: Bot) -> None:
    user = fake_telegram.user(USER_ID, first_name="Ann", username="ann")
    commands = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="menu", description="Menu"),
    ]
    assert await bot.set_my_commands(commands)
    assert await bot.set_my_commands(commands[:1], language_code="ru")
    scope = BotCommandScopeChat(chat_id=user.chat_id)
    assert await bot.get_my_commands(scope=scope) == []
    assert [c.command for c in await bot.get_my_commands()] == ["start", "menu"]
    assert [c.command for c in await bot.get_my_commands(language_code="ru")] == ["start"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="bad command", description="x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []

    chat = await bot.get_chat(user.chat_id)
    assert (chat.id, chat.type, chat.first_name, chat.username) == (
        user.chat_id,
        "private",
        "Ann",
        "ann",
    )
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "mailbridge_test_bot", True)

    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""


async def test_get_updates_semantics_over_raw_http(fake_telegram: FakeTelegram) -> None:
    fake = fake_telegram
    user = fake.user(USER_ID)
    api = f"{fake.base_url}/bot{fake.token}"
    async with aiohttp.ClientSession() as http:

        async def call(method: str, **params: Any) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{api}/{method}", json=params) as resp:
                return resp.status, await resp.json()

        async with http.get(f"{fake.base_url}/bot123:wrong/getMe") as resp:
            assert resp.status == 401 and (await resp.json())["description"] == "Unauthorized"
        assert await call("noSuchMethod") == (
            404,
            {"ok": False, "error_code": 404, "description": "Not Found"},
        )
        assert (await call("GETME"))[1]["result"]["username"] == "mailbridge_test_bot"

        for n in range(3):
            await user.send(f"m{n}", wait=False)
        status, body = await call("getUpdates")
        assert status == 200 and [u["update_id"] for u in body["result"]] == [1, 2, 3]
        assert body["result"][0]["message"]["text"] == "m0"
        _, body = await call("getUpdates", offset=2, limit=1)  # confirms update 1
        assert [u["update_id"] for u in body["result"]] == [2]
        await fake.wait_processed(1, timeout=0)
        _, body = await call("getUpdates", offset=-1)  # keeps only the last one
        assert [u["update_id"] for u in body["result"]] == [3]
        with pytest.raises(AssertionError, match="dropped"):
            await fake.wait_processed(2, timeout=0)
        _, body = await call("getUpdates", offset=4, timeout=0)
        assert body["result"] == []

        # long polling returns as soon as an update arrives
        poll = asyncio.create_task(call("getUpdates", offset=4, timeout=30))
        await fake.wait_polling()
        started = time.monotonic()
        await user.send("wake up", wait=False)
        _, body = await poll
        assert [u["message"]["text"] for u in body["result"]] == ["wake up"]
        assert time.monotonic() - started < 5  # ~0.005 s; the poll's timeout is 30 s

        # a second consumer terminates the first with 409
        first = asyncio.create_task(call("getUpdates", offset=6, timeout=30))
        await fake.wait_polling()
        second = asyncio.create_task(call("getUpdates", offset=6, timeout=0))
        status, body = await first
        assert status == 409 and "terminated by other getUpdates request" in body["description"]
        assert (await second)[0] == 200

        # allowed_updates filters what can be queued
        await call("getUpdates", offset=6, allowed_updates=["message"])
        with pytest.raises(AssertionError, match="would never reach the bot"):
            await user.press_data("x", user.messages()[0].message_id, wait=False)


async def test_fixture_is_cheap() -> None:
    started = time.perf_counter()
    fake = FakeTelegram()
    await fake.start()
    elapsed = time.perf_counter() - started
    await fake.stop()
    # ~0.001 s: nothing is waited for at start (a sleep, a port retried, a name looked up
    # would take seconds)
    assert elapsed < 1
