"""Pure parts of the mail layer: validators, providers, HostGuard, classification, MIME,
IMAP response parsing. No network."""

from __future__ import annotations

import socket
import ssl

import pytest

from mail import mime
from mail.html2text import html_to_text
from mail.importer import _uid_set, analyse_structure, parse_fetch, parse_select
from mail.netguard import HostGuard, classify_imap_login, classify_smtp_auth, require_ok
from mail.providers import load_providers, provider_by_id, provider_for_domain, provider_for_mx
from mail.tls import make_ssl_context
from mail.types import FailureKind, MailCheckError, Protocol, Security
from mail.validate import parse_email, parse_host, parse_port


# --------------------------------------------------------------------------- validators
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user@example.com", "user@example.com"),
        ("  User.Name+tag@EXAMPLE.com ", "User.Name+tag@example.com"),
        ("ivan@почта.рф", "ivan@почта.рф"),
        ("a@b", None),
        ("a@@b.com", None),
        ("a b@c.com", None),
        ("a@b c.com", None),
        ("a\n@b.com", None),
        ("@b.com", None),
        ("a@", None),
        ("a.@b.com", None),
        ("x" * 65 + "@b.com", None),
        ("a@" + "b" * 250 + ".com", None),
        ("a@-b.com", None),
        ("a@b.123", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_email(text, expected) -> None:
    assert parse_email(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("993", 993),
        (" 587 ", 587),
        ("1", 1),
        ("65535", 65535),
        ("0", None),
        ("65536", None),
        ("-1", None),
        ("9 3", None),
        ("abc", None),
        ("", None),
        ("٣", None),
        (465, 465),
        (True, None),
    ],
)
def test_parse_port(text, expected) -> None:
    assert parse_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("imap.example.com", "imap.example.com"),
        ("IMAP.Example.COM.", "imap.example.com"),
        ("localhost", "localhost"),
        ("127.0.0.1", "127.0.0.1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("почта.рф", "xn--80a1acny.xn--p1ai"),
        ("imap://example.com", None),
        ("example.com/path", None),
        ("example.com:993", None),
        ("exa mple.com", None),
        ("-bad.com", None),
        ("a" * 64 + ".com", None),
        ("a." * 127 + "com", None),
        ("", None),
        ("user@example.com", None),
    ],
)
def test_parse_host(text, expected) -> None:
    assert parse_host(text) == expected


# --------------------------------------------------------------------------- providers
def test_providers_in_order() -> None:
    ids = [p.id for p in load_providers()]
    assert ids == ["gmail", "mail.ru", "yandex", "rambler", "yahoo", "outlook.com", "office365"]
    assert load_providers()[0] is load_providers()[0]  # cached


def test_provider_fields() -> None:
    yandex = provider_by_id("yandex")
    assert yandex is not None
    assert yandex.name("ru") == "Яндекс" and yandex.name("en") == "Yandex"
    assert yandex.name("ru-RU") == "Яндекс" and yandex.name("de") == "Yandex"
    assert "IMAP" in yandex.hint("en") and "IMAP" in yandex.hint("ru")
    assert yandex.imap_must_be_enabled is True
    assert yandex.imap_enable_path_ru and yandex.imap_enable_path_en
    assert yandex.servers.imap.port == 993 and yandex.servers.imap.security is Security.SSL
    gmail = provider_by_id("gmail")
    assert gmail is not None
    assert gmail.app_password_required is True
    assert gmail.app_password_url == "https://myaccount.google.com/apppasswords"
    assert gmail.oauth2 is not None and "notes" not in gmail.oauth2
    assert gmail.sources
    outlook = provider_by_id("outlook.com")
    assert outlook is not None and outlook.servers.smtp.security is Security.STARTTLS
    assert provider_by_id("nope") is None


@pytest.mark.parametrize(
    ("domain", "pid"),
    [
        ("gmail.com", "gmail"),
        ("GoogleMail.com", "gmail"),
        ("bk.ru", "mail.ru"),
        ("ya.ru", "yandex"),
        ("rambler.ru", "rambler"),
        ("ymail.com", "yahoo"),
        ("hotmail.co.uk", "outlook.com"),
        ("contoso.onmicrosoft.com", None),
        ("onmicrosoft.com", "office365"),
        ("user@yandex.ru", "yandex"),
        ("example.com", None),
        ("", None),
    ],
)
def test_provider_for_domain(domain, pid) -> None:
    found = provider_for_domain(domain)
    assert (found.id if found else None) == pid


def test_provider_for_mx() -> None:
    assert provider_for_mx("alt1.aspmx.l.google.com.").id == "gmail"  # type: ignore[union-attr]
    assert provider_for_mx("hotmail-com.olc.protection.outlook.com").id == "outlook.com"  # type: ignore[union-attr]
    assert provider_for_mx("x.mail.protection.outlook.com").id == "office365"  # type: ignore[union-attr]
    assert provider_for_mx("mx.example.com") is None


# --------------------------------------------------------------------------- HostGuard
def _resolver(*addresses: str):
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "ff02::1",
        "fe80::1%eth0",
    ],
)
async def test_guard_refuses(address) -> None:
    guard = HostGuard(resolver=_resolver(address))
    with pytest.raises(MailCheckError) as err:
        await guard.resolve("mail.example.com", 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.PRIVATE_ADDRESS
    assert err.value.protocol is Protocol.IMAP


async def test_guard_refuses_if_any_address_is_private() -> None:
    guard = HostGuard(resolver=_resolver("93.184.216.34", "10.0.0.1"))
    with pytest.raises(MailCheckError) as err:
        await guard.resolve("mail.example.com", 993, Protocol.SMTP)
    assert err.value.kind is FailureKind.PRIVATE_ADDRESS and err.value.protocol is Protocol.SMTP


async def test_guard_accepts_public_and_dedups() -> None:
    guard = HostGuard(resolver=_resolver("93.184.216.34", "93.184.216.34", "2606:2800:220:1::1"))
    assert await guard.resolve("mail.example.com", 993, Protocol.IMAP) == [
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]


async def test_guard_allow_private() -> None:
    guard = HostGuard(allow_private=True, resolver=_resolver("127.0.0.1"))
    assert await guard.resolve("localhost", 993, Protocol.IMAP) == ["127.0.0.1"]


async def test_guard_ip_literal_needs_no_resolver() -> None:
    calls = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return []

    with pytest.raises(MailCheckError) as err:
        await HostGuard(resolver=resolver).resolve("127.0.0.1", 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.PRIVATE_ADDRESS
    assert calls == []


@pytest.mark.parametrize("host", ["", " ", "imap://x.com", "a b.com", "x" * 254, "host/path", None])
async def test_guard_bad_names(host) -> None:
    with pytest.raises(MailCheckError) as err:
        await HostGuard(resolver=_resolver("93.184.216.34")).resolve(host, 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.HOST_NOT_FOUND


async def test_guard_unresolvable() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(MailCheckError) as err:
        await HostGuard(resolver=resolver).resolve("nonexistent.invalid", 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.HOST_NOT_FOUND
    with pytest.raises(MailCheckError) as err:
        await HostGuard(resolver=_resolver()).resolve("empty.example", 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.HOST_NOT_FOUND


async def test_guard_default_resolver_localhost() -> None:
    with pytest.raises(MailCheckError) as err:
        await HostGuard().resolve("localhost", 993, Protocol.IMAP)
    assert err.value.kind is FailureKind.PRIVATE_ADDRESS


# --------------------------------------------------------------------------- TLS
def test_ssl_context_verifies() -> None:
    ctx = make_ssl_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


# --------------------------------------------------------------------------- classification
@pytest.mark.parametrize(
    ("result", "text", "kind"),
    [
        (
            "NO",
            "[AUTHENTICATIONFAILED] LOGIN Invalid credentials or IMAP is disabled sc=ebI8JB0ug4Y1_290737_53p",
            FailureKind.IMAP_DISABLED,
        ),
        (
            "NO",
            "[ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        ("NO", "[AUTHENTICATIONFAILED] Invalid credentials (Failure)", FailureKind.AUTH_FAILED),
        (
            "NO",
            "[ALERT] Please log in via your web browser: https://support.google.com/mail/accounts/answer/78754 (Failure)",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (
            "NO",
            "NEOBHODIM parol prilozheniya https://help.mail.ru/mail/security/protection/external / Application password is REQUIRED",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        ("NO", "[AUTHENTICATIONFAILED] Authentication failed.", FailureKind.AUTH_FAILED),
        ("NO", "LOGIN failed.", FailureKind.AUTH_FAILED),
        ("NO", "AUTHENTICATE failed.", FailureKind.AUTH_FAILED),
        ("NO", "[UNAVAILABLE] IMAP access is disabled for this account", FailureKind.IMAP_DISABLED),
        ("NO", "IMAP access is disabled", FailureKind.IMAP_DISABLED),
        ("NO", "[ALERT] Your account is not enabled for IMAP use.", FailureKind.IMAP_DISABLED),
        ("BAD", "User is authenticated but not connected.", FailureKind.IMAP_DISABLED),
        (
            "BAD",
            "[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
            FailureKind.TLS_FAILED,
        ),
        ("BAD", "Error in IMAP command LOGIN: Invalid arguments.", FailureKind.PROTOCOL),
        ("NO", "Доступ для почтовых программ отключён", FailureKind.IMAP_DISABLED),
    ],
)
def test_classify_imap(result, text, kind) -> None:
    assert classify_imap_login(result, text) is kind


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (
            534,
            "5.7.9 Application-specific password required. For more information, go to\n5.7.9 https://support.google.com/mail/?p=InvalidSecondFactor",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (
            534,
            "5.7.14 <https://accounts.google.com/signin/continue?...> Please log in via your web browser and then try again.",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (535, "5.7.8 Username and Password not accepted.", FailureKind.AUTH_FAILED),
        (
            535,
            "5.7.0 NEOBHODIM parol prilozheniya https://help.mail.ru/mail/security/protection/external / Application password is REQUIRED",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (
            535,
            "5.7.139 Authentication unsuccessful, basic authentication is disabled. [BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (
            535,
            "5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
            FailureKind.AUTH_FAILED,
        ),
        (
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
            FailureKind.IMAP_DISABLED,
        ),
        (
            550,
            "5.7.30 Basic authentication is not supported for Client Submission",
            FailureKind.APP_PASSWORD_REQUIRED,
        ),
        (535, "Incorrect authentication data", FailureKind.AUTH_FAILED),
        (530, "5.7.0 Must issue a STARTTLS command first", FailureKind.TLS_FAILED),
        (454, "4.7.0 Temporary authentication failure", FailureKind.PROTOCOL),
    ],
)
def test_classify_smtp(code, text, kind) -> None:
    assert classify_smtp_auth(code, text) is kind


# --------------------------------------------------------------------------- MIME
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?UTF-8?B?0J/RgNC40LLQtdGC?=", "Привет"),
        ("=?utf-8?q?caf=C3=A9_au_lait?=", "café au lait"),
        ("=?koi8-r?B?8NLJ18XU?=", "Привет"),
        ("=?windows-1251?Q?=CF=F0=E8=E2=E5=F2?=", "Привет"),
        ("=?utf-8?B?0J/RgNC4?= =?utf-8?B?0LLQtdGC?=", "Привет"),  # split between words
        ("=?utf-8?B?0J/R?=\r\n =?utf-8?B?gNC40LLQtdGC?=", "Привет"),  # split inside a character
        ("Re: =?utf-8?Q?hi?= there", "Re: hi there"),
        ("=?x-unknown?Q?plain?=", "plain"),
        ("=?utf-8?B?####?=", ""),
        ("=?utf-7?B?K0JCOEVOQVE0LQ==?=", None),  # utf-7 refused: no crash, best effort
        ("plain subject", "plain subject"),
        ("", ""),
    ],
)
def test_header_text(raw, expected) -> None:
    value = mime.header_text(raw)
    if expected is not None:
        assert value == expected


def test_header_text_truncates_huge_subject() -> None:
    assert len(mime.header_text("x" * 50_000)) == 998
    assert len(mime.header_text("=?utf-8?B?" + "0J8" * 20_000 + "?=")) <= 998


def test_snippet_and_html() -> None:
    html = "<html><head><title>T</title><style>.a{}</style></head><body><div>Hi&nbsp;<b>there</b></div><p>line&amp;two</p><script>evil()</script></body></html>"
    assert mime.make_snippet(html_to_text(html)) == "Hi there line&two"
    long = "word " * 100
    snip = mime.make_snippet(long)
    assert len(snip) <= 201 and snip.endswith("…")
    assert mime.make_snippet("a\x00b\tc\n\nd") == "ab c d"
    assert html_to_text("<p>unclosed <b>tags").strip() == "unclosed tags"


def test_snippet_of_html_body_uses_the_one_converter() -> None:
    markup = (
        '<table><tr><td>Name</td><td>Value</td></tr></table><img alt="Logo">'
        '<p><a href="https://example.org/track?id=1">Open</a></p>'
    )
    text = mime.body_text(markup.encode(), subtype="html", charset="utf-8", encoding="7bit")
    assert mime.make_snippet(text) == "Name | Value Logo Open"  # no link target in a snippet
    assert "(https://example.org/track?id=1)" in html_to_text(markup)  # the letter keeps it
    # the declared charset loses to bytes that are plainly UTF-8 (as when reading in full)
    latin1_label = "Привет".encode()
    assert mime.body_text(latin1_label, subtype="plain", charset="iso-8859-1", encoding="") == "Привет"


def test_require_ok_reports_the_server_words() -> None:
    class Response:
        def __init__(self, result: str, lines: list[object]) -> None:
            self.result, self.lines = result, lines

    ok = Response("OK", [b"done"])
    assert require_ok(ok, "FETCH") is ok
    with pytest.raises(MailCheckError) as exc:
        require_ok(Response("NO", [b"* 1 EXISTS", b"[SERVERBUG] broken  ", b""]), "FETCH")
    assert exc.value.kind is FailureKind.PROTOCOL and exc.value.detail == "FETCH: [SERVERBUG] broken"
    with pytest.raises(MailCheckError) as exc:
        require_ok(Response("NO", [b"IMAP access is disabled for your account"]), "SELECT INBOX")
    assert exc.value.kind is FailureKind.IMAP_DISABLED
    with pytest.raises(MailCheckError) as exc:
        require_ok(Response("BAD", []), "LIST")
    assert exc.value.detail == "LIST: answered BAD"


def test_decode_transfer_and_bytes() -> None:
    assert mime.decode_transfer(b"0J/RgNC4", "base64").decode() == "При"
    assert mime.decode_transfer(b"0J/RgNC40L", "base64")  # truncated: no raise
    assert isinstance(mime.decode_transfer(b"!!! not base64 ###", "base64"), bytes)
    assert mime.decode_transfer(b"caf=C3=A9 =", "quoted-printable") == "café ".encode()
    assert mime.decode_bytes("тест".encode("cp1251"), "utf-8") == "тест"  # mislabeled
    assert mime.decode_bytes(b"\xff\xfe", "nonsense-charset")
    assert mime.decode_bytes("тест".encode("koi8-r"), "KOI8-R") == "тест"


def test_address_and_date() -> None:
    assert mime.parse_address("=?utf-8?B?0JjQstCw0L0=?= <ivan@example.org>") == (
        "Иван",
        "ivan@example.org",
    )
    assert mime.parse_address("bare@example.org") == ("", "bare@example.org")
    assert mime.parse_address(None) == ("", "")
    assert (
        mime.parse_date("Tue, 02 Jan 2024 09:00:00 +0300").utcoffset().total_seconds() == 3 * 3600
    )  # type: ignore[union-attr]
    assert mime.parse_date("yesterday-ish") is None
    assert mime.parse_date("Tue, 02 Jan 2024 09:00:00").tzinfo is not None  # type: ignore[union-attr]
    assert mime.parse_internaldate(" 2-Jan-2024 09:00:00 +0000") is not None
    assert mime.format_addresses('"A, B" <a@x.org>, c@y.org') == "A, B <a@x.org>, c@y.org"


# --------------------------------------------------------------------------- IMAP parsing
def test_parse_fetch_with_literals_and_odd_atoms() -> None:
    header = b"Subject: =?utf-8?Q?hi?=\r\nFrom: a@b.c\r\n\r\n"
    lines = [
        b'12 FETCH (UID 40 RFC822.SIZE 1234 INTERNALDATE " 2-Jan-2024 09:00:00 +0000" BODYSTRUCTURE '
        b'("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 12 1 NIL NIL NIL NIL) '
        b"BODY[HEADER.FIELDS (SUBJECT FROM)] {" + str(len(header)).encode() + b"}",
        bytearray(header),
        b")",
        b"13 FETCH (UID 41 BODY[1]<0> {5}",
        bytearray(b"a)b(c"),
        b" FLAGS (\\Seen))",
        b'14 FETCH (UID 42 BODY[TEXT]<0> "quoted \\" text")',
        b"Fetch completed.",
    ]
    records = parse_fetch(lines)
    assert [r["UID"] for r in records] == [b"40", b"41", b"42"]
    assert records[0]["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == header
    assert records[0]["INTERNALDATE"] == b" 2-Jan-2024 09:00:00 +0000"
    assert records[1]["BODY[1]"] == b"a)b(c"
    assert records[2]["BODY[TEXT]"] == b'quoted " text'


def test_parse_fetch_garbage_does_not_raise() -> None:
    assert parse_fetch([b"1 FETCH (UID", b"garbage ((((", b"OK"]) == []
    assert parse_fetch([b"OK"]) == []


def test_parse_select() -> None:
    lines = [
        b"FLAGS (\\Seen)",
        b"OK [UIDVALIDITY 1700000000] UIDs valid",
        b"60 EXISTS",
        b"0 RECENT",
        b"OK [UIDNEXT 61] Predicted next UID",
        b"[READ-WRITE] Select completed",
    ]
    assert parse_select(lines) == {"uidvalidity": 1700000000, "uidnext": 61, "exists": 60}


def test_uid_set() -> None:
    assert _uid_set([5, 1, 2, 3, 9, 10, 7]) == "1:3,5,7,9:10"


def _parse_bs(text: bytes):
    return parse_fetch([b"1 FETCH (UID 1 BODYSTRUCTURE " + text + b")", b"OK"])[0]["BODYSTRUCTURE"]


def test_structure_mixed_alternative_attachment() -> None:
    bs = _parse_bs(
        b'((("text" "plain" ("charset" "koi8-r") NIL NIL "quoted-printable" 10 1 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "base64" 100 2 NIL NIL NIL NIL) "alternative" ("boundary" "b2") NIL NIL NIL)'
        b'("application" "pdf" ("name" "a.pdf") NIL NIL "base64" 1000 NIL ("attachment" ("filename" "a.pdf")) NIL NIL)'
        b' "mixed" ("boundary" "b1") NIL NIL NIL)'
    )
    s = analyse_structure(bs)
    assert s.has_attachments
    best = s.best()
    assert best is not None and best.section == "1.1" and best.subtype == "plain"
    assert best.charset == "koi8-r" and best.encoding == "quoted-printable"


def test_structure_html_only_and_related_images() -> None:
    bs = _parse_bs(
        b'(("text" "html" ("charset" "utf-8") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)'
        b'("image" "png" ("name" "logo.png") "<logo>" NIL "base64" 100 NIL ("inline" NIL) NIL NIL) "related" NIL NIL NIL)'
    )
    s = analyse_structure(bs)
    assert not s.has_attachments
    assert s.best().section == "1" and s.best().subtype == "html"  # type: ignore[union-attr]


def test_structure_single_part_and_garbage() -> None:
    s = analyse_structure(_parse_bs(b'("text" "plain" NIL NIL NIL "8bit" 5 1)'))
    assert s.best().section == "1"  # type: ignore[union-attr]
    assert not s.has_attachments
    assert analyse_structure(None).best() is None
    assert analyse_structure([b"weird"]).best() is None
    forwarded = analyse_structure(
        _parse_bs(
            b'(("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 50 '
            b'(NIL "s" NIL NIL NIL NIL NIL NIL NIL NIL) ("text" "plain" NIL NIL NIL "7bit" 5 1) 3) "mixed" NIL NIL NIL)'
        )
    )
    assert forwarded.has_attachments and forwarded.best().section == "1"  # type: ignore[union-attr]


def test_structure_signature_and_calendar_as_the_reader_sees_them() -> None:
    signed = analyse_structure(
        _parse_bs(
            b'(("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'
            b'("application" "pgp-signature" ("name" "signature.asc") NIL NIL "7bit" 100 NIL NIL NIL NIL)'
            b' "signed" ("protocol" "application/pgp-signature") NIL NIL NIL)'
        )
    )
    assert signed.best().section == "1" and not signed.has_attachments  # type: ignore[union-attr]
    invite = analyse_structure(
        _parse_bs(
            b'(("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)'
            b'("text" "calendar" ("method" "REQUEST") NIL NIL "7bit" 50 2 NIL NIL NIL NIL)'
            b' "alternative" NIL NIL NIL)'
        )
    )
    assert invite.best().section == "1" and invite.has_attachments  # type: ignore[union-attr]
