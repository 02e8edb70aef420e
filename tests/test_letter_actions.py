"""Letter actions end to end against the real Dovecot: mark read/unread, flag, Archive,
Delete (to Trash), Spam (to Junk) and Undo, pressed on alerts and opened letters in the fake
Bot API; where the letter went is checked in the Maildir on disk and flags in its file name
(Maildir ":2,<flags>"). Folders come from SPECIAL-USE (renamed so no name list could find
them) or, on a mailbox without SPECIAL-USE flags, from their names (Russian ones included)."""

from __future__ import annotations

import asyncio
import pathlib
import secrets
import uuid
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update

from bot.callbacks import LetterActCB
from mail.folders import choose_folders, discover_folders
from mail.imap import close_imap, open_imap
from mail.netguard import HostGuard
from mail.outbox import FolderInfo, encode_mutf7, quote_mailbox
from mail.tls import make_ssl_context
from mail.types import Credentials, Security, ServerSettings
from storage.models import Letter, LetterMark, Mailbox, MailboxFolders
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.plugin_app import BotHarness
from tests.harness.tcp_proxy import TcpProxy
from tests.harness.virtual_clock import VirtualClock
from tests.test_connect_wizard import connect, stored_mailbox
from tests.test_live_mailbox import settle, wait_watching

# this user's Trash and Junk keep their SPECIAL-USE flags under names no list has
RENAMED = {
    "namespace/inbox/mailbox/Trash/name": "Мусор",
    "namespace/inbox/mailbox/Junk/name": "Nuisance",
}
# this user's folders carry no SPECIAL-USE flags at all (the special ones are never created)
PLAIN = {
    "namespace/inbox/mailbox/Trash/name": "unused-trash-role",
    "namespace/inbox/mailbox/Junk/name": "unused-junk-role",
    "namespace/inbox/mailbox/Stored/name": "unused-archive-role",
    "namespace/inbox/mailbox/Trash/auto": "no",
    "namespace/inbox/mailbox/Junk/auto": "no",
}
# Dovecot's capabilities without MOVE: moves go by COPY + STORE \Deleted + UID EXPUNGE
NO_MOVE_CAPS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY SPECIAL-USE"
)


# --------------------------------------------------------------------------- helpers
def mail(n: int, subject: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Sender {n} <sender{n}@example.net>"
    msg["To"] = "someone@example.org"
    msg["Subject"] = subject or f"Action letter {n}"
    msg["Message-ID"] = f"<act-{n}-{uuid.uuid4().hex[:10]}@example.net>"
    msg.set_content(f"Body of action letter {n}.")
    return msg


def new_mail_user(stack: MailStack, userdb: dict[str, str] | None = None, caps: str | None = None) -> MailUser:
    user = MailUser(address=f"a{uuid.uuid4().hex[:8]}@example.org", password=secrets.token_urlsafe(12))
    stack.add_user(user.address, user.password, userdb=userdb, imap_capability=caps)
    return user


async def imap(stack: MailStack, user: MailUser) -> Any:
    return await open_imap(
        ServerSettings(stack.host, stack.imap_ssl_port, Security.SSL),
        Credentials(user.address, password=user.password),
        ssl_context=make_ssl_context(str(stack.ca_file)),
        guard=HostGuard(allow_private=True),
        timeout=10,
    )


async def create_folders(stack: MailStack, user: MailUser, *names: str) -> None:
    client = await imap(stack, user)
    try:
        for name in names:
            response = await client.create(quote_mailbox(name))
            assert response.result == "OK", response
    finally:
        await close_imap(client)


def on_disk(stack: MailStack, user: MailUser, folder: str = "INBOX") -> list[str]:
    """File names of the folder's letters in the Maildir (flags after ':2,')."""
    root = pathlib.Path(stack.mail_dir) / user.address.lower() / "Maildir"
    where = root if folder == "INBOX" else root / ("." + encode_mutf7(folder))
    return sorted(p.name for sub in ("cur", "new") if (where / sub).is_dir() for p in (where / sub).iterdir())


def disk_flags(name: str) -> str:
    return name.split(":2,", 1)[1] if ":2," in name else ""


async def eventually(check: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


async def start_user(
    h: BotHarness, mail_user: MailUser, user_id: int, *, russian: bool = False
) -> tuple[Any, VirtualClock]:
    user = h.user(user_id)
    await connect(h, user, service="Gmail", email=mail_user.address, password=mail_user.password)
    box = await stored_mailbox(h, user.id)
    assert box is not None
    await wait_watching(h, box.id)
    if russian:
        await user.send("/settings")
        await user.press("🌐 Language")
        await user.press("Русский")
    clock = VirtualClock()
    h.app.dispatcher["letter_actions"].set_clock(clock)
    return user, clock


async def alert_for(h: BotHarness, user: Any, mail_user: MailUser, n: int) -> Any:
    await h.stack.deliver(mail_user.address, mail(n))
    return await user.wait_for(lambda m: m.text.startswith("📩") and f"Action letter {n}" in m.text, timeout=8)


async def press(user: Any, label: str, message_id: int) -> Any:
    answer = await user.press(label, message_id=message_id)
    assert answer.answered
    return answer


async def letter_id_of(h: BotHarness, subject: str) -> int:
    async with h.session() as s:
        return int((await s.execute(select(Letter.id).where(Letter.subject == subject))).scalar_one())


# --------------------------------------------------------------------------- folder discovery
async def test_special_use_wins_over_names(mail_stack: MailStack) -> None:
    user = new_mail_user(mail_stack, RENAMED)
    await create_folders(mail_stack, user, "Stored", "Trash", "Spam", "Archive")  # decoys by name
    client = await imap(mail_stack, user)
    try:
        found = await discover_folders(client)
    finally:
        await close_imap(client)
    assert (found.archive, found.trash, found.junk) == ("Stored", "Мусор", "Nuisance")
    assert found.move and found.uidplus and not found.gmail


async def test_names_when_the_server_flags_nothing(mail_stack: MailStack) -> None:
    user = new_mail_user(mail_stack, PLAIN)
    await create_folders(mail_stack, user, "Архив", "Корзина", "Спам")
    client = await imap(mail_stack, user)
    try:
        found = await discover_folders(client)
    finally:
        await close_imap(client)
    assert (found.archive, found.trash, found.junk) == ("Архив", "Корзина", "Спам")


async def test_no_folders_no_roles(mail_stack: MailStack) -> None:
    user = new_mail_user(mail_stack, PLAIN)
    client = await imap(mail_stack, user)
    try:
        found = await discover_folders(client)
    finally:
        await close_imap(client)
    assert (found.archive, found.trash, found.junk) == (None, None, None)


def test_provider_listings() -> None:
    gmail = [
        FolderInfo("INBOX"), FolderInfo("[Gmail]", frozenset({"\\noselect"}), "/"),
        FolderInfo("[Gmail]/All Mail", frozenset({"\\all"}), "/"),
        FolderInfo("[Gmail]/Bin", frozenset({"\\trash"}), "/"),
        FolderInfo("[Gmail]/Spam", frozenset({"\\junk"}), "/"),
    ]
    found = choose_folders(gmail, gmail=True)
    assert (found.archive, found.trash, found.junk) == ("[Gmail]/All Mail", "[Gmail]/Bin", "[Gmail]/Spam")
    # the same listing without X-GM-EXT-1: \All is a virtual folder, never an archive
    assert choose_folders(gmail).archive is None
    # old Gmail without flags: its names
    bare = [FolderInfo(f.name, frozenset(), "/") for f in gmail]
    found = choose_folders(bare, gmail=True)
    assert (found.archive, found.trash, found.junk) == ("[Gmail]/All Mail", "[Gmail]/Bin", "[Gmail]/Spam")
    outlook = [FolderInfo(n, frozenset(), "/") for n in ("INBOX", "Deleted Items", "Junk Email", "Archive")]
    found = choose_folders(outlook)
    assert (found.archive, found.trash, found.junk) == ("Archive", "Deleted Items", "Junk Email")
    courier = [FolderInfo(n, frozenset(), ".") for n in ("INBOX", "INBOX.Trash", "INBOX.Spam")]
    found = choose_folders(courier)
    assert (found.archive, found.trash, found.junk) == (None, "INBOX.Trash", "INBOX.Spam")
    yahoo = [FolderInfo(n, frozenset(), "/") for n in ("Inbox", "Trash", "Bulk Mail")]
    assert choose_folders(yahoo).junk == "Bulk Mail"
    # XLIST's \Spam; a \Noselect folder is never a target
    odd = [FolderInfo("Junk", frozenset({"\\noselect"}), "/"), FolderInfo("Хлам", frozenset({"\\spam"}), "/")]
    assert choose_folders(odd).junk == "Хлам"


# --------------------------------------------------------------------------- flags
async def test_mark_read_unread_and_flag(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    await create_folders(bot_app.stack, mu, "Stored")
    user, _clock = await start_user(bot_app, mu, 7101)
    async with bot_app.session() as s:  # found in the import's session, before any alert
        [row] = (await s.execute(select(MailboxFolders))).scalars().all()
        assert (row.archive, row.trash, row.junk, row.gmail) == ("Stored", "Мусор", "Nuisance", False)
    alert = await alert_for(bot_app, user, mu, 1)
    labels = ours(user.message(alert.message_id))
    assert labels == ["📖 Open", "✅ Mark read", "⭐ Flag", "📦 Archive", "🗑 Delete", "🚫 Spam"]
    [name] = on_disk(bot_app.stack, mu)
    assert "S" not in disk_flags(name)

    answer = await press(user, "✅ Mark read", alert.message_id)
    assert answer.text == "Marked as read."
    await eventually(lambda: assert_flags(bot_app.stack, mu, "S"))
    assert "✉️ Mark unread" in ours(user.message(alert.message_id))

    answer = await press(user, "⭐ Flag", alert.message_id)
    assert answer.text == "Flagged."
    assert_flags(bot_app.stack, mu, "FS")
    assert ours(user.message(alert.message_id))[:3] == ["📖 Open", "✉️ Mark unread", "⭐ Unflag"]

    await press(user, "✉️ Mark unread", alert.message_id)
    await press(user, "⭐ Unflag", alert.message_id)
    assert_flags(bot_app.stack, mu, "")
    assert ours(user.message(alert.message_id))[:3] == ["📖 Open", "✅ Mark read", "⭐ Flag"]


async def test_folders_of_a_mailbox_connected_before_are_found_after_its_first_alert(bot_app: BotHarness) -> None:
    """A mailbox connected before folders were looked for: its first alert goes at once with
    the flag buttons (no login to the mail server on an alert's way), the folders are found
    right after, and the next alert offers the moves too."""
    mu = new_mail_user(bot_app.stack, RENAMED)
    await create_folders(bot_app.stack, mu, "Stored")
    user, _clock = await start_user(bot_app, mu, 7109)
    async with bot_app.session() as s:
        await s.execute(delete(MailboxFolders))
        await s.commit()
    first = await alert_for(bot_app, user, mu, 1)
    assert ours(user.message(first.message_id)) == ["📖 Open", "✅ Mark read", "⭐ Flag"]

    for _ in range(100):
        async with bot_app.session() as s:
            if (await s.execute(select(func.count()).select_from(MailboxFolders))).scalar_one() == 1:
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the folders were not found after the first alert")
    second = await alert_for(bot_app, user, mu, 2)
    assert ours(user.message(second.message_id)) == ["📖 Open", "✅ Mark read", "⭐ Flag", "📦 Archive", "🗑 Delete", "🚫 Spam"]


def assert_flags(stack: MailStack, mu: MailUser, flags: str) -> None:
    [name] = on_disk(stack, mu)
    assert disk_flags(name) == flags, name


# --------------------------------------------------------------------------- moves and Undo
async def test_delete_goes_to_trash_and_undo_brings_it_back(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7102)
    alert = await alert_for(bot_app, user, mu, 2)
    assert "📦 Archive" not in ours(user.message(alert.message_id))  # no archive folder yet
    answer = await press(user, "🗑 Delete", alert.message_id)
    assert answer.text == "Moved to “Мусор”. Undo within 30 seconds."
    assert on_disk(bot_app.stack, mu) == []
    assert len(on_disk(bot_app.stack, mu, "Мусор")) == 1
    assert ours(user.message(alert.message_id)) == ["📖 Open", "🗑 In Trash", "↩️ Undo"]

    answer = await press(user, "↩️ Undo", alert.message_id)
    assert answer.text == "Back in Inbox."
    assert len(on_disk(bot_app.stack, mu)) == 1
    assert on_disk(bot_app.stack, mu, "Мусор") == []
    assert ours(user.message(alert.message_id)) == ["📖 Open", "✅ Mark read", "⭐ Flag", "🗑 Delete", "🚫 Spam"]
    await settle()  # the letter is back under a new UID: the watcher must not alert it again
    assert len([m for m in user.messages() if m.text.startswith("📩")]) == 1
    async with bot_app.session() as s:
        assert (await s.execute(select(func.count()).select_from(Letter).where(Letter.subject == "Action letter 2"))).scalar_one() == 1
    # the row follows the letter: acting on it again works on its new UID
    await press(user, "✅ Mark read", alert.message_id)
    assert_flags(bot_app.stack, mu, "S")
    await user.press("📖 Open", message_id=alert.message_id)
    opened = await user.wait_for_text("Body of action letter 2")
    assert "✉️ Mark unread" in ours(opened) and "🚫 Spam" in ours(opened)


async def test_archive_undo_expires_with_the_clock(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    await create_folders(bot_app.stack, mu, "Stored")
    user, clock = await start_user(bot_app, mu, 7103)
    alert = await alert_for(bot_app, user, mu, 3)
    undo_data = LetterActCB(letter_id=await letter_id_of(bot_app, "Action letter 3"), action="undo").pack()
    answer = await press(user, "📦 Archive", alert.message_id)
    assert answer.text == "Archived to “Stored”. Undo within 30 seconds."
    assert len(on_disk(bot_app.stack, mu, "Stored")) == 1 and on_disk(bot_app.stack, mu) == []
    assert ours(user.message(alert.message_id)) == ["📖 Open", "📦 Archived", "↩️ Undo"]

    await clock.advance(29)
    await asyncio.sleep(0.3)
    assert "↩️ Undo" in ours(user.message(alert.message_id))  # not yet
    await clock.advance(2)
    await eventually(lambda: _labels_are(user, alert.message_id, ["📖 Open", "📦 Archived"]))

    answer = await user.press_data(undo_data, alert.message_id)  # an Undo pressed too late
    assert answer.text == "Too late to undo: the letter stays in “Stored”."
    assert len(on_disk(bot_app.stack, mu, "Stored")) == 1 and on_disk(bot_app.stack, mu) == []
    answer = await press(user, "📦 Archived", alert.message_id)
    assert answer.text == "This letter was archived to “Stored”."
    await user.press("📖 Open", message_id=alert.message_id)  # read from the archive
    await user.wait_for_text("Body of action letter 3")



def ours(message: Any) -> list[str]:
    """The labels of Open and the letter's action buttons (the rows of other features, Reply and
    Forward, Mute, a code's copy button, are theirs to test)."""
    return [b.text for row in message.buttons for b in row if (b.callback_data or "").split(":")[0] in ("e", "la")]

def _labels_are(user: Any, message_id: int, labels: list[str]) -> None:
    assert ours(user.message(message_id)) == labels


async def test_plain_mailbox_spam_in_russian(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, PLAIN)
    await create_folders(bot_app.stack, mu, "Архив", "Корзина", "Спам")
    user, _clock = await start_user(bot_app, mu, 7104, russian=True)
    alert = await alert_for(bot_app, user, mu, 4)
    assert ours(user.message(alert.message_id)) == [
        "📖 Открыть", "✅ Прочитано", "⭐ Отметить", "📦 В архив", "🗑 Удалить", "🚫 Спам",
    ]
    answer = await press(user, "🚫 Спам", alert.message_id)
    assert answer.text == "Помечено как спам и перенесено в «Спам». Отменить можно в течение 30 секунд."
    assert len(on_disk(bot_app.stack, mu, "Спам")) == 1 and on_disk(bot_app.stack, mu) == []
    assert ours(user.message(alert.message_id)) == ["📖 Открыть", "🚫 В спаме", "↩️ Отменить"]
    answer = await press(user, "↩️ Отменить", alert.message_id)
    assert answer.text == "Письмо снова во «Входящих»."
    assert len(on_disk(bot_app.stack, mu)) == 1 and on_disk(bot_app.stack, mu, "Спам") == []
    answer = await press(user, "📦 В архив", alert.message_id)
    assert len(on_disk(bot_app.stack, mu, "Архив")) == 1


async def test_buttons_only_for_folders_that_exist(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, PLAIN)
    user, _clock = await start_user(bot_app, mu, 7105)
    alert = await alert_for(bot_app, user, mu, 5)
    assert ours(user.message(alert.message_id)) == ["📖 Open", "✅ Mark read", "⭐ Flag"]
    letter_id = await letter_id_of(bot_app, "Action letter 5")
    answer = await user.press_data(LetterActCB(letter_id=letter_id, action="trash").pack(), alert.message_id)
    assert answer.text == "Your mailbox has no folder for that."
    assert len(on_disk(bot_app.stack, mu)) == 1


async def test_server_without_move_expunges_only_that_letter(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, None, caps=NO_MOVE_CAPS)
    user, _clock = await start_user(bot_app, mu, 7106)
    other = mail(60, subject="Marked deleted by another client")
    await bot_app.stack.deliver(mu.address, other)
    client = await imap(bot_app.stack, mu)
    try:  # another client marked it \Deleted and did not expunge yet
        assert "MOVE" not in client.protocol.capabilities
        await client.select("INBOX")
        assert (await client.uid("store", "1:*", "+FLAGS.SILENT", "(\\Deleted)")).result == "OK"
    finally:
        await close_imap(client)
    alert = await alert_for(bot_app, user, mu, 6)
    await press(user, "🗑 Delete", alert.message_id)
    assert len(on_disk(bot_app.stack, mu, "Trash")) == 1
    assert len(on_disk(bot_app.stack, mu)) == 1  # the other letter is still there, still \Deleted
    client = await imap(bot_app.stack, mu)
    try:
        await client.select("INBOX")
        response = await client.uid("fetch", "1:*", "(UID FLAGS)")
        flags_text = b" ".join(x for x in response.lines if isinstance(x, bytes))
    finally:
        await close_imap(client)
    assert b"\\Deleted" in flags_text and flags_text.count(b"FETCH") == 1, flags_text
    await press(user, "↩️ Undo", alert.message_id)
    assert len(on_disk(bot_app.stack, mu)) == 2 and on_disk(bot_app.stack, mu, "Trash") == []


async def test_undo_finds_the_letter_by_message_id(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7107)
    alert = await alert_for(bot_app, user, mu, 7)
    await press(user, "🗑 Delete", alert.message_id)
    letter_id = await letter_id_of(bot_app, "Action letter 7")
    async with bot_app.session() as s:  # as after a server that answers MOVE without COPYUID
        await s.execute(update(LetterMark).where(LetterMark.letter_id == letter_id).values(folder_uid=None))
        await s.commit()
    answer = await press(user, "↩️ Undo", alert.message_id)
    assert answer.text == "Back in Inbox."
    assert len(on_disk(bot_app.stack, mu)) == 1 and on_disk(bot_app.stack, mu, "Мусор") == []


async def test_letter_gone_elsewhere_says_so(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7108)
    alert = await alert_for(bot_app, user, mu, 8)
    client = await imap(bot_app.stack, mu)
    try:  # another mail client moves it away
        await client.select("INBOX")
        assert (await client.uid("move", "1:*", quote_mailbox("Nuisance"))).result == "OK"
    finally:
        await close_imap(client)
    answer = await press(user, "✅ Mark read", alert.message_id)
    assert answer.text == "This letter is no longer in Inbox: it was deleted or moved elsewhere."
    assert ours(user.message(alert.message_id)) == ["📖 Open", "⚠️ Not in Inbox any more"]
    answer = await press(user, "⚠️ Not in Inbox any more", alert.message_id)
    assert answer.text == "This letter is no longer in Inbox: it was deleted or moved elsewhere."


@pytest.mark.parametrize("n, action", list(enumerate(["trash", "read", "undo", "archive"])))
async def test_another_users_letter_is_refused(bot_app: BotHarness, n: int, action: str) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    await create_folders(bot_app.stack, mu, "Stored")
    owner, _clock = await start_user(bot_app, mu, 7110 + n)
    await alert_for(bot_app, owner, mu, 9)
    letter_id = await letter_id_of(bot_app, "Action letter 9")
    stranger = bot_app.user(7120 + n)
    await stranger.send("/start")
    own_message = stranger.last().message_id
    answer = await stranger.press_data(LetterActCB(letter_id=letter_id, action=action).pack(), own_message)
    assert answer.text == "This letter is no longer available." and answer.show_alert
    [name] = on_disk(bot_app.stack, mu)
    assert disk_flags(name) == ""
    # ugly data: an unknown action, a huge id, a non-number
    answer = await owner.press_data(f"la:{letter_id}:explode", own_message_of(owner))
    assert answer.text == "This button is no longer valid."
    answer = await owner.press_data(f"la:{2**63 - 1}:trash", own_message_of(owner))
    assert answer.text == "This letter is no longer available."
    answer = await owner.press_data("la:1<b>:trash", own_message_of(owner))
    assert answer.answered
    assert len(on_disk(bot_app.stack, mu)) == 1


def own_message_of(user: Any) -> int:
    return int(user.last().message_id)


async def test_sent_letters_get_no_actions(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    owner, _clock = await start_user(bot_app, mu, 7130)
    alert = await alert_for(bot_app, owner, mu, 10)
    letter_id = await letter_id_of(bot_app, "Action letter 10")
    async with bot_app.session() as s:  # what the business-process API keeps for a sent letter
        await s.execute(update(Letter).where(Letter.id == letter_id).values(folder="Sent"))
        await s.commit()
    answer = await owner.press_data(LetterActCB(letter_id=letter_id, action="trash").pack(), alert.message_id)
    assert answer.text == "This letter is no longer available."
    assert len(on_disk(bot_app.stack, mu)) == 1


# --------------------------------------------------------------------------- the server's changes
async def wait_remembered(h: BotHarness, letter_id: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while loop.time() < deadline:
        async with h.session() as s:
            mark = await s.get(LetterMark, letter_id)
            if mark is not None and mark.alert_message_id is not None:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the alert's message was not remembered")


async def test_changes_made_elsewhere_show_on_the_alert(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7140)
    alert = await alert_for(bot_app, user, mu, 11)
    await wait_remembered(bot_app, await letter_id_of(bot_app, "Action letter 11"))
    client = await imap(bot_app.stack, mu)
    try:  # the user reads and flags it in another mail client
        await client.select("INBOX")
        assert (await client.uid("store", "1:*", "+FLAGS", "(\\Seen \\Flagged)")).result == "OK"
        await eventually(
            lambda: _labels_are(user, alert.message_id, ["📖 Open", "✉️ Mark unread", "⭐ Unflag", "🗑 Delete", "🚫 Spam"]),
            timeout=6,
        )
        assert (await client.uid("store", "1:*", "-FLAGS", "(\\Flagged)")).result == "OK"
        await eventually(lambda: _labels_are(user, alert.message_id, ["📖 Open", "✉️ Mark unread", "⭐ Flag", "🗑 Delete", "🚫 Spam"]), timeout=6)
        # ... and then moves it away there
        assert (await client.uid("move", "1:*", quote_mailbox("Nuisance"))).result == "OK"
        await eventually(lambda: _labels_are(user, alert.message_id, ["📖 Open", "⚠️ Not in Inbox any more"]), timeout=6)
    finally:
        await close_imap(client)
    answer = await press(user, "⚠️ Not in Inbox any more", alert.message_id)
    assert answer.text == "This letter is no longer in Inbox: it was deleted or moved elsewhere."


async def test_opened_letter_and_its_alert_agree(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7150)
    alert = await alert_for(bot_app, user, mu, 12)
    await wait_remembered(bot_app, await letter_id_of(bot_app, "Action letter 12"))
    await user.press("📖 Open", message_id=alert.message_id)
    opened = await user.wait_for_text("Body of action letter 12")
    assert ours(opened) == ["✉️ Mark unread", "⭐ Flag", "🗑 Delete", "🚫 Spam"]
    assert_flags(bot_app.stack, mu, "S")  # opening reads it on the server
    # the server tells the watcher; the alert follows
    await eventually(lambda: _labels_are(user, alert.message_id, ["📖 Open", "✉️ Mark unread", "⭐ Flag", "🗑 Delete", "🚫 Spam"]), timeout=6)
    await press(user, "🗑 Delete", opened.message_id)
    assert ours(user.message(opened.message_id)) == ["🗑 In Trash", "↩️ Undo"]
    assert ours(user.message(alert.message_id)) == ["📖 Open", "🗑 In Trash", "↩️ Undo"]
    await _clock.advance(31)  # both lose Undo when its time is up
    await eventually(lambda: _labels_are(user, opened.message_id, ["🗑 In Trash"]))
    await eventually(lambda: _labels_are(user, alert.message_id, ["📖 Open", "🗑 In Trash"]))
    await press(user, "🗑 In Trash", alert.message_id)
    assert len(on_disk(bot_app.stack, mu, "Мусор")) == 1
    # a new letter, to see Undo of the alert again
    alert = await alert_for(bot_app, user, mu, 19)
    await wait_remembered(bot_app, await letter_id_of(bot_app, "Action letter 19"))
    await user.press("📖 Open", message_id=alert.message_id)
    opened = await user.wait_for_text("Body of action letter 19")
    await press(user, "🗑 Delete", opened.message_id)
    await press(user, "↩️ Undo", alert.message_id)
    assert len(on_disk(bot_app.stack, mu)) == 1
    # the opened letter's own buttons are redrawn when pressed (they are not tracked)
    answer = await press(user, "↩️ Undo", opened.message_id)
    assert answer.text == "The letter is in Inbox: there is nothing to undo."
    assert ours(user.message(opened.message_id)) == ["✉️ Mark unread", "⭐ Flag", "🗑 Delete", "🚫 Spam"]
    assert len(on_disk(bot_app.stack, mu)) == 1


async def test_an_action_waiting_on_its_server_holds_no_transaction(harness: BotHarness) -> None:
    """An action commits what it wrote before it waits on IMAP: another user's new letter is
    stored and alerted while the action's server does not answer (on SQLite an open write
    transaction would hold every other writer)."""
    await harness.start(mail_timeout=6.0)
    stack = harness.stack
    mu_a, mu_b = new_mail_user(stack, RENAMED), new_mail_user(stack, RENAMED)
    user_a, _clock = await start_user(harness, mu_a, 7160)
    user_b, _clock = await start_user(harness, mu_b, 7161)
    alert = await alert_for(harness, user_a, mu_a, 13)
    async with TcpProxy(("127.0.0.1", stack.imap_ssl_port)) as proxy:
        async with harness.session() as s:  # A's actions now go through a server that hangs
            await s.execute(update(Mailbox).where(Mailbox.email == mu_a.address).values(imap_port=proxy.port))
            await s.commit()
        proxy.freeze()
        answer = await user_a.press("🗑 Delete", message_id=alert.message_id, wait=False)
        await eventually(lambda: _assert_true(proxy.active >= 1))
        b_alert = await alert_for(harness, user_b, mu_b, 14)  # stored and alerted meanwhile
        assert "Action letter 14" in b_alert.text
        assert not answer.answered  # A's action is still waiting on its server
        await user_a.wait_for_text("Could not reach the mailbox to do that", timeout=12)
    assert len(on_disk(stack, mu_a)) == 1  # nothing moved


def _assert_true(value: bool) -> None:
    assert value


async def test_gmail_archive_takes_the_letter_out_of_inbox(bot_app: BotHarness) -> None:
    """A server announcing X-GM-EXT-1 is Gmail: Archive moves the letter to All Mail (on Gmail
    that removes the Inbox label), found here by Gmail's name (Dovecot's '.' hierarchy)."""
    mu = new_mail_user(bot_app.stack, RENAMED, caps=NO_MOVE_CAPS + " MOVE X-GM-EXT-1")
    await create_folders(bot_app.stack, mu, "[Gmail].All Mail", "Archive")  # "Archive" is no archive on Gmail
    user, _clock = await start_user(bot_app, mu, 7170)
    alert = await alert_for(bot_app, user, mu, 15)
    answer = await press(user, "📦 Archive", alert.message_id)
    assert answer.text == "Archived to “[Gmail].All Mail”. Undo within 30 seconds."
    assert on_disk(bot_app.stack, mu) == [] and len(on_disk(bot_app.stack, mu, "[Gmail].All Mail")) == 1
    assert on_disk(bot_app.stack, mu, "Archive") == []
    await press(user, "↩️ Undo", alert.message_id)
    assert len(on_disk(bot_app.stack, mu)) == 1 and on_disk(bot_app.stack, mu, "[Gmail].All Mail") == []


async def test_inbox_lists_what_is_in_inbox(bot_app: BotHarness) -> None:
    mu = new_mail_user(bot_app.stack, RENAMED)
    user, _clock = await start_user(bot_app, mu, 7180)
    first = await alert_for(bot_app, user, mu, 16)
    await alert_for(bot_app, user, mu, 17)
    await press(user, "🗑 Delete", first.message_id)
    await user.send("/inbox")
    listing = user.last().text
    assert "Action letter 17" in listing and "Action letter 16" not in listing
    await press(user, "↩️ Undo", first.message_id)
    await user.send("/inbox")
    assert "Action letter 16" in user.last().text and "Action letter 17" in user.last().text


async def test_changes_made_while_stopped_show_after_start(harness: BotHarness) -> None:
    await harness.start()
    mu = new_mail_user(harness.stack, RENAMED)
    user, _clock = await start_user(harness, mu, 7190)
    alert = await alert_for(harness, user, mu, 18)
    await wait_remembered(harness, await letter_id_of(harness, "Action letter 18"))
    await harness.stop()
    client = await imap(harness.stack, mu)
    try:
        await client.select("INBOX")
        assert (await client.uid("store", "1:*", "+FLAGS", "(\\Flagged)")).result == "OK"
    finally:
        await close_imap(client)
    await harness.start()
    await eventually(
        lambda: _labels_are(user, alert.message_id, ["📖 Open", "✅ Mark read", "⭐ Unflag", "🗑 Delete", "🚫 Spam"]),
        timeout=8,
    )
