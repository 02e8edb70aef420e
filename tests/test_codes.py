"""One-time codes in new letters (mail.codes): the corpus in tests/corpus/codes/ with its
precision and recall, and the look-alikes one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mail.codes import CODE_MAX, MAX_TEXT, code_in_message, find_code

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
