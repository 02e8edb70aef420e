"""HTML mail to readable plain text, and plain text tidied for a chat.

The one HTML converter of the project (a letter read in full, snippets of imported letters,
the plain alternative of an outgoing HTML letter): what a browser would show, whitespace
collapsed outside <pre>, paragraphs and table rows on their own lines, list bullets, link
targets kept, scripts/styles/head dropped, entities decoded. Never raises; output is bounded.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import unquote

MAX_INPUT_CHARS = 2_000_000
MAX_OUTPUT_CHARS = 500_000
MAX_LINK_CHARS = 300

_SKIP = frozenset(
    {"script", "style", "head", "title", "noscript", "template", "svg", "xml", "object", "iframe"}
)
_VOID = frozenset(
    {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"}
)
_PARAGRAPH = frozenset(
    {
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "dl",
        "blockquote",
        "pre",
        "address",
        "figure",
        "hr",
    }
)
_LINE = frozenset(
    {
        "div",
        "tr",
        "li",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "main",
        "center",
        "form",
        "fieldset",
        "caption",
        "tbody",
        "thead",
        "tfoot",
        "figcaption",
        "details",
        "summary",
    }
)
_CELL = frozenset({"td", "th"})

# collapsible whitespace in HTML (not NBSP: that one is meant to stay)
_HTML_WS = re.compile(r"[ \t\n\r\f]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff\u200b\u00ad]")


class _Converter(HTMLParser):
    def __init__(self, limit: int, links: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self.show_links = links
        self.out: list[str] = []
        self.size = 0
        self.limit = limit
        self.skip: list[str] = []  # open tags whose content is dropped
        self.pre = 0
        self.quote = 0
        self.lists: list[list[int]] = []  # per open list: [ordered?, counter]
        self.links: list[tuple[str, int]] = []  # (href, output index where its text starts)
        self.cells = 0  # cells already written in the current table row
        self.pending_break = 0  # newlines owed before the next text (max 2)
        self.at_line_start = True
        self.space = False

    # --- output ---
    def _emit(self, text: str) -> None:
        if self.size >= self.limit or not text:
            return
        if self.pending_break:
            if self.out:
                self.out.append("\n" * self.pending_break)
                self.at_line_start = True
            self.pending_break = 0
            self.space = False
        if self.at_line_start and self.quote:
            self.out.append("> " * self.quote)
        self.out.append(text)
        self.size += len(text)
        self.at_line_start = text.endswith("\n")

    def _break(self, n: int) -> None:
        self.pending_break = max(self.pending_break, n)
        self.space = False

    # --- parser callbacks ---
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip:
            if tag in _SKIP:
                self.skip.append(tag)
            return
        if tag in _SKIP:
            self.skip.append(tag)
            return
        a = {k.lower(): v or "" for k, v in attrs}
        if tag == "br":
            if self.out and not self.pending_break:
                self.out.append("\n")
                self.at_line_start = True
            elif self.pending_break:
                self.pending_break = min(2, self.pending_break + 1)
            self.space = False
        elif tag == "hr":
            self._break(2)
            self._emit("———")
            self._break(2)
        elif tag in _CELL:
            if self.cells:
                self._emit(" | ")
            self.cells += 1
        elif tag == "tr":
            self.cells = 0
            self._break(1)
        elif tag in ("ul", "ol"):
            self._break(1 if self.lists else 2)
            self.lists.append([tag == "ol", 0])
        elif tag == "li":
            self._break(1)
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                self._emit(f"{indent}{self.lists[-1][1]}. ")
            else:
                self._emit(f"{indent}• ")
            self.space = True
        elif tag == "blockquote":
            self._break(2)
            self.quote += 1
        elif tag == "pre":
            self._break(2)
            self.pre += 1
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
        elif tag == "a" and self.show_links:
            self.links.append((a.get("href", "").strip(), len(self.out)))
        elif tag == "img":
            alt = _HTML_WS.sub(" ", a.get("alt", "")).strip()
            if alt and len(alt) < 200:
                self._text(alt)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            if tag in _SKIP:
                # close up to the matching tag (tolerates unclosed inner skip tags)
                if tag in self.skip:
                    while self.skip and self.skip.pop() != tag:
                        pass
            return
        if tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break(1 if self.lists else 2)
        elif tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self._break(2)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self._break(2)
        elif tag in _PARAGRAPH:
            self._break(2)
        elif tag in _LINE:
            self._break(1)
        elif tag == "table":
            self._break(2)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            self._close_link(href, start)

    def _close_link(self, href: str, start: int) -> None:
        label = "".join(self.out[start:]).strip()
        target = href
        if target.lower().startswith("mailto:"):
            target = unquote(target[7:].split("?", 1)[0])
        elif not target.lower().startswith(("http://", "https://")):
            return  # javascript:, cid:, anchors, relative links: nothing useful to show
        if not label or len(target) > MAX_LINK_CHARS:
            return
        bare = target.rstrip("/").lower()
        shown = label.rstrip("/").lower()
        if bare == shown or bare.split("://", 1)[-1] == shown.split("://", 1)[-1]:
            return
        self._emit(f" ({target})")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self._text(data)

    def _text(self, data: str) -> None:
        data = _CONTROL.sub("", data)
        if self.pre:
            self._emit(data.replace("\r\n", "\n").replace("\r", "\n"))
            self.space = False
            return
        collapsed = _HTML_WS.sub(" ", data)
        if not collapsed:
            return
        if collapsed == " ":
            if not self.at_line_start and not self.pending_break:
                self.space = True
            return
        lead = collapsed.startswith(" ")
        trail = collapsed.endswith(" ")
        words = collapsed.strip(" ")
        if (lead or self.space) and not self.at_line_start and not self.pending_break:
            if self.out and not self.out[-1].endswith((" ", "\n")):
                words = " " + words
        self._emit(words)
        self.space = trail


def html_to_text(markup: str, *, limit: int = MAX_OUTPUT_CHARS, links: bool = True) -> str:
    """Readable text of an HTML document or fragment (see the module docstring).
    ``links=False`` leaves out link targets (a snippet has no room for them)."""
    if not markup:
        return ""
    parser = _Converter(limit, links)
    try:
        parser.feed(markup[:MAX_INPUT_CHARS])
        parser.close()
        text = "".join(parser.out)
    except Exception:  # noqa: BLE001 - HTMLParser is lenient, but be sure
        text = html.unescape(re.sub(r"<[^>]*>", " ", markup[:MAX_INPUT_CHARS]))
    return tidy_text(text)[:limit]


_TRAILING_WS = re.compile(r"[ \t\u00a0]+\n")
_MANY_BREAKS = re.compile(r"\n{3,}")
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff]")


def tidy_text(text: str) -> str:
    """Plain text for a chat: LF line ends, no control characters, no trailing blanks on a
    line, at most one empty line in a row, no blank start or end."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TEXT_CONTROL.sub("", text)
    text = _TRAILING_WS.sub("\n", text + "\n")
    text = _MANY_BREAKS.sub("\n\n", text)
    return text.strip("\n").rstrip()


def unflow(text: str, *, delsp: bool = False) -> str:
    """Undo format=flowed (RFC 3676): a line ending in a space continues on the next line
    (with the same quote depth); space-stuffing is removed. The signature separator stays."""
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    buf: str | None = None
    buf_depth = -1
    for raw in lines:
        depth = len(raw) - len(raw.lstrip(">"))
        line = raw[depth:]
        if line.startswith(" "):
            line = line[1:]  # space-stuffing (or the space after the quote marks)
        flowed = line.endswith(" ") and line != "-- "
        if buf is not None and depth == buf_depth:
            buf += line
        else:
            if buf is not None:
                out.append((">" * buf_depth + " " if buf_depth else "") + buf)
            buf, buf_depth = line, depth
        if flowed:
            if delsp:
                buf = buf[:-1]
            continue
        out.append((">" * buf_depth + " " if buf_depth else "") + buf)
        buf, buf_depth = None, -1
    if buf is not None:
        out.append((">" * buf_depth + " " if buf_depth else "") + buf)
    return "\n".join(out)
