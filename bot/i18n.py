"""Translations from `locales/<lang>/*.ftl` (Fluent; one file per area, ids unique across files).

Handlers call `t(key, name=value)` with a dotted key: `admin.co_in_use` names the Fluent message
`admin-co_in_use` (Fluent ids allow no dots; `message_id` maps them, so call sites keep their
keys). Plural forms
are Fluent select expressions on a number (`{ $count -> [one] ... [few] ... *[many] ... }`),
chosen by the CLDR rules of the language (Babel's data).

Every placeholder value is HTML-escaped here, in `_argument`, when a message is formatted (the
bot speaks HTML), so user or mail content can never inject markup. Values that are already safe
HTML (built by the bot itself) are wrapped in `Html`. Integers are passed as Fluent numbers (so
plural rules apply) without digit grouping, so an id or a port reads as before. Fluent's bidi
isolation marks are off: Telegram's HTML has no use for them.
"""

from __future__ import annotations

import html
from decimal import Decimal
from pathlib import Path
from typing import Any

from fluent.runtime import FluentBundle
from fluent.runtime.types import fluent_number
from fluent.syntax import FluentParser
from fluent.syntax import ast as ftl

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"


class Html(str):
    """A string that is already safe HTML and must not be escaped again."""


class TranslationError(KeyError):
    """A message is missing, or could not be formatted (a variable it needs was not given)."""


def escape(value: object) -> str:
    if isinstance(value, Html):
        return str(value)
    return html.escape(str(value), quote=False)


def message_id(key: str) -> str:
    """The Fluent id of a dotted key: `admin.co_in_use` -> `admin-co_in_use`."""
    return key.replace(".", "-")


def pick_language(code: str | None) -> str:
    """Telegram's `language_code` ("ru", "ru-RU", "uk", None) to one of ours."""
    if code:
        base = code.split("-")[0].lower()
        if base in LANGUAGES:
            return base
        if base in {"uk", "be", "kk", "ky", "uz", "tg", "hy", "az"}:
            return "ru"  # neighbours more likely to read Russian than English
    return DEFAULT_LANGUAGE


def _argument(value: Any) -> Any:
    """A value as Fluent gets it: escaped text, or a number plural rules can select on."""
    if isinstance(value, Html):
        return str(value)
    if isinstance(value, bool):
        return escape(value)
    if isinstance(value, int):
        return fluent_number(value, useGrouping=False)
    if isinstance(value, float | Decimal):
        return escape(value)  # shown as Python writes it, as before; selects use ints
    return escape(value)


class Translator:
    def __init__(self, lang: str, bundle: FluentBundle, fallback: FluentBundle) -> None:
        self.lang = lang
        self._bundle = bundle
        self._fallback = fallback

    def __call__(self, key: str, **values: Any) -> str:
        fid = message_id(key)
        bundle = self._bundle if self._bundle.has_message(fid) else self._fallback
        if not bundle.has_message(fid):
            raise TranslationError(f"missing translation key {key!r}")
        message = bundle.get_message(fid)
        if message.value is None:
            raise TranslationError(f"translation {key!r} has no value")
        text, errors = bundle.format_pattern(
            message.value, {name: _argument(v) for name, v in values.items()}
        )
        if errors:
            raise TranslationError(f"translation {key!r} ({self.lang}): {errors[0]}")
        return str(text)

    def raw(self, key: str, **values: Any) -> Html:
        return Html(self(key, **values))


def parse_messages(path: Path) -> dict[str, ftl.Message]:
    """The messages of one .ftl file by id; ValueError on a syntax error or a repeated id."""
    resource = FluentParser().parse(path.read_text(encoding="utf-8"))
    out: dict[str, ftl.Message] = {}
    for entry in resource.body:
        if isinstance(entry, ftl.Junk):
            problem = entry.annotations[0].message if entry.annotations else "syntax error"
            near = (entry.content or "").strip()[:80]
            raise ValueError(f"{path}: {problem} in {near!r}")
        if isinstance(entry, ftl.Message):
            if entry.id.name in out:
                raise ValueError(f"{path}: {entry.id.name!r} defined twice")
            out[entry.id.name] = entry
    return out


class Catalog:
    def __init__(self, directory: Path = LOCALES_DIR) -> None:
        self.messages: dict[str, dict[str, ftl.Message]] = {}
        bundles: dict[str, FluentBundle] = {}
        for lang in LANGUAGES:
            merged: dict[str, ftl.Message] = {}
            bundle = FluentBundle([lang], use_isolating=False)
            for path in sorted((directory / lang).glob("*.ftl")):
                part = parse_messages(path)
                clash = set(part) & set(merged)
                if clash:
                    raise ValueError(f"{path}: ids defined twice: {sorted(clash)}")
                merged.update(part)
                bundle.add_resource(ftl.Resource(list(part.values())))
            self.messages[lang] = merged
            bundles[lang] = bundle
        self._translators = {
            lang: Translator(lang, bundles[lang], bundles[DEFAULT_LANGUAGE]) for lang in LANGUAGES
        }

    def get(self, lang: str | None) -> Translator:
        return self._translators.get(lang or DEFAULT_LANGUAGE, self._translators[DEFAULT_LANGUAGE])


def on_off(t: Translator, flag: bool) -> str:
    return t("word.on") if flag else t("word.off")
