"""Tiny scripted servers for fault injection at the network edge.

* `ScriptedImapServer`: speaks just enough IMAP (greeting, CAPABILITY, STARTTLS, LOGIN,
  AUTHENTICATE XOAUTH2/OAUTHBEARER, SELECT, LOGOUT) and answers LOGIN / AUTHENTICATE with a
  scripted provider text; SEARCH (UID SEARCH) with a scripted answer (e.g. BADCHARSET), and
  any command named in `hang_on` never (a server that stops answering). Implicit TLS or STARTTLS with a trustme certificate; every line it
  received is kept in `.received` (so a test can assert a password was never sent).
* `ScriptedSmtpServer`: greeting, EHLO (scripted extensions), STARTTLS, AUTH with a scripted
  (possibly multi-line) reply.

Both take a token login's client message with or without an initial response (IMAP: `+ `
when the command came without one), keep it decoded in `.sasl` as (mechanism, bytes), and,
when an error challenge is scripted for the mechanism (`xoauth2_challenge`,
`oauthbearer_challenge`), send it and insist on the answer the mechanism prescribes (an empty
line for XOAUTH2, "AQ==" = 0x01 for OAUTHBEARER, RFC 7628 3.2.3) before the scripted reply.
* `silent_server()`: accepts TCP connections and never says a word.
* `closed_port()`: a port nothing listens on.
* `AutoconfigHttpServer` + `FakeDiscoveryEnv`: a local aiohttp server that serves autoconfig
  XML per virtual host, and a DiscoveryEnv that maps the real autoconfig URLs, MX answers
  and probe targets to local servers (no DNS needed).

All servers run in the caller's event loop on 127.0.0.1 with a free port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from mail.discovery import probe_server
from mail.netguard import HostGuard
from mail.types import ServerSettings

HOST = "127.0.0.1"

# Real provider replies (see the mail layer's classification and its sources).
IMAP_TEXTS = {
    "yandex": "NO [AUTHENTICATIONFAILED] LOGIN invalid credentials or IMAP is disabled sc=cYXlpv732Cg1_010534_2-1e59ad28a72c",
    "gmail_app_password": "NO [ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833 (Failure)",
    "gmail_bad_password": "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
    "gmail_imap_disabled": "NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings page and enable your account for IMAP access. (Failure)",
    "mailru_app_password": "NO [AUTHENTICATIONFAILED] NEOBHODIM parol prilozheniya https://help.mail.ru/mail/security/protection/external / Application password is REQUIRED",
    "outlook": "NO LOGIN failed.",
    "outlook_not_connected": "BAD User is authenticated but not connected.",
    "generic": "NO [AUTHENTICATIONFAILED] Authentication failed.",
    "unavailable_disabled": "NO [UNAVAILABLE] IMAP access for this account is disabled",
    "rambler": "NO [AUTHENTICATIONFAILED] Access for mail programs is turned off in settings",
}
SMTP_TEXTS = {
    "gmail_app_password": (
        534,
        [
            "5.7.9 Application-specific password required. For more information, go to",
            "5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor 6a1803df08f44-8ffd82 - gsmtp",
        ],
    ),
    "gmail_bad_password": (
        535,
        [
            "5.7.8 Username and Password not accepted. For more information, go to",
            "5.7.8  https://support.google.com/mail/?p=BadCredentials - gsmtp",
        ],
    ),
    "mailru_app_password": (
        535,
        [
            "5.7.0 NEOBHODIM parol prilozheniya https://help.mail.ru/mail/security/protection/external / Application password is REQUIRED"
        ],
    ),
    "outlook_basic_disabled": (
        535,
        [
            "5.7.139 Authentication unsuccessful, basic authentication is disabled. [BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]"
        ],
    ),
    "outlook_bad_password": (
        535,
        [
            "5.7.139 Authentication unsuccessful, the user credentials were incorrect. [XX0P123CA0001.PROD.OUTLOOK.COM]"
        ],
    ),
    "office365_smtp_auth_disabled": (
        535,
        [
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
        ],
    ),
    "generic": (535, ["5.7.8 Error: authentication failed"]),
}
XOAUTH2_ERROR = base64.b64encode(
    b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
).decode()
# RFC 7628 3.2.2's example error
OAUTHBEARER_ERROR = base64.b64encode(
    b'{"status":"invalid_token","scope":"example_scope",'
    b'"openid-configuration":"https://example.com/.well-known/openid-configuration"}'
).decode()
# what a client must answer to an error challenge
SASL_ERROR_ANSWERS = {"XOAUTH2": b"", "OAUTHBEARER": b"AQ=="}


def _b64(data: bytes | str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b"<not base64>"


def closed_port() -> int:
    """A local port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class _Base:
    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.received: list[bytes] = []
        self.sasl: list[tuple[str, bytes]] = []
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, handler: Callable[..., object], tls: ssl.SSLContext | None) -> None:
        self.server = await asyncio.start_server(handler, HOST, 0, ssl=tls)  # type: ignore[arg-type]
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in list(self._writers):
            w.close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    def saw(self, needle: bytes) -> bool:
        return any(needle.upper() in line.upper() for line in self.received)

    async def __aenter__(self):  # noqa: ANN204
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class ScriptedImapServer(_Base):
    def __init__(
        self,
        *,
        login_reply: str = "OK [CAPABILITY IMAP4rev1 IDLE] Logged in",
        greeting: str = "* OK Scripted IMAP ready",
        capabilities: str = "IMAP4rev1 IDLE AUTH=PLAIN AUTH=XOAUTH2 SASL-IR",
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        advertise_starttls: bool = True,
        xoauth2_challenge: str | None = None,
        oauthbearer_challenge: str | None = None,
        bye_after_login: str | None = None,
        search: Callable[[str], tuple[list[str], str]] | None = None,
        hang_on: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.login_reply = login_reply
        # SEARCH / UID SEARCH: given the arguments (e.g. 'CHARSET UTF-8 FROM "x"'), the
        # untagged lines and the tagged status ("OK ...", "NO [BADCHARSET] ..."); without it BAD
        self.search = search
        # commands (upper case, "UID SEARCH" counts as "SEARCH") never answered: a hanging server
        self.hang_on = hang_on
        self.greeting = greeting
        self.capabilities = capabilities
        self.tls = tls
        self.starttls_ctx = starttls
        self.advertise_starttls = advertise_starttls
        self.challenges = {"XOAUTH2": xoauth2_challenge, "OAUTHBEARER": oauthbearer_challenge}
        self.bye_after_login = bye_after_login

    async def start(self) -> ScriptedImapServer:
        await self._serve(self._handle, self.tls)
        return self

    def _caps(self, secured: bool) -> str:
        caps = self.capabilities
        if not secured and self.starttls_ctx is not None and self.advertise_starttls:
            caps += " STARTTLS LOGINDISABLED"
        return caps

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        secured = self.tls is not None

        async def send(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        try:
            await send(self.greeting)
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                self.received.append(raw.rstrip(b"\r\n"))
                parts = raw.decode("utf-8", "replace").strip().split(" ", 2)
                if len(parts) < 2:
                    continue
                tag, cmd = parts[0], parts[1].upper()
                rest = parts[2] if len(parts) > 2 else ""
                if cmd == "UID" and rest:
                    sub, _, args = rest.partition(" ")
                    cmd, rest = sub.upper(), args
                if cmd in self.hang_on:
                    continue
                if cmd == "SEARCH" and self.search is not None:
                    untagged, status = self.search(rest)
                    for line in untagged:
                        await send(line)
                    await send(f"{tag} {status}")
                elif cmd == "CAPABILITY":
                    await send(f"* CAPABILITY {self._caps(secured)}")
                    await send(f"{tag} OK CAPABILITY completed")
                elif (
                    cmd == "STARTTLS"
                    and self.starttls_ctx is not None
                    and self.advertise_starttls
                    and not secured
                ):
                    await send(f"{tag} OK Begin TLS negotiation now")
                    await writer.start_tls(self.starttls_ctx)
                    secured = True
                elif cmd == "LOGIN":
                    await send(f"{tag} {self.login_reply}")
                    if self.bye_after_login is not None:
                        await send(f"* BYE {self.bye_after_login}")
                        writer.close()
                        return
                elif cmd == "AUTHENTICATE":
                    words = parts[2].split(" ") if len(parts) > 2 else [""]
                    mech = words[0].upper()
                    if len(words) > 1:
                        message = words[1]
                    else:  # no initial response (SASL-IR): ask for it
                        await send("+ ")
                        answer = await reader.readline()
                        self.received.append(answer.rstrip(b"\r\n"))
                        message = answer.decode("ascii", "replace").strip()
                    self.sasl.append((mech, _b64(message)))
                    challenge = self.challenges.get(mech)
                    if challenge is not None:
                        await send(f"+ {challenge}")
                        answer = await reader.readline()
                        self.received.append(answer.rstrip(b"\r\n"))
                        if answer.strip() != SASL_ERROR_ANSWERS[mech]:
                            await send(f"{tag} BAD wrong answer to the error challenge")
                            continue
                    await send(f"{tag} {self.login_reply}")
                elif cmd == "SELECT":
                    await send("* 0 EXISTS")
                    await send("* OK [UIDVALIDITY 1] UIDs valid")
                    await send("* OK [UIDNEXT 1] Predicted next UID")
                    await send(f"{tag} OK [READ-WRITE] Select completed")
                elif cmd == "LOGOUT":
                    await send("* BYE Logging out")
                    await send(f"{tag} OK Logout completed")
                    return
                elif cmd == "NOOP":
                    await send(f"{tag} OK NOOP completed")
                else:
                    await send(f"{tag} BAD Unknown command")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @property
    def saw_login(self) -> bool:
        return any(
            b" LOGIN " in line.upper() or b" AUTHENTICATE " in line.upper()
            for line in self.received
        )


class ScriptedSmtpServer(_Base):
    def __init__(
        self,
        *,
        auth_reply: tuple[int, list[str]] = (235, ["2.7.0 Authentication successful"]),
        greeting: str = "220 scripted.example ESMTP ready",
        extensions: tuple[str, ...] = ("AUTH PLAIN LOGIN XOAUTH2", "8BITMIME"),
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        advertise_starttls: bool = True,
        xoauth2_challenge: str | None = None,
        oauthbearer_challenge: str | None = None,
    ) -> None:
        super().__init__()
        self.auth_reply = auth_reply
        self.greeting = greeting
        self.extensions = extensions
        self.tls = tls
        self.starttls_ctx = starttls
        self.advertise_starttls = advertise_starttls
        self.challenges = {"XOAUTH2": xoauth2_challenge, "OAUTHBEARER": oauthbearer_challenge}

    async def start(self) -> ScriptedSmtpServer:
        await self._serve(self._handle, self.tls)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        secured = self.tls is not None

        async def reply(code: int, lines: list[str]) -> None:
            out = b""
            for i, text in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                out += f"{code}{sep}{text}\r\n".encode()
            writer.write(out)
            await writer.drain()

        try:
            await reply(int(self.greeting[:3]), [self.greeting[4:]])
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                self.received.append(raw.rstrip(b"\r\n"))
                line = raw.decode("utf-8", "replace").strip()
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    ext = list(self.extensions)
                    if not secured and self.starttls_ctx is not None and self.advertise_starttls:
                        ext.insert(0, "STARTTLS")
                    await reply(250, ["scripted.example", *ext])
                elif verb == "STARTTLS" and self.starttls_ctx is not None and not secured:
                    await reply(220, ["2.0.0 Ready to start TLS"])
                    await writer.start_tls(self.starttls_ctx)
                    secured = True
                elif verb == "AUTH":
                    words = line.split(" ")
                    mech = words[1].upper() if len(words) > 1 else ""
                    if mech in self.challenges:
                        if len(words) > 2:
                            message = words[2]
                        else:  # no initial response: ask for it
                            await reply(334, [""])
                            answer = await reader.readline()
                            self.received.append(answer.rstrip(b"\r\n"))
                            message = answer.decode("ascii", "replace").strip()
                        self.sasl.append((mech, _b64(message)))
                        challenge = self.challenges[mech]
                        if challenge is not None:
                            await reply(334, [challenge])
                            answer = await reader.readline()
                            self.received.append(answer.rstrip(b"\r\n"))
                            if answer.strip() != SASL_ERROR_ANSWERS[mech]:
                                await reply(501, ["5.5.2 wrong answer to the error challenge"])
                                continue
                    elif mech == "LOGIN" and len(words) == 3:
                        await reply(334, ["UGFzc3dvcmQ6"])
                        answer = await reader.readline()
                        self.received.append(answer.rstrip(b"\r\n"))
                    await reply(*self.auth_reply)
                elif verb == "QUIT":
                    await reply(221, ["2.0.0 Bye"])
                    return
                elif verb in ("NOOP", "RSET"):
                    await reply(250, ["2.0.0 OK"])
                else:
                    await reply(502, ["5.5.2 Error: command not recognized"])
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @property
    def saw_auth(self) -> bool:
        return any(line.upper().startswith(b"AUTH") for line in self.received)


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never sends anything; yields its port."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(Exception):
            await reader.read()  # until the client gives up

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for w in held:
            w.close()


# --------------------------------------------------------------------------- discovery
class AutoconfigHttpServer:
    """Serves `/<virtual host>/<path>` -> bytes; records every path requested."""

    def __init__(self) -> None:
        self.documents: dict[tuple[str, str], bytes] = {}
        self.redirects: dict[tuple[str, str], str] = {}
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    def add(self, host: str, path: str, body: bytes) -> None:
        self.documents[(host, path)] = body

    def add_redirect(self, host: str, path: str, location: str) -> None:
        self.redirects[(host, path)] = location

    async def start(self) -> AutoconfigHttpServer:
        app = web.Application()
        app.router.add_get("/{vhost}/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes the port nowhere else
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        vhost = request.match_info["vhost"]
        path = "/" + request.match_info["path"]
        self.requests.append(f"{vhost}{path}")
        location = self.redirects.get((vhost, path))
        if location is not None:
            raise web.HTTPFound(location)
        body = self.documents.get((vhost, path))
        if body is None:
            return web.Response(status=404, text="not found")
        return web.Response(body=body, content_type="application/xml")

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@dataclass
class FakeDiscoveryEnv:
    """A DiscoveryEnv without DNS: autoconfig URLs go to `http` (scheme kept in the path so
    a test can tell https from http), MX answers come from `mx`, probes of
    (host, port) go to a local port from `probe_map` (anything else fails at once)."""

    http: AutoconfigHttpServer | None = None
    mx: dict[str, list[str]] = field(default_factory=dict)
    probe_map: dict[tuple[str, int], int] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    urls: list[str] = field(default_factory=list)
    probes: list[ServerSettings] = field(default_factory=list)
    mx_queries: list[str] = field(default_factory=list)

    async def http_get(self, url: str, timeout: float) -> bytes | None:  # noqa: ASYNC109
        self.urls.append(url)
        if self.http is None:
            return None
        parts = urlsplit(url)
        vhost = f"{parts.scheme}.{parts.hostname}"
        local = f"http://{HOST}:{self.http.port}/{vhost}{parts.path}"
        if parts.query:
            local += "?" + parts.query
        async with (
            aiohttp.ClientSession() as session,
            session.get(local, timeout=aiohttp.ClientTimeout(total=timeout)) as resp,
        ):
            if resp.status != 200:
                return None
            return await resp.read()

    async def mx_hosts(self, domain: str, timeout: float) -> list[str]:  # noqa: ASYNC109
        self.mx_queries.append(domain)
        return list(self.mx.get(domain, []))

    async def probe(self, server: ServerSettings, timeout: float) -> bool:  # noqa: ASYNC109
        self.probes.append(server)
        port = self.probe_map.get((server.host, server.port))
        if port is None or self.ssl_context is None:
            return False
        local = ServerSettings(HOST, port, server.security)
        kind = "smtp" if server.port in (465, 587) else "imap"
        return await probe_server(
            local,
            ssl_context=self.ssl_context,
            guard=HostGuard(allow_private=True),
            timeout=timeout,
            protocol=kind,
        )


def autoconfig_xml(
    imap: tuple[str, int, str] = ("imap.%EMAILDOMAIN%", 993, "SSL"),
    smtp: tuple[str, int, str] = ("smtp.%EMAILDOMAIN%", 465, "SSL"),
    username: str = "%EMAILADDRESS%",
    extra_incoming: str = "",
) -> bytes:
    """An ISPDB-format document."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example">
    <domain>example</domain>
    {extra_incoming}
    <incomingServer type="imap">
      <hostname>{imap[0]}</hostname>
      <port>{imap[1]}</port>
      <socketType>{imap[2]}</socketType>
      <authentication>password-cleartext</authentication>
      <username>{username}</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{smtp[0]}</hostname>
      <port>{smtp[1]}</port>
      <socketType>{smtp[2]}</socketType>
      <authentication>password-cleartext</authentication>
      <username>{username}</username>
    </outgoingServer>
  </emailProvider>
</clientConfig>
""".encode()
