"""Translations from `locales/<lang>/*.json` (one file per area, keys unique across files).

Every placeholder value is HTML-escaped when a message is formatted (the bot speaks HTML), so
user or mail content can never inject markup. Values that are already safe HTML (built by the
bot itself) are wrapped in `Html`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Formatter
from typing import Any

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"


class Html(str):
    """A string that is already safe HTML and must not be escaped again."""


def escape(value: object) -> str:
    if isinstance(value, Html):
        return str(value)
    return html.escape(str(value), quote=False)


def pick_language(code: str | None) -> str:
    """Telegram's `language_code` ("ru", "ru-RU", "uk", None) to one of ours."""
    if code:
        base = code.split("-")[0].lower()
        if base in LANGUAGES:
            return base
        if base in {"uk", "be", "kk", "ky", "uz", "tg", "hy", "az"}:
            return "ru"  # neighbours more likely to read Russian than English
    return DEFAULT_LANGUAGE


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(text) if name}


class Translator:
    def __init__(self, lang: str, messages: dict[str, str], fallback: dict[str, str]) -> None:
        self.lang = lang
        self._messages = messages
        self._fallback = fallback

    def __call__(self, key: str, **values: Any) -> str:
        template = self._messages.get(key) or self._fallback.get(key)
        if template is None:
            raise KeyError(f"missing translation key {key!r}")
        if not values:
            return template
        return template.format(**{k: escape(v) for k, v in values.items()})

    def raw(self, key: str, **values: Any) -> Html:
        return Html(self(key, **values))


class Catalog:
    def __init__(self, directory: Path = LOCALES_DIR) -> None:
        self.messages: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            merged: dict[str, str] = {}
            for path in sorted((directory / lang).glob("*.json")):
                with path.open(encoding="utf-8") as fh:
                    part = json.load(fh)
                clash = set(part) & set(merged)
                if clash:
                    raise ValueError(f"{path}: keys defined twice: {sorted(clash)}")
                merged.update(part)
            self.messages[lang] = merged
        self._translators = {
            lang: Translator(lang, self.messages[lang], self.messages[DEFAULT_LANGUAGE])
            for lang in LANGUAGES
        }

    def get(self, lang: str | None) -> Translator:
        return self._translators.get(lang or DEFAULT_LANGUAGE, self._translators[DEFAULT_LANGUAGE])


def on_off(t: Translator, flag: bool) -> str:
    return t("word.on") if flag else t("word.off")
