"""One-time codes in new letters (mail.codes): the corpus in tests/corpus/codes/ with its
precision and recall, and the look-alikes one by one."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup
from sqlalchemy import select

from mail.codes import CODE_MAX, MAX_TEXT, code_in_message, find_code
from storage.models import Letter
from tests.harness.plugin_app import BotHarness
from tests.test_connect_wizard import letter
from tests.test_live_mailbox import connected_user, wait_alerts

CORPUS = Path(__file__).parent / "corpus" / "codes"


def corpus() -> dict[str, str | None]:
    manifest: dict[str, str | None] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def test_corpus_precision_is_perfect_and_recall_at_least_ninety_percent() -> None:
    manifest = corpus()
    assert len(manifest) >= 60
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(manifest)
    with_code = [name for name, code in manifest.items() if code]
    assert len(with_code) >= 25 and len(manifest) - len(with_code) >= 25  # codes and look-alikes
    true_pos = false_pos = false_neg = 0
    wrong: list[str] = []
    for name, expected in manifest.items():
        got = code_in_message((CORPUS / name).read_bytes())
        if got is not None and got == expected:
            true_pos += 1
        elif got is not None:
            false_pos += 1  # a code where there is none, or the wrong one
            wrong.append(f"{name}: expected {expected!r}, got {got!r}")
        elif expected is not None:
            false_neg += 1
    precision = true_pos / (true_pos + false_pos) if true_pos + false_pos else 0.0
    recall = true_pos / (true_pos + false_neg) if true_pos + false_neg else 0.0
    print(f"\ncodes corpus: {len(manifest)} letters, {len(with_code)} with a code: "
          f"precision {precision:.3f}, recall {recall:.3f} ({true_pos} found, {false_neg} missed)")
    assert wrong == []
    assert precision == 1.0
    assert recall >= 0.9


@pytest.mark.parametrize(
    ("subject", "text", "code"),
    [
        ("Your code", "Verification code: 482913", "482913"),
        ("", "739104 is your Instagram code", "739104"),
        ("Код подтверждения", "Ваш код: 52 91 74", None),  # not a grouping codes use
        ("", "Код подтверждения: 304 118", "304118"),
        ("", "Пароль для входа: Kd83mQz1", "Kd83mQz1"),
        ("", "Your one-time passcode for USD 49.99 with card ending 4417 is 640218.", "640218"),
        ("", "Your security code is:\n\n  A7K-9QZ\n", "A7K-9QZ"),
        ("", "Код: 1947 — ваш код для входа", "1947"),
        ("", "Your code is 482913, never share it or forward it", "482913"),
        ("", "Ваш код: 4821, и никому его не сообщайте", "4821"),
        ("", "Сумма покупки 4500. Код подтверждения: 1234", "1234"),
        ("", "Use the following code to sign in.\n\n123456\n", "123456"),
    ],
)
def test_codes_found(subject: str, text: str, code: str | None) -> None:
    assert find_code(subject, text) == code


@pytest.mark.parametrize(
    "text",
    [
        "Order #112-4827391 confirmation code 1234 5678 9012",
        "Your order 48213957 is confirmed. Verification of payment took 2 days.",
        "Promo code SPRING24: 20% off",
        "Промокод LETU30 действует до 31.03.2026",
        "Код заказа: 48213957",
        "Код для получения: 4821",
        "Код отслеживания: 80088812345678",
        "Postal code: 10115",
        "ZIP code 94043",
        "Call +1 (800) 555-0199 about your code",
        "Позвоните 8 800 555-35-35, если не запрашивали код",
        "The code for 2026 is ready",  # a year
        "Сумма кода: 4500 руб",  # a price
        "code 12.03.2026",  # a date
        "code 10:30",  # a time
        "Your code is 1.299",  # a decimal
        "Invoice number 204177, security code of the card not needed",
        "Verify at https://x.example/verify?token=551209&uid=1",
        "Your recovery codes: 4821-1132 and 9920-4418",
        "Verification code: 111111 or 222222",  # two: no answer rather than a wrong one
        "Error code 5031 returned",
        "Booking code: ABC1D2",
        "QR code 778812 attached",
        "Your code review on !4821",
        "Use code WELCOME10 for 10% off",
        "Your flight confirmation code is K7Q2PZ. Check in 24 hours before departure.",
        "Your verification code is below. Order total: 1234",
        "Your Airbnb reservation code is HMX4Q2PZ",
        "",
    ],
)
def test_look_alikes_are_not_codes(text: str) -> None:
    assert find_code("", text) is None
    assert find_code(text, "") is None


def test_only_the_first_part_of_the_text_is_read_and_codes_stay_short() -> None:
    filler = "Hello. " * (MAX_TEXT // 7 + 10)
    assert find_code("", filler + "Your verification code: 482913") is None
    assert find_code("", "Your verification code: 482913 " + filler) == "482913"
    assert find_code("", "Verification code: " + "A1" * 20) is None
    assert CODE_MAX >= 10


def test_odd_input_does_not_raise() -> None:
    assert find_code("\x00\ufffd" * 100, "\u202e code: \u0661\u0662\u0663\u0664") is None  # Arabic-Indic digits
    assert code_in_message(b"") is None
    assert code_in_message(b"Subject: =?utf-8?b?broken?=\r\nContent-Type: text/html; charset=x-unknown\r\n\r\n<p>code: 482913") == "482913"
    assert code_in_message(b"Subject: Code 4821\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n") == "4821"


# --------------------------------------------------------------------------- end to end
async def test_alert_shows_the_code_with_a_copy_button(bot_app: BotHarness, mail_user: Any) -> None:
    """A code letter delivered into Dovecot: the alert (fake Bot API) carries the code, escaped,
    and a copy_text button; a letter without one gets the plain alert."""
    user = await connected_user(bot_app, mail_user, 6601)
    html_letter = EmailMessage()
    html_letter["From"] = '"Bank <b>Security</b>" <security@bank.example>'
    html_letter["To"] = mail_user.address
    html_letter["Subject"] = "Вход в <интернет-банк> & приложение"
    html_letter.set_content("Текст в HTML.")
    html_letter.add_alternative(
        "<html><body><p>Кто-то входит в ваш аккаунт с устройства «Firefox».</p>"
        "<p>Код подтверждения: <b>482 913</b></p><p>Никому не сообщайте код.</p></body></html>",
        subtype="html",
    )
    html_letter.get_body(("plain",)).set_content("Кто-то входит в ваш аккаунт.\nКод подтверждения: 482 913\n")  # type: ignore[union-attr]
    await bot_app.stack.deliver(mail_user.address, html_letter)
    [alert] = await wait_alerts(bot_app, user, 1)
    assert "Code: 482913" in alert.text
    assert "<code>482913</code>" in (alert.html or "")
    assert "&lt;интернет-банк&gt; &amp; приложение" in (alert.html or "")
    assert "&lt;b&gt;Security&lt;/b&gt;" in (alert.html or "")
    copy = alert.button("📋 Copy 482913")
    assert copy.copy_text == "482913" and copy.callback_data is None
    assert "📖 Open" in alert.labels
    async with bot_app.session() as s:
        stored = (await s.execute(select(Letter).where(Letter.subject.like("Вход в%")))).scalar_one()
    assert stored.code == "482913"

    await bot_app.stack.deliver(mail_user.address, letter(2, subject="Your order #48213957 has shipped"))
    [_, plain] = await wait_alerts(bot_app, user, 2)
    assert "Code:" not in plain.text
    assert all(b.copy_text is None for row in plain.buttons for b in row)


async def test_code_in_the_body_of_a_base64_plain_letter(bot_app: BotHarness, mail_user: Any) -> None:
    user = await connected_user(bot_app, mail_user, 6602)
    msg = EmailMessage()
    msg["From"] = "Яндекс ID <noreply@id.yandex.ru>"
    msg["To"] = mail_user.address
    msg["Subject"] = "Подтверждение входа"
    msg.set_content("Здравствуйте!\n\n" + "Вы входите в аккаунт.\n" * 20 + "Ваш код для входа: 529174\n",
                    charset="utf-8", cte="base64")
    await bot_app.stack.deliver(mail_user.address, msg)
    [alert] = await wait_alerts(bot_app, user, 1)
    assert "Code: 529174" in alert.text
    assert alert.button("📋 Copy 529174").copy_text == "529174"


async def test_fake_bot_api_refuses_a_bad_copy_button(telegram_bot: Bot, fake_telegram: Any) -> None:
    """The fake checks copy_text as Telegram does, so a broken button would fail the tests."""
    user = fake_telegram.user(6603)
    await user.send("/start", wait=False)
    with pytest.raises(TelegramBadRequest, match="copy_text"):
        await telegram_bot.send_message(
            user.id, "x", reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="c", copy_text=CopyTextButton(text="x" * 257))]]
            ),
        )
