"""Both languages carry the same messages with the same variables; counts use CLDR plural forms
(Russian one/few/many/other, English one/other) and render for every category; every key the
code uses exists; placeholders are escaped for HTML unless marked safe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fluent.syntax import FluentSerializer
from fluent.syntax import ast as ftl

from bot.i18n import LOCALES_DIR, Catalog, Html, TranslationError, message_id, pick_language

ROOT = Path(__file__).resolve().parent.parent
CATALOG = Catalog()
PLURAL_CATEGORIES = {"zero", "one", "two", "few", "many", "other"}
NEEDED = {"en": {"one", "other"}, "ru": {"one", "few", "many", "other"}}
SAMPLE_COUNTS = (0, 1, 2, 5, 11, 21, 22, 25, 101)


def nodes(node: object) -> list[ftl.BaseNode]:
    """Every AST node under `node` (itself included), depth first."""
    out: list[ftl.BaseNode] = []
    if isinstance(node, ftl.BaseNode):
        out.append(node)
        for name, value in vars(node).items():
            if name == "span":
                continue
            for item in value if isinstance(value, list) else [value]:
                out.extend(nodes(item))
    return out


def variables(message: ftl.Message) -> set[str]:
    return {n.id.name for n in nodes(message) if isinstance(n, ftl.VariableReference)}


def plural_selects(message: ftl.Message) -> list[tuple[str, set[str]]]:
    """(variable, variant keys) of every select on a number: keys are CLDR categories or numbers."""
    out = []
    for n in nodes(message):
        if not isinstance(n, ftl.SelectExpression) or not isinstance(n.selector, ftl.VariableReference):
            continue
        keys = {
            v.key.name if isinstance(v.key, ftl.Identifier) else v.key.value for v in n.variants
        }
        if any(isinstance(v.key, ftl.NumberLiteral) for v in n.variants) or keys & PLURAL_CATEGORIES:
            out.append((n.selector.id.name, keys))
    return out


def numeric(message: ftl.Message) -> set[str]:
    return {name for name, _ in plural_selects(message)}


def plural_ids() -> list[str]:
    return sorted(
        fid
        for fid in CATALOG.messages["en"]
        if plural_selects(CATALOG.messages["en"][fid]) or plural_selects(CATALOG.messages["ru"][fid])
    )


def args_for(fid: str, count: int) -> dict[str, object]:
    """Every variable of the message in both languages: numbers where some language selects."""
    en, ru = CATALOG.messages["en"][fid], CATALOG.messages["ru"][fid]
    counted = numeric(en) | numeric(ru)
    return {name: count if name in counted else f"<{name}>" for name in variables(en) | variables(ru)}


# --------------------------------------------------------------------------- parity
def test_same_files_in_both_languages_and_no_json_left() -> None:
    en = sorted(p.name for p in (LOCALES_DIR / "en").glob("*.ftl"))
    ru = sorted(p.name for p in (LOCALES_DIR / "ru").glob("*.ftl"))
    assert en == ru and "messages.ftl" in en
    # a JSON file next to them would be silently ignored: convert it (see README, Languages)
    assert not list(LOCALES_DIR.glob("*/*.json"))


def test_same_messages_and_variables() -> None:
    en, ru = CATALOG.messages["en"], CATALOG.messages["ru"]
    assert len(en) > 300
    assert set(en) == set(ru), set(en) ^ set(ru)
    for fid in en:
        assert variables(en[fid]) == variables(ru[fid]), fid
        assert en[fid].value is not None and ru[fid].value is not None, fid
        assert not en[fid].attributes and not ru[fid].attributes, fid  # t() reads values only


def test_every_message_renders_with_its_variables() -> None:
    for lang in ("en", "ru"):
        t = CATALOG.get(lang)
        for fid in CATALOG.messages[lang]:
            text = t(fid, **args_for(fid, 3))
            assert text.strip(), (lang, fid)
            assert "\u2068" not in text and "\u2069" not in text  # no bidi isolation marks


# --------------------------------------------------------------------------- plurals
def test_plural_messages_cover_the_cldr_categories() -> None:
    ids = plural_ids()
    assert len(ids) >= 15, ids  # the counts of issue 11, item 13
    for fid in ids:
        for lang in ("en", "ru"):
            for variable, keys in plural_selects(CATALOG.messages[lang][fid]):
                missing = NEEDED[lang] - keys
                assert not missing, (lang, fid, variable, missing)


@pytest.mark.parametrize("count", SAMPLE_COUNTS)
def test_plural_messages_render_for_every_count(count: int) -> None:
    for fid in plural_ids():
        for lang in ("en", "ru"):
            text = CATALOG.get(lang)(fid, **args_for(fid, count))  # raises on a Fluent error
            assert text.strip() and "{" not in text, (lang, fid, text)


def test_plural_messages_change_form_between_one_and_many() -> None:
    for fid in plural_ids():
        for lang in ("en", "ru"):
            t = CATALOG.get(lang)
            one = t(fid, **args_for(fid, 1)).replace("1", "#")
            five = t(fid, **args_for(fid, 5)).replace("5", "#")
            assert one != five, (lang, fid, one)


def test_counts_are_not_written_as_noun_colon_number() -> None:
    """'Этот сервер используют ящиков: 3' is gone: a count follows no 'Noun:' label."""
    for lang in ("en", "ru"):
        for fid, message in CATALOG.messages[lang].items():
            source = FluentSerializer().serialize_entry(message)
            assert not re.search(r"\w: \{ \$count \}", source), (lang, fid)


@pytest.mark.parametrize(
    ("lang", "key", "count", "expected"),
    [
        ("ru", "admin.co_in_use", 1, "Этот сервер использует 1 ящик,"),
        ("ru", "admin.co_in_use", 3, "Этот сервер используют 3 ящика,"),
        ("ru", "admin.co_in_use", 5, "Этот сервер используют 5 ящиков,"),
        ("ru", "admin.co_in_use", 21, "Этот сервер использует 21 ящик,"),
        ("ru", "admin.co_in_use", 11, "Этот сервер используют 11 ящиков,"),
        ("en", "admin.co_in_use", 1, "1 account uses this server"),
        ("en", "admin.co_in_use", 3, "3 accounts use this server"),
        ("ru", "letter.attachments", 2, "📎 <b>2 вложения</b>"),
        ("ru", "letter.attachments", 25, "📎 <b>25 вложений</b>"),
        ("en", "letter.attachments", 1, "📎 <b>1 attachment</b>"),
        ("ru", "summary.imported", 21, "Загружено 21 последнее письмо."),
        ("ru", "summary.imported", 3, "Загружены 3 последних письма."),
        ("en", "summary.imported", 50, "Loaded your 50 latest letters."),
        ("ru", "admin.bc_btn_send", 1, "📣 Отправить 1 пользователю"),
        ("ru", "admin.bc_btn_send", 4, "📣 Отправить 4 пользователям"),
        ("ru", "oauth.device_prompt", 2, "Я жду здесь 2 минуты."),
        ("ru", "oauth.device_prompt", 15, "Я жду здесь 15 минут."),
    ],
)
def test_plural_golden(lang: str, key: str, count: int, expected: str) -> None:
    fid = message_id(key)
    values = {**args_for(fid, count), "count": count, "minutes": count}
    assert expected in CATALOG.get(lang)(key, **values)


def test_numbers_keep_their_digits() -> None:
    """Integers reach Fluent as numbers (for plural rules) but print without digit grouping."""
    ru = CATALOG.get("ru")
    assert "12345 ящиков" in ru("admin.co_in_use", count=12345)
    assert "<code>65535</code>" in ru("reconnect.ask_imap_port", current=65535)
    assert "1.5" in ru("error.bad_email", value=1.5)


# --------------------------------------------------------------------------- code and markup
def test_every_key_used_in_code_exists() -> None:
    en = CATALOG.messages["en"]
    used: set[str] = set()
    pattern = re.compile(r"""\bt(?:\.raw)?\(\s*f?["']([a-z_]+\.[a-z0-9_.{}]+)["']""")
    for folder in ("bot", "handlers", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            used.update(pattern.findall(path.read_text(encoding="utf-8")))
    static = {k for k in used if "{" not in k}
    assert static, "the scan found no keys: the pattern is wrong"
    missing = {k for k in static if message_id(k) not in en}
    assert not missing, missing
    # keys built from a value: every possible value must exist
    for prefix, values in {
        "fail.": [k.value for k in __import__("mail.types", fromlist=["FailureKind"]).FailureKind],
        "state.": ["draft", "connected", "reconnecting", "broken"],
        "security.": ["ssl", "starttls"],
        "source.": ["builtin", "autoconfig", "wellknown", "mx", "probe", "guess", "manual"],
    }.items():
        for value in values:
            assert message_id(prefix + value) in en, prefix + value


def test_html_in_templates_is_valid_telegram_markup() -> None:
    allowed = {"b", "i", "u", "s", "code", "pre", "a"}
    for lang in ("en", "ru"):
        for fid, message in CATALOG.messages[lang].items():
            source = FluentSerializer().serialize_entry(message)
            for tag in re.findall(r"</?([a-zA-Z0-9-]+)", source):
                assert tag in allowed, (lang, fid, tag)


def test_values_are_escaped_unless_marked_safe() -> None:
    t = CATALOG.get("en")
    text = t("error.bad_email", value="<b>x</b>&")
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in text
    assert "<b>" in t("connect.hint", hint=Html("<b>ok</b>"))
    # inside a plural variant too
    assert "Send it to <b>&lt;all&gt;</b>?" in t("admin.bc_confirm", audience="<all>", count=2, skipped=1)


def test_missing_keys_and_variables_are_errors() -> None:
    t = CATALOG.get("ru")
    with pytest.raises(KeyError):
        t("no.such_key")
    with pytest.raises(TranslationError):
        t("admin.co_in_use")  # $count not given


@pytest.mark.parametrize(
    ("code", "lang"),
    [("ru", "ru"), ("ru-RU", "ru"), ("en-GB", "en"), (None, "en"), ("de", "en"), ("uk", "ru")],
)
def test_language_from_telegram(code: str | None, lang: str) -> None:
    assert pick_language(code) == lang


def test_a_broken_file_stops_the_start(tmp_path: Path) -> None:
    for lang in ("en", "ru"):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "messages.ftl").write_text("a = ok\nb = { $x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="messages.ftl"):
        Catalog(tmp_path)
