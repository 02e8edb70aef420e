"""Finding the Sent folder and filing the copy on servers unlike Dovecot: an older IMAP server
(scripted, over TLS on loopback) without SPECIAL-USE and without UIDPLUS, whose Sent folder is
only known by its (Russian, modified UTF-7) name and whose APPEND answers no APPENDUID. And
Dovecot itself, asked with LIST ... RETURN (SPECIAL-USE)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl

from mail.imap import close_imap, open_imap
from mail.netguard import HostGuard
from mail.outbox import append_sent, find_sent_folder
from mail.types import Credentials, Security, ServerSettings
from tests.harness.mailstack import MailStack, MailUser

SENT_WIRE = "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"  # Отправленные


class OldImapServer:
    """IMAP4rev1 and nothing else: LIST without special-use attributes, APPEND without
    APPENDUID, SELECT and UID SEARCH HEADER over what was appended."""

    def __init__(self, tls: ssl.SSLContext, folders: list[str]) -> None:
        self.tls = tls
        self.folders = folders
        self.appended: dict[str, list[bytes]] = {}
        self.commands: list[str] = []
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> OldImapServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        selected = ""
        try:
            await send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] old server ready")
            while raw := await reader.readline():
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                tag, _, rest = line.partition(" ")
                cmd, _, args = rest.partition(" ")
                cmd = cmd.upper()
                self.commands.append(f"{cmd} {args}" if cmd != "LOGIN" else "LOGIN")
                if cmd == "CAPABILITY":
                    await send("* CAPABILITY IMAP4rev1 AUTH=PLAIN")
                    await send(f"{tag} OK done")
                elif cmd == "LOGIN":
                    await send(f"{tag} OK logged in")
                elif cmd == "LIST":
                    for name in self.folders:
                        await send(f'* LIST (\\HasNoChildren) "/" {name}')
                    await send(f"{tag} OK LIST done")
                elif cmd == "APPEND":
                    m = re.match(r'"((?:[^"\\]|\\.)*)" \(\\Seen\) \{(\d+)\}$', args)
                    assert m, args
                    await send("+ go ahead")
                    data = await reader.readexactly(int(m.group(2)))
                    await reader.readline()
                    self.appended.setdefault(m.group(1), []).append(data)
                    await send(f"{tag} OK APPEND completed")  # no [APPENDUID ...]
                elif cmd == "SELECT":
                    selected = args.strip('"')
                    await send(f"* {len(self.appended.get(selected, []))} EXISTS")
                    await send("* OK [UIDVALIDITY 777] UIDs valid")
                    await send(f"{tag} OK [READ-WRITE] SELECT completed")
                elif cmd == "UID" and args.upper().startswith("SEARCH HEADER MESSAGE-ID "):
                    wanted = args.split(" ", 3)[3].strip('"').encode()
                    uids = [str(40 + n) for n, data in enumerate(self.appended.get(selected, []), 1) if wanted in data]
                    await send("* SEARCH " + " ".join(uids))
                    await send(f"{tag} OK SEARCH completed")
                elif cmd == "LOGOUT":
                    await send("* BYE bye")
                    await send(f"{tag} OK LOGOUT completed")
                    return
                else:
                    await send(f"{tag} BAD unknown command")
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


async def test_sent_folder_by_name_and_uid_by_search_on_an_old_server(mail_stack: MailStack) -> None:
    server = await OldImapServer(
        mail_stack.server_ssl_context(), ["INBOX", "Drafts", SENT_WIRE, '"Sent Old Archive"']
    ).start()
    try:
        client = await open_imap(
            ServerSettings("localhost", server.port, Security.SSL), Credentials("u@example.org", password="pw"),
            ssl_context=mail_stack.client_ssl_context(), guard=HostGuard(allow_private=True), timeout=5,
        )
        try:
            folder = await find_sent_folder(client, timeout=5)
            assert folder == "Отправленные"
            message = b"Message-ID: <abc@example.org>\r\nSubject: x\r\n\r\nhello\r\n"
            appended = await append_sent(client, folder, message, "<abc@example.org>", timeout=5)
        finally:
            await close_imap(client)
    finally:
        await server.close()
    assert appended.folder == "Отправленные" and appended.uidvalidity == 777 and appended.uid == 41
    assert server.appended == {SENT_WIRE: [message]}
    assert 'LIST "" "*"' in server.commands and not any("SPECIAL-USE" in c for c in server.commands)


async def test_dovecot_special_use(mail_stack: MailStack, mail_user: MailUser) -> None:
    client = await open_imap(
        ServerSettings("localhost", mail_stack.imap_ssl_port, Security.SSL),
        Credentials(mail_user.address, password=mail_user.password),
        ssl_context=mail_stack.client_ssl_context(), guard=HostGuard(allow_private=True), timeout=5,
    )
    try:
        # a folder named like a Sent folder loses against the one flagged \Sent
        assert (await client.create('"Sent Items"')).result == "OK"
        assert await find_sent_folder(client, timeout=5) == "Sent"
        appended = await append_sent(client, "Sent", b"Message-ID: <x@y>\r\n\r\nhi\r\n", "<x@y>", timeout=5)
    finally:
        await close_imap(client)
    assert appended.uid == 1 and appended.uidvalidity
    assert mail_stack.mailbox_uids(mail_user.address, "Sent") == [1]
