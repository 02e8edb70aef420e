"""A light IMAP server for benchmarks: many IDLE connections, few letters, no disk.

It speaks just enough IMAP4rev1 for `mail.watcher.WatcherPool` (and `mail.imap.open_imap`)
to watch a mailbox: CAPABILITY, LOGIN, AUTHENTICATE PLAIN (with or without SASL-IR),
SELECT/EXAMINE, IDLE/DONE, NOOP, LOGOUT, SEARCH / UID SEARCH (``UID n:*``, ``ALL``), FETCH /
UID FETCH (UID, FLAGS, RFC822.SIZE, INTERNALDATE, BODYSTRUCTURE, ``BODY.PEEK[...]``
sections with ``<start.count>``). Letters live in memory; `deliver()` appends one to a user's
INBOX and pushes ``* n EXISTS`` to every session of that user that is IDLE (as Dovecot does),
at once, not after Dovecot's half second.

Any login is accepted unless `passwords` is given. It is not a mail server: no flags are
stored, one folder (INBOX), no literal arguments (`LOGIN` must use quoted strings or atoms).

Use it in-process::

    server = await idle_server.start("127.0.0.1", 0, tls_ctx)   # tls_ctx None: plain
    server.port; server.deliver("user@example.org", subject="hi"); await server.close()

or as a process of its own, so that its memory does not mix with the client's::

    python bench/idle_server.py --port 0 [--tls-cert cert.pem --tls-key key.pem]

prints ``READY <port>`` on stdout, then reads commands on stdin, one per line:
``DELIVER <user> <subject>`` (answers ``OK <uid> <push>``, push: the server's
time.monotonic() when ``* n EXISTS`` was written to an IDLE session, ``-`` if none idled),
``STATS`` (``OK <connections> <idling> <rss KiB>``), ``USERS`` (``OK <users idling>
<users with more than one session>``), ``GC`` (``OK <full collections> <longest ms>`` since
the last ``GC``), ``QUIT``. `spawn()` does that from Python. As a process of its own it keeps
the garbage collector's full passes out of the way as the bot does (`bot/gc_pauses.py`): a
pass over 10,000 sessions' objects would stall every session at once, and the bench would
count that stall as the bot's latency.

TLS: the server side uses the same small-buffer TLS layer as the client (`mail.tls`), so
10,000 TLS sessions fit in a few hundred MiB here too (asyncio's own TLS transport would hold
256 KiB per connection on this side as well).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import re
import resource
import ssl
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stalls import FullCollections  # noqa: E402
from bot.gc_pauses import GcPauses  # noqa: E402
from mail.tls import TLSProtocol  # noqa: E402

CAPABILITIES = "IMAP4rev1 IDLE SASL-IR AUTH=PLAIN LITERAL+ UIDPLUS"
MAX_LINE = 64 * 1024
_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|(\S+)')
_SECTION = re.compile(r"BODY(?:\.PEEK)?\[([^\]]*)\](?:<(\d+)\.(\d+)>)?", re.IGNORECASE)


@dataclass(slots=True)
class Letter:
    uid: int
    header: bytes
    body: bytes
    date: float

    @property
    def raw(self) -> bytes:
        return self.header + b"\r\n" + self.body


@dataclass
class Mailbox:
    uidvalidity: int
    letters: list[Letter] = field(default_factory=list)
    next_uid: int = 1
    sessions: set[Session] = field(default_factory=set)


def _tokens(data: bytes) -> list[str]:
    out = []
    for m in _TOKEN.finditer(data):
        if m.group(1) is not None:
            out.append(re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("utf-8", "replace"))
        else:
            out.append(m.group(2).decode("utf-8", "replace"))
    return out


def _number_set(spec: str, top: int) -> Iterator[tuple[int, int]]:
    """``1:3,7,9:*`` -> ranges; ``*`` is `top` (RFC 3501: ``n:*`` also matches `top` when
    n > top)."""
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a = top if lo == "*" else int(lo)
        b = a if not hi else (top if hi == "*" else int(hi))
        yield (min(a, b), max(a, b))


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


class Session(asyncio.Protocol):
    """One client connection (plain, or under `mail.tls.TLSProtocol`)."""

    def __init__(self, server: IdleServer) -> None:
        self.server = server
        self.transport: Any = None
        self.buffer = b""
        self.user: str | None = None
        self.mailbox: Mailbox | None = None
        self.idle_tag: str | None = None
        self.sasl_tag: str | None = None
        self.known = 0  # EXISTS last told to the client

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.server.sessions.add(self)
        self.send(f"* OK [CAPABILITY {CAPABILITIES}] bench idle server ready")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.sessions.discard(self)
        if self.mailbox is not None:
            self.mailbox.sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            self.line(line.rstrip(b"\r"))
        if len(self.buffer) > MAX_LINE:
            self.send("* BYE line too long")
            self.transport.close()

    def send(self, text: str | bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            data = text if isinstance(text, bytes) else text.encode()
            self.transport.write(data + b"\r\n")

    # ------------------------------------------------------------------ commands
    def line(self, line: bytes) -> None:
        if self.idle_tag is not None:
            if line.strip().upper() == b"DONE":
                self.server.counts["DONE"] += 1
                tag, self.idle_tag = self.idle_tag, None
                self.send(f"{tag} OK IDLE terminated")
            return
        if self.sasl_tag is not None:
            tag, self.sasl_tag = self.sasl_tag, None
            self.finish_plain(tag, line.strip())
            return
        words = _tokens(line)
        if len(words) < 2:
            self.send("* BAD no tag or command")
            return
        tag, name, args = words[0], words[1].upper(), words[2:]
        uid = False
        if name == "UID" and args:
            uid, name, args = True, args[0].upper(), args[1:]
        self.server.counts[name] += 1
        handler = getattr(self, f"do_{name}", None)
        if handler is None:
            self.send(f"{tag} BAD unknown command {name[:20]}")
            return
        try:
            handler(tag, args, uid)
        except (ValueError, IndexError) as exc:
            self.send(f"{tag} BAD {exc}")

    def do_CAPABILITY(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        self.send(f"* CAPABILITY {CAPABILITIES}")
        self.send(f"{tag} OK CAPABILITY completed")

    def do_NOOP(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        self.tell_exists()
        self.send(f"{tag} OK NOOP completed")

    def do_LOGOUT(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        self.send("* BYE logging out")
        self.send(f"{tag} OK LOGOUT completed")
        self.transport.close()

    def do_LOGIN(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        self.log_in(tag, args[0], args[1])

    def do_AUTHENTICATE(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        if args[0].upper() != "PLAIN":
            self.send(f"{tag} NO [CANNOT] only PLAIN")
        elif len(args) > 1:
            self.finish_plain(tag, args[1].encode())
        else:
            self.sasl_tag = tag
            self.send("+ ")

    def finish_plain(self, tag: str, encoded: bytes) -> None:
        if encoded == b"*":
            self.send(f"{tag} BAD AUTHENTICATE cancelled")
            return
        try:
            _, user, password = base64.b64decode(encoded, validate=True).split(b"\0")
        except ValueError:
            self.send(f"{tag} BAD bad PLAIN message")
            return
        self.log_in(tag, user.decode("utf-8", "replace"), password.decode("utf-8", "replace"))

    def log_in(self, tag: str, user: str, password: str) -> None:
        if self.user is not None:
            self.send(f"{tag} BAD already logged in")
        elif not self.server.check(user, password):
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.")
        else:
            self.user = user
            self.send(f"{tag} OK [CAPABILITY {CAPABILITIES}] Logged in")

    def do_SELECT(self, tag: str, args: list[str], uid: bool, verb: str = "SELECT") -> None:  # noqa: N802
        if self.user is None:
            self.send(f"{tag} BAD log in first")
            return
        if args[0].upper() != "INBOX":
            self.send(f"{tag} NO [NONEXISTENT] only INBOX here")
            return
        if self.mailbox is not None:
            self.mailbox.sessions.discard(self)
        box = self.mailbox = self.server.mailbox(self.user)
        box.sessions.add(self)
        self.known = len(box.letters)
        self.send(r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)")
        self.send(f"* {self.known} EXISTS")
        self.send("* 0 RECENT")
        self.send(f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid")
        self.send(f"* OK [UIDNEXT {box.next_uid}] Predicted next UID")
        mode = "READ-ONLY" if verb == "EXAMINE" else "READ-WRITE"
        self.send(f"{tag} OK [{mode}] {verb} completed")

    def do_EXAMINE(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        self.do_SELECT(tag, args, uid, "EXAMINE")

    def do_IDLE(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        if self.mailbox is None:
            self.send(f"{tag} BAD select first")
            return
        if self.server.refuse_idle:
            self.send(f"{tag} NO [UNAVAILABLE] IDLE not now")
            return
        self.idle_tag = tag
        self.send("+ idling")
        self.tell_exists()

    def tell_exists(self) -> None:
        if self.mailbox is not None and len(self.mailbox.letters) != self.known:
            self.known = len(self.mailbox.letters)
            self.send(f"* {self.known} EXISTS")

    def selected(self, tag: str) -> list[Letter] | None:
        if self.mailbox is None:
            self.send(f"{tag} BAD select first")
            return None
        return self.mailbox.letters[: self.known]

    def pick(self, letters: list[Letter], spec: str, uid: bool) -> list[tuple[int, Letter]]:
        if not letters:
            return []
        top = letters[-1].uid if uid else len(letters)
        ranges = list(_number_set(spec, top))
        out = []
        for seq, letter in enumerate(letters, 1):
            key = letter.uid if uid else seq
            if any(a <= key <= b for a, b in ranges):
                out.append((seq, letter))
        return out

    def do_SEARCH(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        letters = self.selected(tag)
        if letters is None:
            return
        if args and args[0].upper() == "CHARSET":
            args = args[2:]
        if not args or args[0].upper() == "ALL":
            found = list(enumerate(letters, 1))
        elif args[0].upper() == "UID":
            found = self.pick(letters, args[1], True)
        else:
            found = self.pick(letters, args[0], False)
        numbers = [str(letter.uid if uid else seq) for seq, letter in found]
        self.send(" ".join(["* SEARCH", *numbers]))
        self.send(f"{tag} OK SEARCH completed")

    def do_FETCH(self, tag: str, args: list[str], uid: bool) -> None:  # noqa: N802
        letters = self.selected(tag)
        if letters is None:
            return
        spec, items = args[0], " ".join(args[1:]).strip("()")
        wanted = _SECTION.sub("", items).upper().split()
        sections = _SECTION.findall(items)
        for seq, letter in self.pick(letters, spec, uid):
            parts: list[bytes] = [b"UID %d" % letter.uid]
            if "FLAGS" in wanted:
                parts.append(b"FLAGS ()")
            if "RFC822.SIZE" in wanted:
                parts.append(b"RFC822.SIZE %d" % len(letter.raw))
            if "INTERNALDATE" in wanted:
                when = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(letter.date))
                parts.append(f'INTERNALDATE "{when}"'.encode())
            if "BODYSTRUCTURE" in wanted:
                lines = letter.body.count(b"\n")
                parts.append(
                    b'BODYSTRUCTURE ("text" "plain" ("charset" "utf-8") NIL NIL "8bit" %d %d'
                    b" NIL NIL NIL NIL)" % (len(letter.body), lines)
                )
            for section, start, count in sections:
                data = self.section(letter, section)
                name = f"BODY[{section}]"
                if start:
                    data = data[int(start) : int(start) + int(count)]
                    name += f"<{start}>"
                parts.append(name.encode() + b" " + _literal(data))
            self.send(b"* %d FETCH (" % seq + b" ".join(parts) + b")")
        self.send(f"{tag} OK FETCH completed")

    @staticmethod
    def section(letter: Letter, section: str) -> bytes:
        upper = section.upper()
        if upper.startswith("HEADER.FIELDS"):
            names = {n.encode() for n in upper.partition("(")[2].rstrip(")").split()}
            kept = [
                h
                for h in letter.header.split(b"\r\n")
                if h and h.split(b":", 1)[0].strip().upper() in names
            ]
            return b"".join(h + b"\r\n" for h in kept) + b"\r\n"
        if upper == "HEADER":
            return letter.header + b"\r\n"
        if upper in ("TEXT", "1"):
            return letter.body
        return letter.raw  # "" (the whole message)


class IdleServer:
    """The server: `start()` makes one. See the module doc."""

    def __init__(self, tls_ctx: ssl.SSLContext | None, passwords: dict[str, str] | None) -> None:
        self.tls_ctx = tls_ctx
        self.passwords = passwords
        self.mailboxes: dict[str, Mailbox] = {}
        self.sessions: set[Session] = set()
        self.counts: Counter[str] = Counter()  # commands received, by name (and DONE)
        self.refuse_idle = False  # answer IDLE with NO (tests)
        self.server: asyncio.AbstractServer | None = None
        self.host = ""
        self.port = 0
        self._uidvalidity = int(time.time())
        self.last_push: float | None = None  # time.monotonic() of the last deliver()'s push

    def check(self, user: str, password: str) -> bool:
        return self.passwords is None or self.passwords.get(user) == password

    def mailbox(self, user: str) -> Mailbox:
        box = self.mailboxes.get(user)
        if box is None:
            box = self.mailboxes[user] = Mailbox(self._uidvalidity)
        return box

    def deliver(self, user: str, subject: str = "bench", body: str = "hello\r\n") -> int:
        """Append a letter to `user`'s INBOX; every IDLE session of the user hears of it now.
        Returns its UID."""
        box = self.mailbox(user)
        uid = box.next_uid
        box.next_uid += 1
        now = time.time()
        header = (
            "From: Bench <bench@example.net>\r\n"
            f"To: {user}\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {format_datetime(time_utc(now))}\r\n"
            f"Message-ID: <{uid}.{box.uidvalidity}.{abs(hash(user))}@bench>\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
        ).encode()
        box.letters.append(Letter(uid, header, body.encode(), now))
        self.last_push = None
        for session in list(box.sessions):
            if session.idle_tag is not None:
                session.tell_exists()
                self.last_push = time.monotonic()  # `* n EXISTS` written to the socket
        return uid

    def kick(self, user: str) -> int:
        """Say BYE to every session of `user` and close them (as a server restart would).
        Returns how many."""
        kicked = [s for s in self.sessions if s.user == user]
        for session in kicked:
            session.send("* BYE server shutting down")
            session.transport.close()
        return len(kicked)

    def idling(self) -> int:
        return sum(1 for s in self.sessions if s.idle_tag is not None)

    def users(self) -> tuple[int, int]:
        """(users with at least one session in IDLE, users with more than one session)."""
        idle = multi = 0
        for box in self.mailboxes.values():
            if any(s.idle_tag is not None for s in box.sessions):
                idle += 1
            if len(box.sessions) > 1:
                multi += 1
        return idle, multi

    def _protocol(self) -> asyncio.Protocol:
        session = Session(self)
        if self.tls_ctx is None:
            return session
        return TLSProtocol(self.tls_ctx, session, server_side=True)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await self.server.wait_closed()


def time_utc(ts: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC)


async def start(
    host: str,
    port: int,
    tls_ctx: ssl.SSLContext | None,
    *,
    passwords: dict[str, str] | None = None,
    backlog: int = 4096,
) -> IdleServer:
    """Listen on host:port (0: any free port, see `.port`); TLS from the first byte when
    `tls_ctx` (a server context) is given, else plain."""
    server = IdleServer(tls_ctx, passwords)
    server.server = await asyncio.get_running_loop().create_server(
        server._protocol, host, port, backlog=backlog
    )
    server.host = host
    server.port = server.server.sockets[0].getsockname()[1]
    return server


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit towards `wanted` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


# ---------------------------------------------------------------------- separate process
class Spawned:
    """The server in a child process (see `spawn`)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self._lock = asyncio.Lock()

    async def _ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write(line.encode() + b"\n")
            await self.proc.stdin.drain()
            answer = (await self.proc.stdout.readline()).decode().strip()
        if not answer.startswith("OK"):
            raise RuntimeError(f"idle server: {line!r} -> {answer!r}")
        return answer[2:].strip()

    async def deliver(self, user: str, subject: str) -> int:
        return int((await self._ask(f"DELIVER {user} {subject}")).split()[0])

    async def deliver_timed(self, user: str, subject: str) -> tuple[int, float | None]:
        """Deliver; (UID, time.monotonic() in the server when `* n EXISTS` went to an IDLE
        session of the user, or None when none was idling). CLOCK_MONOTONIC is one clock for
        every process of the machine, so the time compares with the caller's."""
        uid, pushed = (await self._ask(f"DELIVER {user} {subject}")).split()
        return int(uid), (float(pushed) if pushed != "-" else None)

    async def users(self) -> tuple[int, int]:
        """(users with a session in IDLE, users with more than one session)."""
        idle, multi = (int(x) for x in (await self._ask("USERS")).split())
        return idle, multi

    async def stats(self) -> tuple[int, int, int]:
        conns, idling, rss = (int(x) for x in (await self._ask("STATS")).split())
        return conns, idling, rss

    async def full_collections(self) -> tuple[int, float]:
        """The server's full garbage collections since the last ask: (count, longest ms)."""
        count, longest = (await self._ask("GC")).split()
        return int(count), float(longest)

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ask("QUIT"), 10)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()


async def spawn(
    host: str = "127.0.0.1", *, cert: str | None = None, key: str | None = None
) -> Spawned:
    """Run the server in a child process; TLS when cert and key (PEM files) are given."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--host", host, "--port", "0"]
    if cert and key:
        cmd += ["--tls-cert", cert, "--tls-key", key]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    ready = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
    if len(ready) != 2 or ready[0] != "READY":
        proc.kill()
        raise RuntimeError(f"idle server did not start: {ready}")
    return Spawned(proc, int(ready[1]))


async def _serve(args: argparse.Namespace) -> None:
    raise_nofile(1 << 20)
    ctx = None
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
    server = await start(args.host, args.port, ctx)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # the server stands in for the mail provider: its own garbage collection (10,000 sessions'
    # objects walked in each full pass) must not pass for the bot's latency, so it keeps its
    # full passes out of the way as the bot does (bot/gc_pauses.py), and counts those left
    pauses = GcPauses()
    pauses.run_in_background()
    collections = FullCollections()
    full = collections.full
    print(f"READY {server.port}", flush=True)
    try:
        while line := (await reader.readline()).decode().strip():
            verb, _, rest = line.partition(" ")
            if verb == "DELIVER":
                user, _, subject = rest.partition(" ")
                uid = server.deliver(user, subject or "bench")
                pushed = "-" if server.last_push is None else repr(server.last_push)
                print(f"OK {uid} {pushed}", flush=True)
            elif verb == "STATS":
                print(f"OK {len(server.sessions)} {server.idling()} {rss_kib()}", flush=True)
            elif verb == "USERS":
                idle, multi = server.users()
                print(f"OK {idle} {multi}", flush=True)
            elif verb == "GC":
                print(f"OK {len(full)} {max(full, default=0.0) * 1000:.1f}", flush=True)
                full.clear()
            elif verb == "QUIT":
                print("OK", flush=True)
                break
            else:
                print(f"ERR unknown {verb}", flush=True)
    finally:
        collections.close()
        await pauses.close()
        await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    asyncio.run(_serve(parser.parse_args()))
