"""Turning what mail servers send into text a chat can show, without ever raising.

Real mail is messy: RFC 2047 words in odd or unknown charsets (koi8-r, windows-1251, made-up
names), raw 8-bit headers, broken base64, HTML-only bodies, 50 KB subjects. Every function
here degrades to "best effort text" instead of failing.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
from datetime import UTC, datetime

from mail.html2text import html_to_text

MAX_HEADER_CHARS = 998  # storage limit for subject / names / message id
SNIPPET_CHARS = 200
SNIPPET_HTML_CHARS = 4 * SNIPPET_CHARS  # text an HTML body is turned into for a snippet

_CHARSET_ALIASES = {
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "win-1251": "cp1251",
    "win1251": "cp1251",
    "cp-1251": "cp1251",
    "x-cp1251": "cp1251",
    "windows-1251": "cp1251",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-8-i": "iso-8859-8",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-user-defined": "cp1252",
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "x-unknown": "",
    "unknown-8bit": "",
    "unknown": "",
    "default": "",
}


def lookup_charset(name: str | None) -> str | None:
    """A Python codec name for a MIME charset label, or None if unknown/unsafe."""
    if not name:
        return None
    label = name.strip().strip('"').split("*", 1)[0].lower()
    label = _CHARSET_ALIASES.get(label, label)
    if not label or len(label) > 40:
        return None
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    # only text encodings (no base64_codec, rot13, zlib, ...)
    if not getattr(info, "_is_text_encoding", True):
        return None
    if info.name in {"utf-7"}:  # rarely legitimate, and a classic XSS vector
        return None
    return info.name


def strict_decode(data: bytes, codec: str) -> str | None:
    """Strict decode; a multi-byte character cut at the very end (partial fetch) is
    dropped instead of failing the whole text."""
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and exc.start > 0:
            try:
                return data[: exc.start].decode(codec)
            except UnicodeDecodeError:
                return None
        return None
    except LookupError:
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> str:
    """Decode with the declared charset; if that is wrong, UTF-8, then windows-1251 (the
    usual mislabelling in Russian mail)."""
    if not data:
        return ""
    codec = lookup_charset(charset)
    for candidate in dict.fromkeys(c for c in (codec, "utf-8", "cp1251") if c and c != "ascii"):
        text = strict_decode(data, candidate)
        if text is not None:
            return text
    return data.decode(codec or "utf-8", "replace")


_CYRILLIC_CODECS = frozenset({"cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866", "mac-cyrillic"})


def _single_byte(codec: str) -> bool:
    return (
        codec in _CYRILLIC_CODECS
        or codec.startswith(("iso8859-", "cp125", "latin", "mac-", "koi8", "cp4", "cp8"))
        or codec in ("ascii", "utf-8")
    )


def _case(text: str) -> tuple[int, int]:
    lower = upper = 0
    for ch in text:
        if "а" <= ch <= "я" or ch == "ё":
            lower += 1
        elif "А" <= ch <= "Я" or ch == "Ё":
            upper += 1
    return lower, upper


def _cyrillic_guess(data: bytes, prefer: str | None = None) -> str | None:
    """windows-1251 or koi8-r text, whichever reads like Russian (mostly lower-case letters),
    or None when neither looks Cyrillic."""
    best: tuple[int, str] | None = None
    for codec in dict.fromkeys(c for c in (prefer, "cp1251", "koi8-r") if c):
        text = data.decode(codec, "replace")
        lower, upper = _case(text)
        high = sum(1 for b in data if b >= 0x80)
        if lower + upper < max(1, high // 2) or lower < upper:
            continue
        score = lower - upper + (1 if codec == prefer else 0)
        if best is None or score > best[0]:
            best = (score, text)
    return best[1] if best else None


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part or header in the charset the bytes are really in: the declared
    one unless the bytes say otherwise (valid UTF-8 wins over a single-byte label; koi8-r vs
    windows-1251 confusion is settled by letter case). Used for snippets and for a letter read
    in full alike. Never raises."""
    if not data:
        return ""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    codec = lookup_charset(charset)
    if codec and not _single_byte(codec):  # utf-16, shift_jis, gb18030, ...: trust the label
        text = strict_decode(data, codec)
        if text is not None:
            return text
    text = strict_decode(data, "utf-8")
    if text is not None:
        return text
    if codec in _CYRILLIC_CODECS:
        return _cyrillic_guess(data, codec) or data.decode(codec, "replace")
    if codec and codec not in ("ascii", "utf-8"):
        declared = data.decode(codec, "replace")
        letters = [ch for ch in declared if ch.isalpha()]
        foreign = sum(1 for ch in letters if not ch.isascii())
        if foreign >= 4 and foreign * 2 > len(letters):  # Latin label on Cyrillic bytes?
            return _cyrillic_guess(data) or declared
        return declared
    return _cyrillic_guess(data) or data.decode("cp1252", "replace")


# --------------------------------------------------------------------------- RFC 2047
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,60})\?([bBqQ])\?([^?\s]*)\?=")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")


def b64decode_lenient(data: bytes) -> bytes:
    """Decode base64 ignoring junk and a truncated tail (broken mailers, partial fetches)."""
    clean = _B64_JUNK.sub(b"", data)
    rest = len(clean) % 4
    if rest == 1:  # can't be completed: a truncated tail
        clean = clean[:-1]
    elif rest:
        clean += b"=" * (4 - rest)
    try:
        return base64.b64decode(clean)
    except (binascii.Error, ValueError):
        return b""


def _q_decode(text: str) -> bytes:
    raw = text.replace("_", " ").encode("latin-1", "replace")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x3D and _HEX2.fullmatch(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        out.append(c)
        i += 1
    return bytes(out)


def decode_words(value: str | None, fallback_charset: str | None = None) -> str:
    """Decode RFC 2047 encoded words. Adjacent words of one charset are joined before
    decoding (mailers split multi-byte characters across words)."""
    if not value:
        return ""
    if "=?" not in value:
        return value
    pieces: list[tuple[str | None, bytes | str]] = []  # (charset, bytes) or (None, text)
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        if between and not (between.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, between))
        charset, enc, text = m.group(1), m.group(2).lower(), m.group(3)
        data = b64decode_lenient(text.encode("ascii", "ignore")) if enc == "b" else _q_decode(text)
        cs = charset.split("*", 1)[0].lower()
        if pieces and pieces[-1][0] == cs:
            prev = pieces[-1][1]
            assert isinstance(prev, bytes)
            pieces[-1] = (cs, prev + data)
        else:
            pieces.append((cs, data))
        pos = m.end()
    if pos < len(value):
        pieces.append((None, value[pos:]))
    out: list[str] = []
    for cs, item in pieces:
        if isinstance(item, str):
            out.append(item)
        else:
            out.append(decode_bytes(item, cs or fallback_charset))
    return "".join(out)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_WS = re.compile(r"\s+")


def clean_line(text: str, limit: int = MAX_HEADER_CHARS) -> str:
    """One line of text: control characters dropped, whitespace collapsed, truncated."""
    text = _CONTROL.sub("", text or "")
    text = _WS.sub(" ", text).strip()
    return truncate(text, limit)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)].rstrip() + "…"


def header_text(
    value: str | None, fallback_charset: str | None = None, limit: int = MAX_HEADER_CHARS
) -> str:
    """A header value for display: unfolded, RFC 2047 decoded, cleaned, truncated."""
    if not value:
        return ""
    # decode only a bounded prefix: a 50 KB subject needs no more than this to fill `limit`
    value = value[: max(limit * 8, 4096)]
    value = re.sub(r"\r?\n[ \t]", " ", value)
    try:
        decoded = decode_words(value, fallback_charset)
    except Exception:  # noqa: BLE001 - never let a header break an import
        decoded = value
    return clean_line(decoded, limit)


def raw_header_str(data: bytes, fallback_charset: str | None = None) -> str:
    """Header bytes to str: 8-bit headers are UTF-8 nowadays, else the body's charset."""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return decode_bytes(data, fallback_charset or "cp1251")


def parse_headers(data: bytes) -> dict[str, str]:
    """Parse a header block into {lower-case name: raw value (unfolded)}; first one wins."""
    text = raw_header_str(data)
    out: dict[str, str] = {}
    name: str | None = None
    buf: list[str] = []

    def flush() -> None:
        if name is not None and name not in out:
            out[name] = " ".join(s.strip() for s in buf).strip()

    for line in re.split(r"\r?\n", text):
        if not line:
            if name is not None:
                break
            continue
        if line[0] in " \t" and name is not None:
            buf.append(line)
            continue
        flush()
        key, sep, rest = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            name = None
            buf = []
            continue
        name = key.strip().lower()
        buf = [rest]
    flush()
    return out


def content_type_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = re.search(r'charset\s*=\s*"?([^";\s]+)', content_type, re.IGNORECASE)
    return m.group(1) if m else None


def parse_address(value: str | None, fallback_charset: str | None = None) -> tuple[str, str]:
    """(display name, address) of the first mailbox in a From-like header."""
    if not value:
        return "", ""
    try:
        pairs = email.utils.getaddresses([value[:8192]])
    except Exception:  # noqa: BLE001
        pairs = []
    for name, addr in pairs:
        if name or addr:
            return header_text(name, fallback_charset), clean_line(addr, MAX_HEADER_CHARS)
    return header_text(value, fallback_charset), ""


def format_addresses(
    value: str | None, fallback_charset: str | None = None, limit: int = 2000
) -> str:
    """A To/Cc header as 'Name <a@b>, c@d' (decoded, cleaned)."""
    if not value:
        return ""
    try:
        pairs = email.utils.getaddresses([value[:16384]])
    except Exception:  # noqa: BLE001
        return header_text(value, fallback_charset, limit)
    parts = []
    for name, addr in pairs:
        name = header_text(name, fallback_charset, 200)
        addr = clean_line(addr, 320)
        if name and addr:
            parts.append(f"{name} <{addr}>")
        elif addr or name:
            parts.append(addr or name)
    return truncate(", ".join(parts), limit)


def parse_date(value: str | None) -> datetime | None:
    """An aware datetime from a Date header (naive -> UTC), or None."""
    if not value:
        return None
    try:
        dt = email.utils.parsedate_to_datetime(value.strip()[:200])
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def parse_internaldate(value: str | None) -> datetime | None:
    """IMAP INTERNALDATE ("17-Jul-1996 02:44:25 -0700")."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


# --------------------------------------------------------------------------- bodies
def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding leniently (partial data is fine)."""
    enc = (encoding or "").strip().lower()
    if enc == "base64":
        return b64decode_lenient(data)
    if enc == "quoted-printable":
        # a partial fetch may end inside "=XX": drop a dangling escape
        tail = data[-2:]
        if b"=" in tail:
            data = data[: len(data) - 2 + tail.index(b"=")]
        try:
            return binascii.a2b_qp(data)
        except (binascii.Error, ValueError):
            return data
    return data


def make_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """First ~limit characters of readable text, whitespace collapsed, cut at a word."""
    text = _CONTROL.sub("", text or "").replace("\ufffd", "")
    text = _WS.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def body_text(
    data: bytes,
    *,
    subtype: str,
    charset: str | None,
    encoding: str | None,
    html_chars: int = SNIPPET_HTML_CHARS,
) -> str:
    """Decoded readable text of a (possibly partial) text/plain or text/html body part
    (an HTML part gives at most `html_chars` characters of text)."""
    raw = decode_transfer(data, encoding)
    if not raw:
        return ""
    text = decode_text(raw, charset)
    if subtype.lower() == "html":
        text = html_to_text(text, limit=html_chars, links=False)
    return text
