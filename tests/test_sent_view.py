"""/sent: the letters business processes sent from the user's address, listed in the chat
(newest first, with recipients), each opening from the provider's Sent folder."""

from __future__ import annotations

from typing import Any

from bot.callbacks import SentCB
from tests.harness.mailstack import MailStack, MailUser
from tests.test_api import Api, api, new_user  # noqa: F401 - the api fixture

_ = api


async def test_sent_letters_are_listed_and_open(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7301, mail_user)
    user = api.h.user(7301)
    await user.send("/sent")
    assert "Nothing has been sent" in user.last().text
    await user.send("/inbox")
    assert "📤 Sent" not in user.buttons(user.last().message_id)  # no list to switch to yet

    first, second = new_user(mail_stack, "a"), new_user(mail_stack, "b")
    for to, subject in ((first, "Invoice <b>42</b>"), (second, "Contract & terms")):
        status, data = await api.send({"user_id": 7301, "to": [to.address], "subject": subject, "text": f"About {subject}"})
        assert status == 200 and data["letter_id"], data
    await user.send("/sent")
    page = user.last()
    assert "letters 1–2 of 2" in page.text
    # newest first; the subjects shown as written (escaped: not bold, no markup error)
    assert page.text.index("Contract & terms") < page.text.index("Invoice <b>42</b>")
    assert f"→ {second.address}" in page.text and f"→ {first.address}" in page.text
    assert "📥 Inbox" in user.buttons(page.message_id)
    await user.press("2. Invoice <b>42</b>")
    opened = await user.wait_for_text("About Invoice <b>42</b>")
    assert first.address in opened.text

    # from the Inbox, one tap to the Sent list and back
    await user.send("/inbox")
    await user.press("📤 Sent")
    assert "letters 1–2 of 2" in user.last().text
    await user.press("📥 Inbox")
    assert user.last().text == "📥 No letters yet."  # this mailbox has had no mail in
    assert "📤 Sent" in user.buttons(user.last().message_id)


async def test_sent_list_pages_and_belongs_to_the_presser(api: Api, mail_user: MailUser, mail_stack: MailStack) -> None:
    await api.employee(7302, mail_user)
    to = new_user(mail_stack)
    for n in range(10):
        status, _data = await api.send({"user_id": 7302, "to": [to.address], "subject": f"Notice {n}", "text": "x"})
        assert status == 200
    owner = api.h.user(7302)
    await owner.send("/sent")
    assert "letters 1–8 of 10" in owner.last().text
    await owner.press("Older ➡️")
    assert "letters 9–10 of 10" in owner.last().text and "Notice 0" in owner.last().text
    # a page far past the end (a forged or old button) shows the last page
    await owner.press_data(SentCB(page=2**31 - 1).pack(), owner.last().message_id)
    assert "letters 9–10 of 10" in owner.last().text
    await owner.press("⬅️ Newer")
    assert "letters 1–8 of 10" in owner.last().text

    # someone else pressing a Sent page button (or forging one) sees their own list, never this
    stranger = api.h.user(7303)
    await stranger.send("/start")
    reply: Any = await stranger.press_data(SentCB(page=1).pack(), stranger.last().message_id)
    texts = [m.text for m in stranger.messages()] + [reply.text or ""]
    assert not any("Notice" in text for text in texts)
    assert any("No mailbox is connected" in text for text in texts)
