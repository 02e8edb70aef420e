"""IMAP connections: guarded connect, implicit TLS or STARTTLS, LOGIN, OAUTHBEARER or XOAUTH2.

aioimaplib does the IMAP protocol once a connection exists; the connection itself is made
here, so that

* the TCP connection goes to the address `HostGuard` checked (no second DNS lookup),
* TLS is `mail.tls.TLSProtocol` (ssl.MemoryBIO over the plain socket transport), not
  asyncio's TLS transport, whose fixed 256 KiB read buffer per connection was most of the
  memory of a watched mailbox; aioimaplib's protocol is attached to its transport,
* STARTTLS works (aioimaplib 2.0.3 has none): the plaintext part (greeting, CAPABILITY,
  STARTTLS) is spoken on the raw socket, then the TLS handshake runs on that same socket and
  aioimaplib asks for CAPABILITY again over TLS, as RFC 3501 requires,
* an OAuth2 login uses OAUTHBEARER (RFC 7628) when the server lists AUTH=OAUTHBEARER, else
  XOAUTH2 (the SASL messages come from `mail.sasl`). aioimaplib has no AUTHENTICATE for an
  arbitrary mechanism and never answers a `+` continuation, so the command goes through its
  public `Command`/`execute`, and a small protocol wrapper between the transport and
  aioimaplib's protocol (`_Wire`) answers the continuations while the AUTHENTICATE is
  pending: the client response when the server lacks SASL-IR, then the error challenge a
  refused token gets (base64 JSON) with 0x01 for OAUTHBEARER or an empty line for XOAUTH2,
  so a refused token fails at once with the server's NO instead of hanging.

A password is never sent before TLS: if a STARTTLS server doesn't offer STARTTLS, the check
fails with TLS_FAILED before LOGIN. aioimaplib's DEBUG log prints raw traffic (including the
base64 SASL message), so its logger is kept at INFO or above.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import sys
from typing import Any

import aioimaplib

from mail import sasl
from mail.netguard import HostGuard, as_mail_error, classify_imap_login, require_ok
from mail.tls import TLSProtocol
from mail.types import Credentials, FailureKind, MailCheckError, Protocol, Security, ServerSettings
from mail.validate import parse_host

log = logging.getLogger(__name__)

IMAP = Protocol.IMAP
LOGOUT_TIMEOUT = 2.0
BYE_GRACE = 0.3
MAX_LINE = 16 * 1024
_LIB_LOG = logging.getLogger("aioimaplib")
_BYE = re.compile(rb"(?:^|\n)\* BYE ?([^\r\n]*)")
_CAPS_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
_SYNTHETIC_GREETING = b"* OK [mailbridge] TLS established\r\n"


def quiet_library_log() -> None:
    """aioimaplib logs raw protocol data at DEBUG: never let that reach any handler."""
    if _LIB_LOG.level < logging.INFO:  # NOTSET (0) included
        _LIB_LOG.setLevel(logging.INFO)


quiet_library_log()


class _Wire(asyncio.Protocol):
    """Sits between the transport and aioimaplib's protocol: passes everything through,
    remembers a BYE text, notices a lost connection, answers SASL continuations."""

    __slots__ = (
        "inner",
        "greeting",
        "transport",
        "lost",
        "bye",
        "bye_seen",
        "sasl_pending",
        "sasl_challenge",
        "_sasl_answers",
        "_sasl_error_answer",
        "_sasl_error_answered",
        "_partial",
    )

    def __init__(self, inner: asyncio.Protocol, greeting: bytes | None) -> None:
        self.inner = inner
        self.greeting = greeting
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.bye = ""
        self.bye_seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.sasl_pending = False
        self.sasl_challenge = b""
        self._sasl_answers: list[bytes] = []
        self._sasl_error_answer = b""
        self._sasl_error_answered = False
        self._partial = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.inner.connection_made(transport)
        if self.greeting:
            # After STARTTLS the server sends no new greeting: give aioimaplib the one it
            # expects, so it goes to NONAUTH and asks CAPABILITY again over TLS.
            self.inner.data_received(self.greeting)

    def data_received(self, data: bytes) -> None:
        if b"BYE" in data:
            m = _BYE.search(data)
            if m:
                self.bye = m.group(1)[:500].decode("utf-8", "replace")
                if not self.bye_seen.done():
                    self.bye_seen.set_result(self.bye)
        if self.sasl_pending:
            self._answer_sasl(data)
        self.inner.data_received(data)

    def start_sasl(self, answers: list[bytes], error_answer: bytes) -> None:
        """Answer the `+` continuations of the AUTHENTICATE about to be sent: first with
        `answers` in order (the client response, when it isn't sent with the command), then
        one error challenge with `error_answer` (the challenge is kept in `sasl_challenge`);
        any further continuation is cancelled with `*` (RFC 3501 6.2.2)."""
        self._sasl_answers = list(answers)
        self._sasl_error_answer = error_answer
        self._sasl_error_answered = False
        self.sasl_challenge = b""
        self._partial = b""
        self.sasl_pending = True

    def end_sasl(self) -> None:
        self.sasl_pending = False
        self._sasl_answers = []
        self._partial = b""

    def _answer_sasl(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()[-MAX_LINE:]
        for line in lines:
            if not line.startswith(b"+") or self.transport is None:
                continue
            if self._sasl_answers:
                answer = self._sasl_answers.pop(0)
            elif not self._sasl_error_answered:
                self._sasl_error_answered = True
                self.sasl_challenge = line[1:].strip()[:4096]
                answer = self._sasl_error_answer
            else:
                answer = b"*"
            self.transport.write(answer + b"\r\n")

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            if not self.lost.done():
                self.lost.set_result(exc)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _IdleSink:
    """Stands in for aioimaplib's IDLE queue (an asyncio.Queue: four deques, 3 KiB per
    connection) after `MailIMAP.drop_idle_queue()`: the untagged responses aioimaplib
    collects during IDLE are dropped."""

    __slots__ = ()

    def put_nowait(self, item: Any) -> None:
        pass

    async def put(self, item: Any) -> None:
        pass

    def empty(self) -> bool:
        return True

    def get_nowait(self) -> Any:
        raise asyncio.QueueEmpty

    async def get(self) -> Any:
        raise RuntimeError("MailIMAP keeps no IDLE queue: read pushes off the wire")


_IDLE_SINK = _IdleSink()
_SHARED_CAPS: dict[frozenset[str], frozenset[str]] = {}
_SHARED_CAPS_MAX = 256


def shared_capabilities(caps: Any) -> frozenset[str]:
    """One frozenset per distinct capability list, shared by the connections that announce
    it (a set of strings per connection is about 1 KiB; thousands of watched mailboxes on a
    few providers announce a handful of lists). A cache bounded to a few hundred lists,
    same in every instance (it holds no state of its own)."""
    key = frozenset(str(c) for c in caps)
    shared = _SHARED_CAPS.get(key)
    if shared is None:
        if len(_SHARED_CAPS) >= _SHARED_CAPS_MAX:
            _SHARED_CAPS.clear()
        shared = _SHARED_CAPS[key] = frozenset(sys.intern(c) for c in key)
    return shared


class MailIMAP(aioimaplib.IMAP4):  # type: ignore[misc]
    """aioimaplib's client on a connection made by this module (see the module doc).

    Use it like any aioimaplib client (select, uid, fetch, idle_start, ...). Extras:
    `closed` is a future that completes when the connection is gone; `server` is the
    ServerSettings it was opened with.
    """

    def __init__(self, server: ServerSettings, timeout: float) -> None:
        self.server = server
        self.wire: _Wire | None = None
        super().__init__(host=server.host, port=server.port, timeout=timeout)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # No connection here: open_imap connects a guarded socket and attaches the protocol.
        self.protocol = aioimaplib.IMAP4ClientProtocol(
            loop or asyncio.get_running_loop(), conn_lost_cb
        )

    async def wait_hello_from_server(self) -> None:
        await asyncio.wait_for(self.protocol.wait("AUTH|NONAUTH"), self.timeout)

    def drop_idle_queue(self) -> None:
        """Keep no queue of IDLE pushes (3 KiB per connection): for a caller that reads them
        off the wire instead (the watcher, `mail.watcher._Tap`, because aioimaplib misses
        those that arrive outside IDLE). `wait_server_push` then raises. Call it before the
        first IDLE."""
        self.protocol.idle_queue = _IDLE_SINK

    @property
    def closed(self) -> asyncio.Future[BaseException | None]:
        assert self.wire is not None
        return self.wire.lost


class _SockReader:
    """Line reader on a raw non-blocking socket, for the plaintext part before STARTTLS."""

    def __init__(self, sock: socket.socket, protocol: Protocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self.buffer = b""

    async def readline(self) -> bytes:
        loop = asyncio.get_running_loop()
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                raise MailCheckError(self.protocol, FailureKind.PROTOCOL, "server line too long")
            chunk = await loop.sock_recv(self.sock, 4096)
            if not chunk:
                raise MailCheckError(
                    self.protocol, FailureKind.PROTOCOL, "the server closed the connection"
                )
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace").strip()


async def _imap_starttls_prelude(sock: socket.socket) -> None:
    """Greeting, CAPABILITY, STARTTLS on the plain socket. Raises TLS_FAILED if the server
    doesn't offer STARTTLS (nothing secret has been sent at that point)."""
    r = _SockReader(sock, IMAP)
    greeting = await r.readline()
    upper = greeting.upper()
    if upper.startswith(b"* BYE"):
        raise MailCheckError(IMAP, FailureKind.PROTOCOL, _text(greeting[5:]), server_said=True)
    if upper.startswith(b"* PREAUTH"):
        raise MailCheckError(IMAP, FailureKind.TLS_FAILED, "server logged in before STARTTLS")
    if not upper.startswith(b"* OK"):
        raise MailCheckError(
            IMAP, FailureKind.PROTOCOL, f"unexpected greeting: {_text(greeting)[:200]}"
        )
    caps: set[bytes] = set()
    m = _CAPS_CODE.search(greeting)
    if m:
        caps = set(m.group(1).upper().split())
    else:
        await r.send(b"S1 CAPABILITY\r\n")
        for _ in range(200):
            line = await r.readline()
            if line.upper().startswith(b"* CAPABILITY "):
                caps |= set(line[13:].upper().split())
            elif line.startswith(b"S1 "):
                if not line[3:].upper().startswith(b"OK"):
                    raise MailCheckError(IMAP, FailureKind.PROTOCOL, _text(line[3:]), server_said=True)
                break
    if b"STARTTLS" not in caps:
        raise MailCheckError(
            IMAP,
            FailureKind.TLS_FAILED,
            "the server does not offer STARTTLS; the password is not sent unencrypted",
        )
    await r.send(b"S2 STARTTLS\r\n")
    for _ in range(200):
        line = await r.readline()
        if line.startswith(b"S2 "):
            if not line[3:].upper().startswith(b"OK"):
                raise MailCheckError(IMAP, FailureKind.TLS_FAILED, _text(line[3:]), server_said=True)
            break
    else:
        raise MailCheckError(IMAP, FailureKind.PROTOCOL, "no reply to STARTTLS")
    if r.buffer:
        # data after "OK" and before the handshake would be injected into the TLS session
        raise MailCheckError(IMAP, FailureKind.TLS_FAILED, "unexpected data after STARTTLS")


async def _race(wire: _Wire, aw: Any) -> Any:
    """Await `aw`, but fail fast with the server's BYE text if the server says BYE or the
    connection drops (aioimaplib itself would wait for its command timeout)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait(
            {task, wire.lost, wire.bye_seen}, return_when=asyncio.FIRST_COMPLETED
        )
        if task not in done:
            # the tagged reply may have come in the same packet as the BYE: let it land
            done, _ = await asyncio.wait({task}, timeout=BYE_GRACE)
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    raise MailCheckError(
        IMAP, FailureKind.PROTOCOL, wire.bye or "the server closed the connection", server_said=bool(wire.bye)
    )


async def connect_imap(
    server: ServerSettings,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> MailIMAP:
    """A TLS-protected, greeted (not logged in) IMAP client. Raises MailCheckError."""
    try:
        return await _connect_imap(server, ssl_context, guard, timeout)
    except MailCheckError:
        raise
    except Exception as exc:
        raise as_mail_error(IMAP, exc) from None


async def _connect_imap(
    server: ServerSettings,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float,  # noqa: ASYNC109
) -> MailIMAP:
    quiet_library_log()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        sock = await guard.open_socket(server.host, server.port, IMAP, timeout)
        try:
            greeting = None
            if server.security is Security.STARTTLS:
                await _imap_starttls_prelude(sock)
                greeting = _SYNTHETIC_GREETING
            client = MailIMAP(server, timeout)
            wire = _Wire(client.protocol, greeting)
            client.wire = wire
        except BaseException:
            sock.close()
            raise
        tls = TLSProtocol(
            ssl_context,
            wire,
            server_hostname=parse_host(server.host) or server.host,
            handshake_timeout=timeout,
        )
        # From here asyncio owns the socket: on failure it closes it through the transport
        # (closing it here as well could free the fd under a live transport).
        try:
            await loop.create_connection(lambda: tls, sock=sock)
            await tls.handshake
        except (ConnectionError, EOFError) as exc:
            tls.abort()
            raise MailCheckError(
                IMAP, FailureKind.TLS_FAILED, "connection closed during the TLS handshake"
            ) from exc
        except BaseException:
            tls.abort()
            raise
        try:
            await _race(wire, client.protocol.wait("AUTH|NONAUTH"))
        except BaseException:
            _abort(client)
            raise
    return client


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _login_error(response: Any, wire: _Wire, token: str | None = None) -> MailCheckError:
    lines = [_text(x) for x in response.lines if isinstance(x, bytes | bytearray)]
    tagged = lines[-1] if lines else ""
    extra = [
        x
        for x in lines[:-1]
        if x and not x.upper().startswith("CAPABILITY") and not x.startswith("+")
    ]
    detail = sasl.scrub(" ".join([*extra, tagged]).strip()[:1000], token)
    if wire.sasl_challenge:
        detail = f"{detail} ({sasl.describe_challenge(wire.sasl_challenge, token)})".strip()
    kind = classify_imap_login(str(response.result), detail)
    return MailCheckError(IMAP, kind, detail, server_said=bool(lines))


def _capabilities_in(response: Any) -> set[str]:
    """Capabilities announced in a reply: `* CAPABILITY ...` or a `[CAPABILITY ...]` code."""
    caps: set[str] = set()
    for line in response.lines:
        if not isinstance(line, bytes | bytearray):
            continue
        m = _CAPS_CODE.search(line)
        if m:
            caps |= set(_text(m.group(1)).split())
        elif line[:11].upper() == b"CAPABILITY ":
            caps |= set(_text(line[11:]).split())
    return caps


async def _execute_authenticate(protocol: Any, command: Any, scrub: str) -> Any:
    """Run AUTHENTICATE through aioimaplib's public `execute` and, when the server says OK,
    move the protocol to AUTH the way its own login() does (under its state condition, so
    waiters wake up). `_authenticate` then takes the capabilities announced with the OK."""
    async with protocol.state_condition:
        response = await protocol.execute(command, scrub=scrub)
        if response.result == "OK":
            protocol.state = aioimaplib.AUTH
        protocol.state_condition.notify_all()
    return response


async def _oauth2_login(client: MailIMAP, wire: _Wire, login: str, token: str) -> Any:
    """AUTHENTICATE OAUTHBEARER when the server offers it, else XOAUTH2; with the client
    response on the command line when the server lists SASL-IR, else after its `+`."""
    caps = {str(c).upper() for c in client.protocol.capabilities}
    offered = [c[5:] for c in caps if c.startswith("AUTH=")]
    mechanism = sasl.choose(offered) or sasl.XOAUTH2
    server = client.server
    encoded = sasl.encoded_response(mechanism, login, token, server.host, server.port)
    initial = "SASL-IR" in caps
    protocol = client.protocol
    command = aioimaplib.Command(
        "AUTHENTICATE",
        protocol.new_tag(),
        *([mechanism, encoded] if initial else [mechanism]),
        loop=protocol.loop,
    )
    wire.start_sasl(
        [] if initial else [encoded.encode("ascii")],
        sasl.error_answer(mechanism).encode("ascii"),
    )
    try:
        return await _race(
            wire,
            asyncio.wait_for(_execute_authenticate(protocol, command, encoded), client.timeout),
        )
    finally:
        wire.end_sasl()


async def _authenticate(client: MailIMAP, creds: Credentials) -> None:
    wire = client.wire
    assert wire is not None
    if client.protocol.state == aioimaplib.AUTH:  # PREAUTH (over TLS): already logged in
        return
    try:
        if creds.oauth2_token:
            response = await _oauth2_login(client, wire, creds.login, creds.oauth2_token)
        elif creds.password is not None:
            response = await _race(wire, client.login(_quote(creds.login), creds.password))
        else:
            raise MailCheckError(IMAP, FailureKind.AUTH_FAILED, "no password or token")
    except (ValueError, UnicodeError) as exc:
        # aioimaplib refuses CR/LF/NUL in arguments; mail.sasl refuses them in a token login
        raise MailCheckError(
            IMAP,
            FailureKind.AUTH_FAILED,
            "the login or password contains characters a server can't accept",
        ) from exc
    if response.result != "OK":
        raise _login_error(response, wire, creds.oauth2_token)
    # RFC 9051 7.2.2: capabilities announced with the login's OK replace the ones from before
    # it (a server may offer IDLE, SPECIAL-USE, ... only once logged in, or not at all to this
    # user); aioimaplib's login() only adds to the old list. Without such a list the pre-login
    # one stands (no extra round trip: most servers announce, or do not change theirs).
    adopt_capabilities(client, response)


def adopt_capabilities(client: MailIMAP, login_response: Any) -> None:
    """The capabilities announced with a login's OK replace the ones from before it; kept as
    a `shared_capabilities` set."""
    announced = _capabilities_in(login_response)
    client.protocol.capabilities = shared_capabilities(
        announced or client.protocol.capabilities
    )


async def open_imap(
    server: ServerSettings,
    creds: Credentials,
    *,
    ssl_context: ssl.SSLContext,
    guard: HostGuard,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> MailIMAP:
    """A connected, TLS-protected, logged-in IMAP client. Raises MailCheckError."""
    client: MailIMAP | None = None
    try:
        async with asyncio.timeout(timeout):
            client = await _connect_imap(server, ssl_context, guard, timeout)
            await _authenticate(client, creds)
    except MailCheckError:
        _abort(client)
        raise
    except Exception as exc:
        _abort(client)
        raise as_mail_error(IMAP, exc) from None
    except BaseException:
        _abort(client)
        raise
    return client


def _abort(client: Any) -> None:
    protocol = getattr(client, "protocol", None)
    transport = getattr(protocol, "transport", None)
    if transport is not None:
        transport.abort()
    # aioimaplib runs the greeting in a task that raises on "* BYE": consume that error
    for task in list(getattr(protocol, "tasks", ())):
        if task.done() and not task.cancelled():
            task.exception()


async def close_imap(client: Any) -> None:
    """LOGOUT with a short timeout, then always close the connection."""
    if client is None:
        return
    protocol = getattr(client, "protocol", None)
    transport = getattr(protocol, "transport", None)
    try:
        if (
            protocol is not None
            and transport is not None
            and not transport.is_closing()
            and protocol.state in (aioimaplib.NONAUTH, aioimaplib.AUTH, aioimaplib.SELECTED)
        ):
            await asyncio.wait_for(client.logout(), LOGOUT_TIMEOUT)
    except Exception:  # noqa: BLE001, S110 - best effort; the transport is closed below
        pass
    finally:
        if transport is not None:
            transport.close()


async def select_inbox(client: Any, timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    """SELECT INBOX; MailCheckError(PROTOCOL) with the server's words if it refuses."""
    try:
        response = await asyncio.wait_for(client.select("INBOX"), timeout)
    except MailCheckError:
        raise
    except Exception as exc:
        raise as_mail_error(IMAP, exc) from None
    return require_ok(response, "SELECT INBOX")
