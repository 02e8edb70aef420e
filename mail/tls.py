"""TLS settings for every mail connection: certificates and host names are always verified."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from mail.types import FailureKind


def make_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client context trusting the system CAs plus, if given, an extra PEM bundle.

    Certificates and host names are verified; TLS 1.2 is the minimum.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def tls_failure_kind(exc: BaseException) -> FailureKind:
    """TLS_UNTRUSTED for certificate / host name problems, TLS_FAILED for the rest."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FailureKind.TLS_UNTRUSTED
    return FailureKind.TLS_FAILED


def tls_detail(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return str(exc.verify_message or exc.reason or exc)
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    return str(exc)


# --------------------------------------------------------------------------- TLS layer
# Plaintext handed to the application per SSLObject.read() call: one TLS record carries at
# most 16 KiB, so a larger size would only make each read allocate more for nothing.
READ_SIZE = 16 * 1024
_AGAIN = (ssl.SSLWantReadError, ssl.SSLSyscallError)
_HANDSHAKE, _WRAPPED, _CLOSING, _CLOSED = range(4)


class TLSProtocol(asyncio.Protocol):
    """TLS over a plain asyncio transport, on `ssl.MemoryBIO`, with no per-connection read
    buffer of its own.

    Why not asyncio's TLS transport (``loop.create_connection(ssl=...)``,
    ``loop.start_tls``): its `asyncio.sslproto.SSLProtocol` allocates a zero-filled
    256 KiB read buffer per connection (`SSLProtocol.max_size`, Python 3.11-3.13), and the
    class can only be changed by patching the standard library. For a watcher that keeps
    thousands of idle connections that buffer was 80 % of the memory per mailbox. Here the
    plain transport hands over each `recv()` as a bytes object (transient), it goes into the
    SSL object's incoming BIO, and `SSLObject.read(READ_SIZE)` gives the plaintext to the
    application protocol; nothing of that size stays per connection.

    Use::

        tls = TLSProtocol(ctx, app_protocol, server_hostname="imap.example.org",
                          handshake_timeout=15)
        await loop.create_connection(lambda: tls, sock=sock)   # or host, port
        await tls.handshake      # raises ssl.SSLError (certificate problems are
                                 # ssl.SSLCertVerificationError), ConnectionResetError if
                                 # the peer closed, ConnectionAbortedError on timeout

    as asyncio's TLS transport would raise them, so `mail.netguard.as_mail_error` maps
    them alike. The application protocol gets `connection_made` with a `TLSTransport` once
    the handshake is done (`get_extra_info` answers "ssl_object", "peercert", "cipher",
    "compression", "sslcontext" and, from the socket transport, "socket", "peername", ...).
    `close()` sends close_notify and closes the socket once it is flushed (it does not wait
    for the peer's close_notify, which RFC 8446 6.1 allows); `abort()` drops it at once. A
    peer's close_notify or TCP EOF is passed on as `eof_received`.

    `server_side=True` serves instead (used by the benchmark's IMAP server). Nothing here is
    shared between connections, so several instances need nothing else.
    """

    __slots__ = (
        "_loop",
        "_context",
        "_incoming",
        "_outgoing",
        "_sslobj",
        "_app",
        "_transport",
        "_app_transport",
        "_state",
        "_backlog",
        "_reading_paused",
        "_timeout",
        "_timer",
        "_error",
        "handshake",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        app: asyncio.BaseProtocol,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._context = context
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._sslobj = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=None if server_side else server_hostname,
        )
        self._app: Any = app
        self._transport: asyncio.Transport | None = None
        self._app_transport: TLSTransport | None = None
        self._state = _HANDSHAKE
        self._backlog: list[bytes] = []  # application data the SSL object could not take yet
        self._reading_paused = False
        self._timeout = handshake_timeout
        self._timer: asyncio.TimerHandle | None = None
        self._error: BaseException | None = None
        self.handshake: asyncio.Future[None] = loop.create_future()
        self.handshake.add_done_callback(_consume)

    # ------------------------------------------------------------------ socket side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if self._timeout is not None:
            self._timer = self._loop.call_later(self._timeout, self._handshake_timed_out)
        self._do_handshake()

    def data_received(self, data: bytes) -> None:
        if self._state == _CLOSED:
            return
        self._incoming.write(data)
        if self._state == _HANDSHAKE:
            self._do_handshake()
        else:
            self._do_read()

    def eof_received(self) -> bool | None:
        if self._state == _HANDSHAKE:
            self._fail_handshake(ConnectionResetError("connection closed during the TLS handshake"))
            return None
        if self._state == _WRAPPED:
            self._do_read()  # whatever arrived before the EOF
            return self._app_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        was = self._state
        self._state = _CLOSED
        self._cancel_timer()
        self._backlog.clear()
        if self._app_transport is not None:
            self._app_transport._closing = True
        if was == _HANDSHAKE:
            self._fail_handshake(
                exc or ConnectionResetError("connection closed during the TLS handshake")
            )
        elif self._app_transport is not None:
            error = exc if exc is not None else self._error
            self._app.connection_lost(error if isinstance(error, Exception) else None)
        self._transport = None

    def pause_writing(self) -> None:
        if self._app_transport is not None:
            self._app.pause_writing()

    def resume_writing(self) -> None:
        if self._app_transport is not None:
            self._app.resume_writing()

    # ------------------------------------------------------------------ handshake
    def _do_handshake(self) -> None:
        try:
            self._sslobj.do_handshake()
        except _AGAIN:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()  # the alert, so the peer learns why
            self._fail_handshake(exc)
            return
        self._cancel_timer()
        self._state = _WRAPPED
        self._app_transport = TLSTransport(self)
        if not self.handshake.done():
            self.handshake.set_result(None)
        self._app.connection_made(self._app_transport)
        self._flush()
        self._do_read()  # data that came with the last handshake message

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKE:
            self._fail_handshake(
                ConnectionAbortedError(
                    f"SSL handshake is taking longer than {self._timeout} seconds: "
                    "aborting the connection"
                )
            )

    def _fail_handshake(self, exc: BaseException) -> None:
        self._cancel_timer()
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        self._state = _CLOSED
        if self._transport is not None:
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ------------------------------------------------------------------ data
    def _do_read(self) -> None:
        if self._backlog:
            self._write_backlog()
        if self._state != _WRAPPED:
            if self._state == _CLOSING:
                self._incoming.read()  # after close(): nothing more goes to the application
            return
        try:
            while not self._reading_paused:
                chunk = self._sslobj.read(READ_SIZE)
                if not chunk:  # close_notify from the peer
                    self._flush()
                    if not self._app_eof() and self._transport is not None:
                        self.close()
                    return
                self._app.data_received(chunk)
                if self._state != _WRAPPED:
                    return
        except _AGAIN:
            pass
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush()  # TLS 1.3 tickets, key updates, alerts

    def _app_eof(self) -> bool | None:
        keep_open = self._app.eof_received()
        if keep_open:
            return True
        return None

    def _write(self, data: bytes) -> None:
        if self._state != _WRAPPED or self._transport is None:
            return
        if self._backlog:
            self._backlog.append(bytes(data))
            return
        self._backlog.append(bytes(data))
        self._write_backlog()

    def _write_backlog(self) -> None:
        try:
            while self._backlog:
                data = self._backlog[0]
                count = self._sslobj.write(data)
                if count < len(data):
                    self._backlog[0] = data[count:]
                else:
                    del self._backlog[0]
        except _AGAIN:
            pass  # renegotiation wants the peer first: retried on the next data
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush()

    def _flush(self) -> None:
        if self._transport is not None and self._outgoing.pending:
            self._transport.write(self._outgoing.read())

    def _fatal(self, exc: BaseException) -> None:
        self._error = exc
        self._state = _CLOSED
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ application side
    def close(self) -> None:
        if self._state in (_CLOSING, _CLOSED) or self._transport is None:
            return
        if self._state == _HANDSHAKE:
            self._fail_handshake(ConnectionAbortedError("closed during the TLS handshake"))
            return
        self._state = _CLOSING
        if self._app_transport is not None:
            self._app_transport._closing = True
        try:
            self._write_backlog()
            self._sslobj.unwrap()  # sends close_notify
        except _AGAIN:
            pass  # the peer's close_notify is not awaited
        except ssl.SSLError:
            pass  # closing anyway
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._state = _CLOSED
        if self._app_transport is not None:
            self._app_transport._closing = True
        if self._transport is not None:
            self._transport.abort()

    def extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._sslobj
        if name == "sslcontext":
            return self._context
        if name == "peercert":
            return self._sslobj.getpeercert()
        if name == "cipher":
            return self._sslobj.cipher()
        if name == "compression":
            return self._sslobj.compression()
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    def pause_reading(self) -> None:
        self._reading_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._reading_paused:
            return
        self._reading_paused = False
        if self._transport is not None:
            self._transport.resume_reading()
        self._loop.call_soon(self._do_read)


def _consume(future: asyncio.Future[None]) -> None:
    """A handshake failure nobody awaits (a server connection, a caller that gave up) is
    not an "exception never retrieved"."""
    if not future.cancelled():
        future.exception()


class TLSTransport(asyncio.Transport):
    """What the application protocol of a `TLSProtocol` writes to."""

    __slots__ = ("_tls", "_closing")

    def __init__(self, tls: TLSProtocol) -> None:
        super().__init__()
        self._tls = tls
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls.extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._tls._app = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._tls._app  # type: ignore[no-any-return]

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._tls.close()

    def abort(self) -> None:
        self._closing = True
        self._tls.abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if data and not self._closing:
            self._tls._write(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def is_reading(self) -> bool:
        return not self._tls._reading_paused and not self._closing

    def pause_reading(self) -> None:
        self._tls.pause_reading()

    def resume_reading(self) -> None:
        self._tls.resume_reading()

    def get_write_buffer_size(self) -> int:
        raw = self._tls._transport
        return (raw.get_write_buffer_size() if raw is not None else 0) + self._tls._outgoing.pending

    def get_write_buffer_limits(self) -> tuple[int, int]:
        raw = self._tls._transport
        return raw.get_write_buffer_limits() if raw is not None else (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        raw = self._tls._transport
        if raw is not None:
            raw.set_write_buffer_limits(high, low)
