"""A letter as Telegram messages: HTML chunks that each stand on their own.

Every chunk is at most 4096 characters of *visible* text (what Telegram counts after parsing
the entities; counted here in UTF-16 units, which is never less than characters) and is
well-formed by itself: template lines are placed whole, and the letter's text is cut on
paragraph, line or word boundaries *before* it is escaped, so a cut never falls inside an
entity (``&amp;``) or a tag. The body's text is kept exactly: the chunks' visible texts,
joined, contain ``letter.text`` unchanged (the whitespace at a cut stays with the piece
before it). Values from mail are always escaped (by the translator or ``escape``).

Text only: the keyboards (open, download attachment) belong to the callers.
"""

from __future__ import annotations

import html
import re
import unicodedata
from datetime import datetime, timedelta

from bot.i18n import Translator, escape
from mail.reader import AttachmentInfo, FullLetter
from mail.types import LetterSummary

MAX_MESSAGE = 4096  # Telegram's limit for a message text after entity parsing
TELEGRAM_UPLOAD_LIMIT = 50 * 1024 * 1024  # bots may send files up to 50 MB
MAX_BODY_CHUNKS = 10  # a longer text is cut (with a note) instead of flooding the chat
MAX_ATTACHMENTS_LISTED = 50
MIN_PIECE = 200  # less room than this left in a chunk: the text starts a new one
NAME_CHARS = 200
ADDRESS_CHARS = 320
LIST_CHARS = 600  # To / Cc
SUBJECT_CHARS = 500
FILENAME_CHARS = 180
ALERT_SUBJECT_CHARS = 200
ALERT_SENDER_CHARS = 120

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def visible_len(markup: str) -> int:
    """Visible length of Telegram HTML built by the bot (tags dropped, entities decoded)."""
    return utf16_len(html.unescape(_TAG.sub("", markup)))


def shorten(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters; longer ones end with an ellipsis."""
    text = _SPACE.sub(" ", text or "").strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.7:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def sender_text(name: str, address: str, *, limit: int = NAME_CHARS) -> str:
    """'Name <address>', or whichever of the two exists (plain text, not escaped)."""
    name = shorten(name, limit)
    address = shorten(address, ADDRESS_CHARS)
    if name and address and name.lower() != address.lower():
        return f"{name} <{address}>"
    return address or name


def human_size(t: Translator, size: int) -> str:
    """'512 B', '3.4 KB', '12 MB', '1.2 GB' (decimal comma in Russian)."""
    size = max(0, int(size))
    if size < 1024:
        key, number = "letter.size_b", str(size)
    else:
        value = size / 1024
        key = "letter.size_kb"
        for bigger in ("letter.size_mb", "letter.size_gb"):
            if value < 1024:
                break
            value /= 1024
            key = bigger
        number = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    if t.lang == "ru":
        number = number.replace(".", ",")
    return t(key, value=number)


def _date_text(moment: datetime) -> str:
    text = f"{moment:%d.%m.%Y %H:%M}"
    offset = moment.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + " UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return text + f" UTC{sign}{hours}" + (f":{mins:02d}" if mins else "")


# --------------------------------------------------------------------------- chunking
def _cut(text: str, pos: int, room: int) -> int:
    """End of the next piece of ``text`` from ``pos``: at most ``room`` UTF-16 units, cut after
    a paragraph break, else a line break, else a space, else anywhere but inside a grapheme."""
    window = text[pos : pos + room]
    if utf16_len(window) > room:  # astral characters (emoji) count twice
        units = 0
        for i, ch in enumerate(window):
            units += 2 if ord(ch) > 0xFFFF else 1
            if units > room:
                window = window[:i]
                break
    if pos + len(window) >= len(text):
        return len(text)
    for mark, share in (("\n\n", 0.5), ("\n", 0.5), (" ", 0.3)):
        found = window.rfind(mark)
        if found >= 0 and found + len(mark) >= len(window) * share:
            return pos + found + len(mark)
    end = pos + len(window)
    while end > pos + 1 and (
        unicodedata.combining(text[end])
        or text[end] in "\u200d\ufe0e\ufe0f"
        or text[end - 1] == "\u200d"
    ):
        end -= 1
    return end


class _Chunks:
    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self.chunks: list[str] = []
        self._parts: list[str] = []
        self._used = 0
        self._visible: list[str] = []

    def flush(self) -> None:
        if self._parts and "".join(self._visible).strip():
            self.chunks.append("".join(self._parts))
        self._parts, self._visible, self._used = [], [], 0

    def _room(self, sep: str) -> int:
        return self.limit - self._used - (len(sep) if self._parts else 0)

    def _put(self, markup: str, visible: str, sep: str) -> None:
        if self._parts and sep:
            self._parts.append(sep)
            self._visible.append(sep)
            self._used += len(sep)
        self._parts.append(markup)
        self._visible.append(visible)
        self._used += utf16_len(visible)

    def block(self, markup: str, sep: str = "\n") -> None:
        """A well-formed piece of HTML placed whole (split by its lines if it must be)."""
        visible = html.unescape(_TAG.sub("", markup))
        size = utf16_len(visible)
        if size > self.limit:
            lines = markup.split("\n")
            if len(lines) > 1:
                for i, line in enumerate(lines):
                    self.block(line, sep if i == 0 else "\n")
                return
            self.text(visible, sep)  # one enormous line: keep its text, drop its markup
            return
        if self._parts and size > self._room(sep):
            self.flush()
        self._put(markup, visible, sep)

    def text(self, text: str, sep: str = "\n\n", max_chunks: int | None = None) -> bool:
        """Plain text, escaped piece by piece; True if it had to be cut at ``max_chunks``."""
        first = len(self.chunks)
        pos = 0
        while pos < len(text):
            if max_chunks is not None and len(self.chunks) - first >= max_chunks:
                return True
            room = self._room(sep)
            if self._parts and room < min(MIN_PIECE, utf16_len(text) - pos):
                self.flush()
                continue
            end = _cut(text, pos, room)
            if end <= pos:  # nothing fits (a wide character at the very end of a chunk)
                if self._parts:
                    self.flush()
                    continue
                end = pos + 1
            piece = text[pos:end]
            self._put(escape(piece), piece, sep)
            pos, sep = end, ""
            if pos < len(text):
                self.flush()
        return False


# --------------------------------------------------------------------------- letters
def _header(t: Translator, letter: FullLetter) -> str:
    sender = sender_text(letter.from_name, letter.from_addr) or t("letter.unknown_sender")
    lines = [t("letter.from", sender=sender)]
    if letter.to.strip():
        lines.append(t("letter.to", value=shorten(letter.to, LIST_CHARS)))
    if letter.cc.strip():
        lines.append(t("letter.cc", value=shorten(letter.cc, LIST_CHARS)))
    if letter.date is not None:
        lines.append(t("letter.date", value=_date_text(letter.date)))
    subject = shorten(letter.subject, SUBJECT_CHARS) or t("letter.no_subject")
    lines.append(t("letter.subject", value=subject))
    return "\n".join(lines)


def _attachment_lines(t: Translator, attachments: list[AttachmentInfo]) -> list[str]:
    if not attachments:
        return []
    lines = [t("letter.attachments", count=len(attachments))]
    for n, item in enumerate(attachments[:MAX_ATTACHMENTS_LISTED], 1):
        name = shorten(item.filename, FILENAME_CHARS) or item.part
        size = human_size(t, item.size)
        if item.size > TELEGRAM_UPLOAD_LIMIT:
            limit = human_size(t, TELEGRAM_UPLOAD_LIMIT)
            lines.append(t("letter.attachment_too_large", n=n, name=name, size=size, limit=limit))
        else:
            lines.append(t("letter.attachment", n=n, name=name, size=size))
    hidden = len(attachments) - MAX_ATTACHMENTS_LISTED
    if hidden > 0:
        lines.append(t("letter.attachments_more", count=hidden))
    return lines


def render_letter(
    t: Translator, letter: FullLetter, *, max_body_chunks: int = MAX_BODY_CHUNKS
) -> list[str]:
    """HTML chunks for sendMessage: header, text, attachment list (see the module doc)."""
    out = _Chunks()
    out.block(_header(t, letter))
    text = letter.text.strip("\n")
    cut = False
    if text.strip():
        cut = out.text(text, "\n\n", max_body_chunks)
    else:
        out.block(t("letter.no_text"), "\n\n")
    if cut or letter.truncated:
        out.block(t("letter.truncated"), "\n\n")
    for i, line in enumerate(_attachment_lines(t, letter.attachments)):
        out.block(line, "\n\n" if i == 0 else "\n")
    out.flush()
    return out.chunks


def render_alert(t: Translator, letter: LetterSummary) -> str:
    """The new-mail notification: who wrote and about what, short and escaped."""
    sender = sender_text(letter.from_name, letter.from_addr, limit=ALERT_SENDER_CHARS)
    subject = shorten(letter.subject, ALERT_SUBJECT_CHARS) or t("letter.no_subject")
    text = t("letter.alert", sender=sender or t("letter.unknown_sender"), subject=subject)
    return text + alert_code_line(t, letter.code)


def alert_code_line(t: Translator, code: str | None) -> str:
    """The one-time code found in the letter (mail.codes), on a line of its own; escaped."""
    return "\n\n" + t("codes.alert_code", code=code) if code else ""
