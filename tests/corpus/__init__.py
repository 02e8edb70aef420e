"""Ugly letters for the reader tests, each with what reading it must give.

Built here rather than stored as .eml files because most of them carry raw 8-bit bytes in
legacy charsets, broken encodings or megabytes of data. Every raw letter is written with LF
and sent with CRLF line ends (``crlf``), as it arrives from an MTA.
"""

from __future__ import annotations

import base64
import os
import quopri
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP


@dataclass
class Sample:
    raw: bytes
    subject: str | None = None  # exact expected subject (None: not checked)
    from_name: str | None = None
    from_addr: str | None = None
    text: str | None = None  # exact expected text
    text_has: tuple[str, ...] = ()
    text_lacks: tuple[str, ...] = ()
    attachments: list[tuple[str, str]] | None = None  # (filename, content type), in order
    truncated: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)  # 76-character lines


def word(text: str, charset: str = "utf-8", enc: str = "B") -> str:
    data = text.encode(charset)
    if enc == "B":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    return f"=?{charset}?Q?{quopri.encodestring(data, header=True).decode()}?="


# --------------------------------------------------------------------------- the letters
NESTED = crlf(
    f"""From: {word("Иван Петров")} <ivan@example.ru>
To: a@example.org, "B, Person" <b@example.org>
Cc: c@example.org
Subject: Nested parts
Date: Tue, 3 Jun 2025 10:00:00 +0300
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="m1"

This is a multi-part message in MIME format.
--m1
Content-Type: multipart/alternative; boundary="a1"

--a1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Plain version: =D0=BF=D1=80=D0=B8=D0=B2=D0=B5=D1=82
--a1
Content-Type: multipart/related; boundary="r1"; type="text/html"

--r1
Content-Type: text/html; charset=utf-8

<html><body><p>HTML version</p><img src=3D"cid:logo@x"></body></html>
--r1
Content-Type: image/png; name="logo.png"
Content-ID: <logo@x>
Content-Disposition: inline; filename="logo.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--r1--
--a1--
--m1
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--m1--
""".encode()
)

HTML_ONLY = crlf(
    b"""From: News <news@example.com>
To: you@example.org
Subject: HTML only
MIME-Version: 1.0
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: 8bit

<!DOCTYPE html>
<html><head><title>Newsletter title</title>
<style type="text/css">body { color: red; } .x { display:none }</style>
<script>alert("xss")</script></head>
<body>
<h1>Total &amp; more</h1>
<p>Caf&eacute; &lt;open&gt; &#8212; &#x263A; &nbsp;nbsp</p>
<table border="1"><tr><th>Item</th><th>Qty</th></tr>
<tr><td>Apple</td><td>3</td></tr><tr><td>Pear</td><td>5</td></tr></table>
<p>Read <a href="https://example.com/article?id=1&amp;x=2">the article</a>.</p>
<script type="text/javascript">document.write("evil")</script>
<noscript>enable js</noscript>
</body></html>
"""
)

KOI8R_TEXT = "Съешь же ещё этих мягких французских булок, да выпей чаю."
KOI8R = crlf(
    b"From: "
    + word("Пётр", "windows-1251", "Q").encode()
    + b""" <petr@example.ru>
To: you@example.org
Subject: """
    + word("Привет из КОИ-8", "koi8-r").encode()
    + b"""
MIME-Version: 1.0
Content-Type: text/plain; charset=koi8-r
Content-Transfer-Encoding: 8bit

"""
    + KOI8R_TEXT.encode("koi8-r")
    + b"\n"
)

CP1251_TEXT = "Проверка кодировки windows-1251: «ёлки-палки» №5"
_split = "Тест разбитого заголовка".encode()
CP1251 = crlf(
    f"""From: sender@example.ru
To: you@example.org
Subject: =?UTF-8?B?{base64.b64encode(_split[:7]).decode()}?=
 =?UTF-8?B?{base64.b64encode(_split[7:]).decode()}?=
MIME-Version: 1.0
Content-Type: text/plain; charset="windows-1251"
Content-Transfer-Encoding: quoted-printable

""".encode()
    + quopri.encodestring(CP1251_TEXT.encode("cp1251"))
    + b"\n"
)

_broken = base64.b64encode("Broken base64 still reads: ёлка и палка".encode()).decode()
BROKEN_B64 = crlf(
    f"""From: broken@example.org
To: you@example.org
Subject: =?utf-8?B?QnJva2VuIGVuY29kZWQgd29yZA?= and =?bogus?Q?x?= end
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{_broken[:20]}!!! {_broken[20:40]}
  {_broken[40:].rstrip("=")}
--b
Content-Type: application/octet-stream; name="junk.bin"
Content-Disposition: attachment; filename="junk.bin"
Content-Transfer-Encoding: base64

@@@@ not base64 at all @@@@
--b--
""".encode()
)

WRONG_CHARSET = crlf(
    f"""From: wrong@example.org
To: you@example.org
Subject: =?x-unknown?B?{base64.b64encode("Неизвестная кодировка".encode()).decode()}?=
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: 8bit

""".encode()
    + "Неверная кодировка: на самом деле UTF-8.".encode()
    + b"\n"
)

UTF8_LABEL_CP1251 = crlf(
    b"""From: label@example.org
To: you@example.org
Subject: utf-8 label on windows-1251 bytes
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

"""
    + "Это написано в windows-1251, а объявлено utf-8.".encode("cp1251")
    + b"\n"
)

UNDECLARED_TEXT = "Письмо без объявленной кодировки, в КОИ-8. Съешь ещё булок."
UNDECLARED = crlf(
    "From: Отправитель <raw@example.ru>\n".encode()
    + b"To: you@example.org\n"
    + "Subject: Тема без кодировки\n".encode()
    + b"""MIME-Version: 1.0
Content-Type: text/plain

"""
    + UNDECLARED_TEXT.encode("koi8-r")
    + b"\n"
)

EMPTY = crlf(
    b"""From: empty@example.org
To: you@example.org
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

"""
)

INJECTION_BODY = (
    '<b>not bold</b> </code> &amp; & <a href="http://evil.example">click</a>'
    " <tg-spoiler>x</tg-spoiler> <pre>"
)
INJECTION = crlf(
    b"""From: "<b>Boss</b> </code> & <a href=\\"http://x\\">" <boss@example.com>
To: "</pre><i>" <you@example.org>
Subject: </code><b>Pay</b> & <a href="http://evil.example">now</a> &amp;
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

"""
    + INJECTION_BODY.encode()
    + b"\n"
)

RFC2231 = crlf(
    """From: files@example.org
To: you@example.org
Subject: Attachments with odd names
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="f"

--f
Content-Type: text/plain; charset=utf-8

Files attached.
--f
Content-Type: application/pdf
Content-Disposition: attachment;
 filename*=utf-8''%D0%BE%D1%82%D1%87%D1%91%D1%82.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--f
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment;
 filename*0*=utf-8''%D0%B4%D0%BB%D0%B8;
 filename*1*=%D0%BD%D0%BD%D0%BE%D0%B5;
 filename*2=".txt"

long name, RFC 2231 continuations
--f
Content-Type: image/jpeg; name="=?UTF-8?B?0YTQvtGC0L4uanBn?="
Content-Disposition: attachment
Content-Transfer-Encoding: base64

/9j/4AAQ
--f
Content-Type: application/x-msdownload; name="evil.exe"
Content-Disposition: attachment; filename="..\\\\..\\\\windows\\\\evil.exe"
Content-Transfer-Encoding: base64

TVqQAA==
--f
Content-Type: application/zip
Content-Transfer-Encoding: base64

UEsDBA==
--f
Content-Type: application/msword
Content-Disposition: attachment; filename="résumé.doc"
Content-Transfer-Encoding: base64

0M8R4A==
--f--
""".encode()
)

SMALL_DATA = bytes(range(256)) * 20 + b"\r\n\x00end"
CSV_DATA = b"a,b\r\n1,2\r\n3,4"
SMALL_ATTACHMENT = crlf(
    b"""From: data@example.org
To: you@example.org
Subject: Small attachments
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="s"

--s
Content-Type: text/plain; charset=utf-8

Two files.
--s
Content-Type: application/octet-stream; name="data.bin"
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

"""
    + b64(SMALL_DATA)
    + b"""--s
Content-Type: text/csv; name="table.csv"
Content-Disposition: attachment; filename="table.csv"

"""
    + CSV_DATA
    + b"""
--s--
"""
)

FLOWED = crlf(
    b"""From: flowed@example.org
To: you@example.org
Subject: format=flowed
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8; format=flowed

"""
    # a line ending in a space goes on in the next one; "-- " is the signature separator
    + b"This is a flowed \nparagraph that goes on.\n> a quoted \n> line\n-- \nsig\n"
)

CALENDAR = crlf(
    b"""From: boss@example.org
To: you@example.org
Subject: Meeting
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="c"

--c
Content-Type: text/plain; charset=utf-8

Meeting on Monday.
--c
Content-Type: text/html; charset=utf-8

<p>Meeting on <b>Monday</b>.</p>
--c
Content-Type: text/calendar; charset=utf-8; method=REQUEST

BEGIN:VCALENDAR
END:VCALENDAR
--c--
"""
)

FORWARDED = crlf(
    """From: fw@example.org
To: you@example.org
Subject: Fwd: the original
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="w"

--w
Content-Type: text/plain; charset=utf-8

See below.
--w
Content-Type: message/rfc822

From: orig@example.org
To: fw@example.org
Subject: Исходное письмо
Content-Type: text/plain; charset=utf-8

The original text.
--w--
""".encode()
)

BLANK_PLAIN = crlf(
    b"""From: stub@example.org
To: you@example.org
Subject: Plain stub
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="p"

--p
Content-Type: text/plain; charset=utf-8


--p
Content-Type: text/html; charset=utf-8

<div>Only the <i>HTML</i> part has words.</div>
--p--
"""
)

NOT_TEXT = crlf(
    b"""From: scanner@example.org
To: you@example.org
Subject: Scan
MIME-Version: 1.0
Content-Type: application/pdf; name="scan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
"""
)


def long_subject() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "long@example.org"
    msg["To"] = "you@example.org"
    msg["Subject"] = ("Очень длинная тема " * 2700)[:50_000]
    msg.set_content("Short body.")
    return msg.as_bytes()


def long_body_text() -> str:
    """30 000 characters: paragraphs, lines, Cyrillic, emoji, characters HTML must escape."""
    lines: list[str] = []
    n = 0
    while sum(len(x) + 1 for x in lines) < 30_000:
        n += 1
        lines.append(f"Line {n}: <b>&amp;</b> текст & «кавычки» 👍🏽 " + "слово " * (n % 17))
        lines[-1] = lines[-1].rstrip()
        if n % 7 == 0:
            lines.append("")
    text = "\n".join(lines)[:30_000].rstrip()
    return text


def long_body() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "long@example.org"
    msg["To"] = "you@example.org"
    msg["Subject"] = "Long body"
    msg.set_content(long_body_text())
    return msg.as_bytes()


BIG_SIZE = 10 * 1024 * 1024


def big_attachment() -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "big@example.org"
    msg["To"] = "you@example.org"
    msg["Subject"] = "Big attachment"
    msg.set_content("The file is attached.")
    msg.add_attachment(
        os.urandom(BIG_SIZE), maintype="application", subtype="octet-stream", filename="big.bin"
    )
    return msg.as_bytes()


CORPUS: dict[str, Sample] = {
    "nested": Sample(
        NESTED,
        subject="Nested parts",
        from_name="Иван Петров",
        from_addr="ivan@example.ru",
        text="Plain version: привет",
        attachments=[("report.pdf", "application/pdf")],
    ),
    "html_only": Sample(
        HTML_ONLY,
        text_has=(
            "Total & more",
            "Café <open> — ☺",
            "Item | Qty",
            "Apple | 3",
            "Pear | 5",
            "the article (https://example.com/article?id=1&x=2)",
        ),
        text_lacks=("alert", "color", "evil", "Newsletter title", "enable js", "<p>"),
        attachments=[],
    ),
    "koi8r": Sample(
        KOI8R,
        subject="Привет из КОИ-8",
        from_name="Пётр",
        text=KOI8R_TEXT,
    ),
    "cp1251_qp": Sample(CP1251, subject="Тест разбитого заголовка", text=CP1251_TEXT),
    "broken_base64": Sample(
        BROKEN_B64,
        text_has=("Broken base64 still reads",),
        attachments=[("junk.bin", "application/octet-stream")],
    ),
    "wrong_charset": Sample(
        WRONG_CHARSET,
        subject="Неизвестная кодировка",
        text="Неверная кодировка: на самом деле UTF-8.",
    ),
    "utf8_label_cp1251": Sample(
        UTF8_LABEL_CP1251, text="Это написано в windows-1251, а объявлено utf-8."
    ),
    "undeclared_8bit": Sample(
        UNDECLARED,
        subject="Тема без кодировки",
        from_name="Отправитель",
        text=UNDECLARED_TEXT,
    ),
    "empty": Sample(EMPTY, subject="", text="", attachments=[]),
    "injection": Sample(
        INJECTION,
        subject='</code><b>Pay</b> & <a href="http://evil.example">now</a> &amp;',
        from_name='<b>Boss</b> </code> & <a href="http://x">',
        from_addr="boss@example.com",
        text=INJECTION_BODY,
    ),
    "rfc2231": Sample(
        RFC2231,
        text="Files attached.",
        attachments=[
            ("отчёт.pdf", "application/pdf"),
            ("длинное.txt", "text/plain"),
            ("фото.jpg", "image/jpeg"),
            ("evil.exe", "application/x-msdownload"),
            ("part-6.zip", "application/zip"),
            ("résumé.doc", "application/msword"),
        ],
    ),
    "small_attachment": Sample(
        SMALL_ATTACHMENT,
        text="Two files.",
        attachments=[("data.bin", "application/octet-stream"), ("table.csv", "text/csv")],
    ),
    "flowed": Sample(
        FLOWED, text="This is a flowed paragraph that goes on.\n> a quoted line\n--\nsig"
    ),
    "calendar": Sample(
        CALENDAR, text="Meeting on Monday.", attachments=[("part-3.ics", "text/calendar")]
    ),
    "forwarded": Sample(
        FORWARDED,
        text="See below.",
        attachments=[("Исходное письмо.eml", "message/rfc822")],
    ),
    "blank_plain": Sample(BLANK_PLAIN, text="Only the HTML part has words."),
    "not_text": Sample(NOT_TEXT, text="", attachments=[("scan.pdf", "application/pdf")]),
    "long_subject": Sample(long_subject(), text="Short body."),
    "long_body": Sample(long_body(), text=long_body_text()),
}
