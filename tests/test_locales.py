"""Both languages carry the same keys and the same placeholders; every key the code uses exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.i18n import LOCALES_DIR, Catalog, Html, pick_language, placeholders

ROOT = Path(__file__).resolve().parent.parent


def load(lang: str) -> dict[str, str]:
    return Catalog().messages[lang]


def test_same_files_in_both_languages() -> None:
    en = sorted(p.name for p in (LOCALES_DIR / "en").glob("*.json"))
    ru = sorted(p.name for p in (LOCALES_DIR / "ru").glob("*.json"))
    assert en == ru and "messages.json" in en
    for name in en:  # each file is valid JSON of strings
        for lang in ("en", "ru"):
            data = json.loads((LOCALES_DIR / lang / name).read_text(encoding="utf-8"))
            assert all(isinstance(v, str) for v in data.values()), (lang, name)


def test_same_keys_and_placeholders() -> None:
    en, ru = load("en"), load("ru")
    assert set(en) == set(ru), set(en) ^ set(ru)
    for key in en:
        assert placeholders(en[key]) == placeholders(ru[key]), key
        assert en[key].strip() and ru[key].strip(), key


def test_every_key_used_in_code_exists() -> None:
    en = load("en")
    used: set[str] = set()
    pattern = re.compile(r"""\bt(?:\.raw)?\(\s*f?["']([a-z_]+\.[a-z0-9_.{}]+)["']""")
    for folder in ("bot", "handlers", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            used.update(pattern.findall(path.read_text(encoding="utf-8")))
    static = {k for k in used if "{" not in k}
    assert static, "the scan found no keys: the pattern is wrong"
    assert static <= set(en), static - set(en)
    # keys built from a value: every possible value must exist
    for prefix, values in {
        "fail.": [k.value for k in __import__("mail.types", fromlist=["FailureKind"]).FailureKind],
        "state.": ["draft", "connected", "reconnecting", "broken"],
        "security.": ["ssl", "starttls"],
        "source.": ["builtin", "autoconfig", "wellknown", "mx", "probe", "guess", "manual"],
    }.items():
        for value in values:
            assert prefix + value in en, prefix + value


def test_html_in_templates_is_valid_telegram_markup() -> None:
    allowed = {"b", "i", "u", "s", "code", "pre", "a"}
    for lang in ("en", "ru"):
        for key, value in load(lang).items():
            for tag in re.findall(r"</?([a-zA-Z0-9-]+)", value):
                assert tag in allowed, (lang, key, tag)


def test_values_are_escaped_unless_marked_safe() -> None:
    t = Catalog().get("en")
    text = t("error.bad_email", value="<b>x</b>&")
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in text
    assert "<b>" in t("connect.hint", hint=Html("<b>ok</b>"))


@pytest.mark.parametrize(
    ("code", "lang"),
    [("ru", "ru"), ("ru-RU", "ru"), ("en-GB", "en"), (None, "en"), ("de", "en"), ("uk", "ru")],
)
def test_language_from_telegram(code: str | None, lang: str) -> None:
    assert pick_language(code) == lang
