"""A real mail stack for tests: Dovecot (IMAP + LMTP) and an aiosmtpd submission server.

Everything runs on 127.0.0.1 with free ports chosen at start, under one work directory, so
several stacks can coexist. Nothing is mocked:

* Dovecot 2.3 is started as ``dovecot -F -c <workdir>/dovecot.conf`` (a child process of the
  test run) from ``dovecot.conf.in``. Users are ``{PLAIN}`` passwords, one small JSON file per
  user under ``<workdir>/users/passdb/`` read by Dovecot's dict-fs passdb on every lookup
  (a passwd-file is re-read at most once a second, which made fresh users and password
  changes invisible for up to a second). Mailboxes are Maildirs under ``<workdir>/mail``
  owned by the system user ``vmail``.
* The SMTP submission server is aiosmtpd with two listeners (implicit TLS, and STARTTLS
  required before anything else). It checks AUTH PLAIN/LOGIN against the same user table and
  relays every accepted letter to Dovecot over LMTP, so sent mail lands in the recipient's
  mailbox. It runs in its own thread with its own event loop, so it answers whatever loop
  (or synchronous client) the test uses.
* OAuth2: Dovecot accepts XOAUTH2/OAUTHBEARER through its ``oauth2`` passdb, which checks each
  token by RFC 7662 introspection at the test authorization server
  (``tests/harness/oauth_server.py``); the SMTP server accepts XOAUTH2 and OAUTHBEARER against
  the same endpoint (each accepted letter records the AUTH mechanism it came in with). The
  server's port is reserved at start (a bound socket, so Dovecot's configuration can name
  it); ``await stack.oauth_server()`` starts the server on it when a test needs it.
* ``imap_starttls_port`` is a transparent TCP forwarder (same thread) to Dovecot's plain
  listener on 127.0.0.2, because Dovecot treats 127.0.0.1 -> 127.0.0.1 as "secured" and would
  allow LOGIN without STARTTLS (see ``_ImapStartTlsFront``).

Needs root (Dovecot's master, ``useradd vmail``, chown of the Maildir root).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import email.message
import email.policy
import json
import logging
import os
import pathlib
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import trustme
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.harness.oauth_server import OAuthServer

log = logging.getLogger(__name__)

HERE = pathlib.Path(__file__).resolve().parent
CONF_TEMPLATE = HERE / "dovecot.conf.in"
VMAIL_USER = "vmail"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
INOTIFY_INSTANCES = pathlib.Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_WANTED = 8192
# sun_path is 108 bytes; Dovecot's longest socket below base_dir is about 25 characters.
MAX_BASE_DIR_LEN = 80
# Dovecot's plain IMAP listener (behind the STARTTLS front, see _ImapStartTlsFront)
BACKEND_HOST = "127.0.0.2"

# aiosmtpd logs every connection at INFO and warns on each implicit-TLS connection that
# auth_require_tls is False (it cannot tell that the transport already is TLS).
_smtp_log = logging.getLogger("mail.log")
_smtp_log.setLevel(logging.WARNING)
_smtp_log.addFilter(lambda rec: "auth_require_tls == False" not in rec.getMessage())


# aiosmtpd sets its own deprecated Session.login_data on every AUTH and logs a warning each time.
class _NoLoginDataWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_NoLoginDataWarning())


@dataclass(frozen=True)
class MailUser:
    """A mailbox user of the stack; login name is the full address."""

    address: str
    password: str


@dataclass(frozen=True)
class SubmittedLetter:
    """One letter accepted by the SMTP submission server (kept in ``MailStack.submitted``)."""

    login: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    listener: str  # "ssl" or "starttls"
    mechanism: str | None = None  # the AUTH mechanism of the session: "PLAIN", "OAUTHBEARER", ...


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _free_ports(host: str, n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _ensure_vmail() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(VMAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", VMAIL_USER],
            check=False, capture_output=True,
        )
        pw = pwd.getpwnam(VMAIL_USER)  # raises if useradd failed (and nobody else made it)
    return pw.pw_uid, pw.pw_gid


def _raise_inotify_limit() -> None:
    """Beyond ~128 IDLE processes Dovecot falls back to polling; raise the kernel limit."""
    try:
        if int(INOTIFY_INSTANCES.read_text()) < INOTIFY_WANTED:
            INOTIFY_INSTANCES.write_text(f"{INOTIFY_WANTED}\n")
    except (OSError, ValueError) as exc:
        log.info("cannot raise %s: %s", INOTIFY_INSTANCES, exc)


def _ensure_traversable(path: pathlib.Path) -> None:
    """Dovecot's unprivileged processes (vmail, dovecot) must be able to reach the workdir.

    pytest creates its temp dirs 0700; add only the search bit (o+x) where it is missing.
    """
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(p, stat.S_IMODE(mode) | stat.S_IXOTH)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = pathlib.Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(raw.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _is_dovecot(pid: int) -> bool:
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False
    return "dovecot" in exe


def _to_bytes(message: bytes | email.message.EmailMessage) -> bytes:
    if isinstance(message, email.message.Message):
        policy = message.policy.clone(linesep="\r\n")
        return message.as_bytes(policy=policy)
    return re.sub(rb"\r?\n", b"\r\n", bytes(message))


# --------------------------------------------------------------------------------------------
# SMTP submission server (aiosmtpd) in its own thread
# --------------------------------------------------------------------------------------------


class _SubmissionHandler:
    """aiosmtpd handler: known recipients only, relay to Dovecot LMTP.

    aiosmtpd treats every handler attribute named ``auth_*`` as an AUTH mechanism (advertised
    in EHLO on both listeners): PLAIN/LOGIN are aiosmtpd's own (checked by ``authenticator``),
    XOAUTH2 and OAUTHBEARER are ``auth_XOAUTH2`` / ``auth_OAUTHBEARER`` below (tokens checked
    by introspection at the OAuth2 test server). The mechanism a session logged in with is
    kept per session and recorded with each letter.
    """

    def __init__(self, stack: MailStack, listener: str) -> None:
        self.stack = stack
        self.listener = listener
        self.mechanisms: weakref.WeakKeyDictionary[Session, str] = weakref.WeakKeyDictionary()

    # Called by aiosmtpd's builtin auth_PLAIN / auth_LOGIN.
    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self.stack.check_password(login, password):
            self.mechanisms[session] = mechanism.upper()
            return AuthResult(success=True, auth_data=login.lower())
        return AuthResult(success=False, handled=False)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL XOAUTH2: "user=<addr>^Aauth=Bearer <token>^A^A", base64. A refused token gets
        Google's answer: a 334 challenge with a base64 JSON error, then 535 after the client's
        empty reply."""
        return await self._bearer(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL OAUTHBEARER (RFC 7628): "n,a=<addr>,^Ahost=..^Aport=..^Aauth=Bearer <token>^A^A",
        base64. A refused token gets a 334 challenge with a base64 JSON error (3.2.2); the
        client must answer it with 0x01 (3.2.3), then gets 535 (501 for any other answer)."""
        return await self._bearer(server, args, "OAUTHBEARER")

    async def _bearer(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        if len(args) > 1:
            try:
                raw: Any = base64.b64decode(args[1].encode(), validate=True)
            except ValueError:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            raw = await server.challenge_auth("")
            if raw is MISSING:
                return AuthResult(success=False, handled=True)
        text = bytes(raw).decode("utf-8", "replace")
        login = ""
        if mechanism == "OAUTHBEARER":
            # GS2 header "n,a=<saslname>," then key=value pairs separated by ^A
            gs2, _, text = text.partition("\x01")
            flags, _, rest = gs2.partition(",")
            authzid = rest.partition(",")[0]
            if flags == "n" and authzid.startswith("a="):
                login = authzid[2:].replace("=2C", ",").replace("=3D", "=")
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        if mechanism == "XOAUTH2":
            login = fields.get("user", "")
        login = login.strip().lower()
        auth = fields.get("auth", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if login and token and await self.stack.introspect(token) == login:
            assert server.session is not None
            self.mechanisms[server.session] = mechanism
            return AuthResult(success=True, auth_data=login)
        if mechanism == "OAUTHBEARER":
            error = {"status": "invalid_token", "schemes": "bearer", "scope": "mail"}
        else:
            error = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        answer = await server.challenge_auth(json.dumps(error))
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        if mechanism == "OAUTHBEARER" and answer != b"\x01":
            await server.push("501 5.5.2 OAUTHBEARER: an error challenge is answered with %x01")
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.stack.has_user(address):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        loop = asyncio.get_running_loop()
        try:
            # one LMTP transaction per recipient: smtplib reads only one reply after DATA
            for rcpt in envelope.rcpt_tos:
                await loop.run_in_executor(
                    None, self.stack._lmtp_send, mail_from, rcpt, data
                )
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("LMTP relay failed: %r", exc)
            return f"451 4.3.0 Relay to LMTP failed: {exc}"
        self.stack.submitted.append(
            SubmittedLetter(
                login=session.auth_data if isinstance(session.auth_data, str) else None,
                mail_from=mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                listener=self.listener,
                mechanism=self.mechanisms.get(session),
            )
        )
        return "250 2.0.0 OK: queued"


class _ImapStartTlsFront:
    """Transparent TCP forwarder 127.0.0.1:<imap_starttls_port> -> Dovecot on 127.0.0.2.

    Dovecot marks a connection "secured" when its remote IP equals its local IP (any
    127.0.0.1 -> 127.0.0.1 connection), and then offers LOGIN without STARTTLS no matter what
    disable_plaintext_auth says. Dovecot's plain listener is therefore bound to 127.0.0.2 and
    reached through this forwarder, so it sees 127.0.0.1 -> 127.0.0.2 and behaves like a remote
    server: LOGINDISABLED until STARTTLS. Bytes are copied untouched (TLS is end to end).
    """

    def __init__(self, listen: tuple[str, int], backend: tuple[str, int]) -> None:
        self.listen = listen
        self.backend = backend
        self.server: asyncio.AbstractServer | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(
                self._handle, *self.listen, reuse_address=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self.links):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.close()
            return
        self.links.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.links.difference_update((writer, up_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        # IMAP needs no half-close: when one side ends, end the link
        writer.close()


class _ServiceThread:
    """One daemon thread with its own event loop for the Python-side servers.

    Hosts both aiosmtpd listeners (for the whole life of the stack) and the IMAP STARTTLS
    front (opened/closed together with Dovecot). Running in a thread makes them answer
    whatever event loop a test uses, and synchronous clients too.
    """

    def __init__(self, stack: MailStack, tls: ssl.SSLContext) -> None:
        self.stack = stack
        self.tls = tls
        self.loop = asyncio.new_event_loop()
        self.smtp_servers: list[asyncio.AbstractServer] = []
        self.thread = threading.Thread(target=self._run, name="mailstack-services", daemon=True)
        self._started = threading.Event()

    def _smtp_factory(self, listener: str):
        handler = _SubmissionHandler(self.stack, listener)
        implicit = listener == "ssl"

        def make() -> SMTP:
            with warnings.catch_warnings():
                # "Requiring AUTH while not requiring TLS": the implicit-TLS listener IS TLS
                warnings.simplefilter("ignore")
                return SMTP(
                    handler,
                    hostname="localhost",
                    ident="mailbridge-test-submission",
                    tls_context=None if implicit else self.tls,
                    require_starttls=not implicit,
                    auth_required=True,
                    auth_require_tls=not implicit,
                    authenticator=handler.authenticator,
                    data_size_limit=self.stack.smtp_size_limit,
                    loop=self.loop,
                )

        return make

    async def _open_smtp(self) -> None:
        host = self.stack.host
        self.smtp_servers.append(await self.loop.create_server(
            self._smtp_factory("ssl"), host, self.stack.smtp_ssl_port, ssl=self.tls,
            reuse_address=True))
        self.smtp_servers.append(await self.loop.create_server(
            self._smtp_factory("starttls"), host, self.stack.smtp_starttls_port,
            reuse_address=True))

    async def _close_smtp(self) -> None:
        for server in self.smtp_servers:
            server.close()
        self.smtp_servers.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        with contextlib.suppress(BaseException):
            self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def start(self) -> None:
        self.thread.start()
        if not self._started.wait(10):
            raise RuntimeError("mailstack service thread did not start")

    async def run(self, coro: Any) -> Any:
        """Run a coroutine in the service loop and await it from any other loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_smtp(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


# --------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MailStack:
    workdir: pathlib.Path
    host: str = "127.0.0.1"
    ca_file: pathlib.Path = field(init=False)
    imap_ssl_port: int = 0
    imap_starttls_port: int = 0
    smtp_ssl_port: int = 0
    smtp_starttls_port: int = 0
    lmtp_port: int = 0
    submitted: list[SubmittedLetter] = field(default_factory=list)
    # the SIZE announced in EHLO (and enforced on DATA) for sessions opened from now on
    smtp_size_limit: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.ca_file = self.workdir / "tls" / "ca.pem"
        self.conf_file = self.workdir / "dovecot.conf"
        self.users_dir = self.workdir / "users"
        self.dict_auth_conf = self.workdir / "dict-auth.conf.ext"
        self.oauth2_conf = self.workdir / "dovecot-oauth2.conf.ext"
        self.mail_dir = self.workdir / "mail"
        self.log_file = self.workdir / "dovecot.log"
        self.base_dir = self.workdir / "run"
        self._users: dict[str, str] = {}
        self._user_settings: dict[str, dict[str, str]] = {}
        self._users_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._services: _ServiceThread | None = None
        self._front: _ImapStartTlsFront | None = None
        self._imap_plain_backend_port = 0
        self._server_tls: ssl.SSLContext | None = None
        # OAuth2: the authorization server's port is reserved for the whole life of the stack
        self._oauth_sock: socket.socket | None = None
        self._oauth: OAuthServer | None = None
        self.oauth_port = 0
        self._owned_workdir = False

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def start(cls, workdir: pathlib.Path | None = None) -> MailStack:
        """Start Dovecot and the SMTP server; return when every port accepts.

        Without ``workdir`` the stack makes a directory of its own under /tmp (removed by
        :meth:`stop`). It must not live under pytest's temp root: any other pytest run on the
        machine resets pytest's per-user folder to 0700, and Dovecot's unprivileged
        processes could then no longer reach their maildirs ("Permission denied").
        """
        owned = workdir is None
        if workdir is None:
            workdir = pathlib.Path(tempfile.mkdtemp(prefix="mailbridge-mailstack-", dir="/tmp"))
            os.chmod(workdir, 0o711)  # noqa: S103 - Dovecot's unprivileged processes pass through
        workdir = pathlib.Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self = cls(workdir)
        self._owned_workdir = owned
        await asyncio.to_thread(self._prepare)
        assert self._server_tls is not None
        self._services = _ServiceThread(self, self._server_tls)
        self._services.start()
        atexit.register(self._kill_sync)
        self._reserve_oauth_port()
        try:
            for attempt in range(3):
                (self.imap_ssl_port, self.imap_starttls_port, self.lmtp_port,
                 self.smtp_ssl_port, self.smtp_starttls_port) = _free_ports(self.host, 5)
                (self._imap_plain_backend_port,) = _free_ports(BACKEND_HOST, 1)
                self._front = _ImapStartTlsFront(
                    (self.host, self.imap_starttls_port),
                    (BACKEND_HOST, self._imap_plain_backend_port),
                )
                self._write_config()
                try:
                    await self._services.run(self._services._open_smtp())
                    await self.start_imap()
                    break
                except (_PortInUse, OSError) as exc:
                    # a port was taken between choosing and binding: choose again
                    log.info("mailstack start attempt %d failed: %s", attempt + 1, exc)
                    await self.stop_imap()
                    await self._services.run(self._services._close_smtp())
                    if attempt == 2:
                        raise
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stop SMTP and Dovecot; afterwards no Dovecot process of this stack is left."""
        await self.stop_imap()
        if self._services is not None and self._oauth is not None:
            await self._services.run(self._oauth.close())
            self._oauth = None
        if self._oauth_sock is not None:
            self._oauth_sock.close()
            self._oauth_sock = None
        if self._services is not None:
            await asyncio.to_thread(self._services.stop)
            self._services = None
        if not self.base_dir.is_relative_to(self.workdir):  # the short-path fallback
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if self._owned_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self._kill_sync)

    async def stop_imap(self) -> None:
        """Stop Dovecot only (SIGTERM to master.pid), wait until its ports are closed."""
        if self._services is not None and self._front is not None:
            await self._services.run(self._front.close())
        proc = self._proc
        if proc is None:
            return
        pid = self._master_pid() or proc.pid
        family = [pid, *_descendants(pid)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if proc.poll() is not None and not self._any_imap_port_open():
                break
            await asyncio.sleep(0.02)
        else:
            log.warning("Dovecot did not stop within 5 s; killing %s", family)
            for p in family:
                if p == proc.pid or _is_dovecot(p):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
            while self._any_imap_port_open() and time.monotonic() < deadline + 3:
                await asyncio.sleep(0.02)
        self._proc = None

    async def start_imap(self) -> None:
        """(Re)start Dovecot on the ports chosen at start(); return when they all answer."""
        assert self._services is not None and self._front is not None
        if self._proc is None or self._proc.poll() is not None:
            await self._spawn_dovecot()
        await self._services.run(self._front.open())
        deadline = time.monotonic() + 5
        while not await self._greets(self.host, self.imap_starttls_port, b"* OK"):
            if time.monotonic() > deadline:
                raise RuntimeError("IMAP STARTTLS front does not greet")
            await asyncio.sleep(0.01)

    async def _spawn_dovecot(self) -> None:
        # a stale auth-penalty socket makes the start take 5 s
        for stale in ("anvil-auth-penalty", "master.pid"):
            with contextlib.suppress(FileNotFoundError):
                (self.base_dir / stale).unlink()
        stderr_path = self.workdir / "dovecot.stderr"
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.conf_file)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, close_fds=True,
            )
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                problem = stderr_path.read_text(errors="replace") + self._log_tail(log_offset)
                self._proc = None
                if "Address already in use" in problem:
                    raise _PortInUse(problem)
                raise RuntimeError(f"dovecot exited at start:\n{problem}")
            if await self._dovecot_ready():
                return
            if time.monotonic() > deadline:
                await self.stop_imap()
                raise RuntimeError("dovecot not ready after 10 s:\n" + self._log_tail(log_offset))
            await asyncio.sleep(0.01)

    def _kill_sync(self) -> None:
        """atexit safety net if a test run forgot stop()."""
        if self._services is not None:
            with contextlib.suppress(Exception):
                self._services.stop()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            family = [proc.pid, *_descendants(proc.pid)]
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                for p in family:
                    if _is_dovecot(p):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(p, signal.SIGKILL)

    # ---------------------------------------------------------------- OAuth2

    @property
    def oauth_base_url(self) -> str:
        return f"http://{self.host}:{self.oauth_port}"

    @property
    def oauth_introspection_url(self) -> str:
        return f"{self.oauth_base_url}/introspect"

    async def oauth_server(self) -> OAuthServer:
        """The OAuth2 authorization server whose tokens Dovecot and the SMTP server accept
        (started on first use, on the reserved port, in the service thread). Users sign in
        there with their mailbox password."""
        if self._oauth is None:
            assert self._services is not None and self._oauth_sock is not None
            server = OAuthServer(self.check_password, tls=self.server_ssl_context(), browser_tls=self.client_ssl_context())
            await self._services.run(server.open(self._oauth_sock))
            self._oauth = server
        return self._oauth

    async def introspect(self, token: str) -> str | None:
        """The user an access token belongs to, or None (inactive, unknown, server down)."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.post(self.oauth_introspection_url, data={"token": token}) as response:
                    data = await response.json(content_type=None) if response.status == 200 else {}
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("active") is not True:
            return None
        username = data.get("username")
        return username.lower() if isinstance(username, str) else None

    def _reserve_oauth_port(self) -> None:
        # bound but not listening: until the server runs, Dovecot's introspection is refused
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._oauth_sock = sock
        self.oauth_port = sock.getsockname()[1]

    # ---------------------------------------------------------------- users

    def add_user(
        self,
        address: str,
        password: str,
        *,
        imap_capability: str | None = None,
        userdb: dict[str, str] | None = None,
    ) -> None:
        """Add a mailbox user (login name == full address); usable at once.

        imap_capability: the CAPABILITY list Dovecot announces to this user once logged in
        (e.g. one without IDLE, as some servers have), through a userdb field in the passdb.
        userdb: more per-user settings the same way (name -> value, without "userdb_"), e.g.
        PLAIN_FOLDERS: this user's folders carry no SPECIAL-USE flags."""
        self._check_fields(address, password)
        with self._users_lock:
            key = address.lower()
            if key in self._users:
                raise ValueError(f"user {address} already exists")
            self._users[key] = password
            settings = {f"userdb_{name}": value for name, value in (userdb or {}).items()}
            if imap_capability is not None:
                settings["userdb_imap_capability"] = imap_capability
            if settings:
                self._user_settings[key] = settings
            self._write_user(key, password)

    def set_password(self, address: str, password: str) -> None:
        """Change a user's password; takes effect at once for IMAP, LMTP and SMTP."""
        self._check_fields(address, password)
        with self._users_lock:
            key = address.lower()
            if key not in self._users:
                raise KeyError(address)
            self._users[key] = password
            self._write_user(key, password)

    def has_user(self, address: str) -> bool:
        with self._users_lock:
            return address.lower() in self._users

    def check_password(self, address: str, password: str) -> bool:
        with self._users_lock:
            known = self._users.get(address.lower())
        return known is not None and secrets.compare_digest(known.encode(), password.encode())

    @staticmethod
    def _check_fields(address: str, password: str) -> None:
        for value in (address, password):
            if not value or any(c in value for c in "\r\n\0"):
                raise ValueError(f"invalid user field {value!r} (no newlines or NUL)")
        if "@" not in address or any(c.isspace() or c in "/:" for c in address):
            raise ValueError(f"invalid address {address!r}")

    def _write_user(self, key: str, password: str) -> None:
        # read by Dovecot's auth process (user "dovecot") on every lookup; replace atomically
        path = self.users_dir / "passdb" / key
        tmp = path.with_name(f".{key}.tmp")
        fields = {"password": "{PLAIN}" + password, **self._user_settings.get(key, {})}
        tmp.write_text(json.dumps(fields), encoding="utf-8")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    # ---------------------------------------------------------------- mail

    async def deliver(
        self,
        recipient: str,
        message: bytes | email.message.EmailMessage,
        sender: str = "sender@example.org",
    ) -> None:
        """Deliver one message into recipient's INBOX through Dovecot LMTP."""
        await asyncio.to_thread(self._lmtp_send, sender, recipient, _to_bytes(message))

    def _lmtp_send(self, sender: str, recipient: str, data: bytes) -> None:
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=15) as lmtp:
            lmtp.sendmail(sender, [recipient], data)

    def mailbox_uids(self, address: str, folder: str = "INBOX") -> list[int]:
        """UIDs of all messages in a folder (via doveadm; Dovecot must be running)."""
        out = subprocess.run(
            [DOVEADM, "-c", str(self.conf_file), "search", "-u", address,
             "mailbox", folder, "ALL"],
            check=True, capture_output=True, text=True, timeout=15,
        ).stdout
        return sorted(int(line.split()[1]) for line in out.splitlines() if line.strip())

    def who(self) -> dict[str, int]:
        """IMAP sessions now open per user (`doveadm who -1`: one line per connection, as
        Dovecot's anvil counts them). Users without a session are absent."""
        out = subprocess.run(
            [DOVEADM, "-c", str(self.conf_file), "-f", "tab", "who", "-1"],
            check=True, capture_output=True, text=True, timeout=15,
        ).stdout
        sessions: dict[str, int] = {}
        for line in out.splitlines()[1:]:  # a header, then username, proto, pid, ip
            fields = line.split("\t")
            if len(fields) >= 2 and fields[1] == "imap":
                sessions[fields[0]] = sessions.get(fields[0], 0) + 1
        return sessions

    async def kick(self, address: str) -> None:
        """Disconnect every IMAP session of this user now (`doveadm kick`), as a server
        restart or an admin would: clients must log in again."""
        await asyncio.to_thread(
            subprocess.run,
            [DOVEADM, "-c", str(self.conf_file), "kick", address],
            check=True, capture_output=True, text=True, timeout=15,
        )

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server-side context with a certificate from the test CA (for scripted servers
        that the bot under test must trust like the real ones)."""
        return self._server_tls

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client SSL context trusting the stack's CA (hostname check on)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    # ---------------------------------------------------------------- internals

    def _prepare(self) -> None:
        uid, gid = _ensure_vmail()
        self._vmail = (uid, gid)
        _raise_inotify_limit()
        _ensure_traversable(self.workdir)
        if len(str(self.base_dir)) > MAX_BASE_DIR_LEN:
            # unix socket paths are limited to 108 bytes: use a short dir, linked from workdir
            short = pathlib.Path(tempfile.mkdtemp(prefix="ms-", dir="/tmp"))
            os.chmod(short, 0o755)  # noqa: S103 - Dovecot's unprivileged processes
            with contextlib.suppress(FileNotFoundError):
                self.base_dir.unlink()
            self.base_dir.symlink_to(short)
            self.base_dir = short
        self.base_dir.mkdir(mode=0o755, exist_ok=True)
        (self.workdir / "state").mkdir(mode=0o755, exist_ok=True)
        self.mail_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.mail_dir, uid, gid)

        tls_dir = self.workdir / "tls"
        tls_dir.mkdir(mode=0o755, exist_ok=True)
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert_file, key_file = tls_dir / "server.pem", tls_dir / "server.key"
        with open(cert_file, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        cert.private_key_pem.write_to_path(str(key_file))
        os.chmod(key_file, 0o600)
        self._tls_paths = (cert_file, key_file)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._server_tls = ctx
        (self.users_dir / "passdb").mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.users_dir, 0o755)  # noqa: S103 - read by the auth process (dovecot)
        self.dict_auth_conf.write_text(
            f"uri = fs:posix:prefix={self.users_dir}/\n"
            "default_pass_scheme = PLAIN\n"
            "iterate_disable = yes\n"
            "key passdb {\n  key = passdb/%u\n  format = json\n}\n"
            "passdb_objects = passdb\n"
        )

    def _write_config(self) -> None:
        uid, gid = self._vmail
        values = {
            "INSTANCE": f"mailstack-{self.imap_ssl_port}",
            "BASE_DIR": self.base_dir,
            "STATE_DIR": self.workdir / "state",
            "LOG_PATH": self.log_file,
            "SSL_CERT": self._tls_paths[0],
            "SSL_KEY": self._tls_paths[1],
            "DICT_AUTH_CONF": self.dict_auth_conf,
            "OAUTH2_CONF": self.oauth2_conf,
            "MAIL_DIR": self.mail_dir,
            "VMAIL_UID": uid,
            "VMAIL_GID": gid,
            "IMAP_SSL_PORT": self.imap_ssl_port,
            "IMAP_PLAIN_HOST": BACKEND_HOST,
            "IMAP_PLAIN_PORT": self._imap_plain_backend_port,
            "LMTP_PORT": self.lmtp_port,
        }
        # Dovecot's oauth2 passdb: RFC 7662 introspection by POST (token=...), the user name
        # from the answer's "username", active only when "active" is true
        self.oauth2_conf.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth_introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 5000\n"
        )
        os.chmod(self.oauth2_conf, 0o644)
        text = CONF_TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace("{{" + name + "}}", str(value))
        left = re.findall(r"\{\{\w+\}\}", text)
        if left:
            raise RuntimeError(f"unrendered placeholders in dovecot config: {left}")
        self.conf_file.write_text(text)

    def _master_pid(self) -> int | None:
        try:
            return int((self.base_dir / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _imap_endpoints(self) -> list[tuple[str, int]]:
        return [(self.host, self.imap_ssl_port), (self.host, self.imap_starttls_port),
                (self.host, self.lmtp_port), (BACKEND_HOST, self._imap_plain_backend_port)]

    def _any_imap_port_open(self) -> bool:
        return any(_port_open(h, p) for h, p in self._imap_endpoints())

    async def _greets(self, host: str, port: int, greeting: bytes | None) -> bool:
        """True if host:port accepts and (when given) sends a line starting with greeting."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
        except (TimeoutError, OSError):
            return False
        try:
            if greeting is None:
                return True
            line = await asyncio.wait_for(reader.readline(), 2)
            return line.startswith(greeting)
        except (TimeoutError, OSError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _dovecot_ready(self) -> bool:
        """Dovecot's own listeners: plain IMAP greeting, LMTP greeting, TLS port accepting."""
        return (await self._greets(BACKEND_HOST, self._imap_plain_backend_port, b"* OK")
                and await self._greets(self.host, self.lmtp_port, b"220 ")
                and await self._greets(self.host, self.imap_ssl_port, None))

    def _log_tail(self, offset: int = 0) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return f.read()[-4000:].decode(errors="replace")
        except OSError:
            return ""


class _PortInUse(RuntimeError):
    pass
