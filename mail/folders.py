"""Find a mailbox's Archive, Trash and Junk folders the way good mail clients do.

1. SPECIAL-USE (RFC 6154): ``LIST "" "*" RETURN (SPECIAL-USE)`` when the server has
   SPECIAL-USE and LIST-EXTENDED, else a plain ``LIST "" "*"``, whose attributes many
   servers fill with the same flags (Dovecot, Gmail, Yandex, Mail.ru; the XLIST-era
   ``\\Spam`` and ``\\AllMail`` names are understood too).
2. The provider's own names, when no folder carries the flag: Gmail's ``[Gmail]/...`` (and
   ``[Google Mail]/...`` in Germany and the UK), the Russian names Mail.ru, Yandex and Rambler
   show (``Корзина``, ``Удалённые``, ``Спам``, ``Архив``), Outlook's ``Deleted Items``,
   ``Junk Email``, Yahoo's ``Bulk Mail``.
3. Common names of other servers (``Trash``, ``Deleted Messages``, ``Junk``, ``Spam``,
   ``Archive``, ``INBOX.Trash`` for Courier-style hierarchies, ...).

A role whose folder is not found stays None: the bot then does not offer that button.

Gmail (capability ``X-GM-EXT-1``) has no archive folder: archiving there is taking the
letter out of INBOX, which is moving it to ``[Gmail]/All Mail`` (the ``\\All`` folder), so
that folder is the archive target on Gmail only (on other servers ``\\All`` is a virtual
folder, never a move target).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mail.importer import run_command
from mail.netguard import require_ok
from mail.outbox import FolderInfo, parse_list


class Role(str, enum.Enum):
    ARCHIVE = "archive"
    TRASH = "trash"
    JUNK = "junk"


# RFC 6154 attributes, lower case as parse_list keeps them; the XLIST spellings after them
ROLE_FLAGS: dict[Role, tuple[str, ...]] = {
    Role.ARCHIVE: ("\\archive",),
    Role.TRASH: ("\\trash",),
    Role.JUNK: ("\\junk", "\\spam"),
}
ALL_FLAGS = ("\\all", "\\allmail")

# provider names first (they are what those providers show), then common names; compared
# case-insensitively, with the folder's own hierarchy delimiter tried as "/" or "."
KNOWN_NAMES: dict[Role, tuple[str, ...]] = {
    Role.ARCHIVE: (
        "Архив", "Archive", "Archives", "INBOX.Archive", "INBOX/Archive", "Archiv",
    ),
    Role.TRASH: (
        "[Gmail]/Trash", "[Gmail]/Bin", "[Google Mail]/Trash", "[Google Mail]/Bin",
        "Корзина", "Удалённые", "Удаленные", "Deleted Items", "Deleted Messages", "Deleted",
        "Trash", "Bin", "INBOX.Trash", "INBOX/Trash",
    ),
    Role.JUNK: (
        "[Gmail]/Spam", "[Google Mail]/Spam", "Спам", "Junk Email", "Junk E-mail", "Bulk Mail",
        "Junk", "Spam", "INBOX.Junk", "INBOX/Junk", "INBOX.Spam", "INBOX/Spam",
    ),
}
GMAIL_ALL_NAMES = ("[Gmail]/All Mail", "[Google Mail]/All Mail")


@dataclass(frozen=True, slots=True)
class SpecialFolders:
    """Where each action moves a letter (decoded names); None: no such folder."""

    archive: str | None = None
    trash: str | None = None
    junk: str | None = None
    gmail: bool = False  # archive = out of INBOX into All Mail
    move: bool = False  # the server has MOVE (RFC 6851)
    uidplus: bool = False  # UID EXPUNGE and COPYUID (RFC 4315)

    def folder(self, role: Role) -> str | None:
        return {Role.ARCHIVE: self.archive, Role.TRASH: self.trash, Role.JUNK: self.junk}[role]


def _usable(folders: Sequence[FolderInfo]) -> list[FolderInfo]:
    return [
        f for f in folders
        if not ({"\\noselect", "\\nonexistent"} & f.flags) and f.name.upper() != "INBOX"
    ]


def _by_name(usable: Sequence[FolderInfo], names: Sequence[str]) -> str | None:
    index: dict[str, str] = {}
    for f in usable:
        index.setdefault(f.name.casefold(), f.name)
        if f.delimiter and f.delimiter not in "/":
            index.setdefault(f.name.replace(f.delimiter, "/").casefold(), f.name)
    for candidate in names:
        found = index.get(candidate.casefold())
        if found is not None:
            return found
    return None


def choose_folders(
    folders: Sequence[FolderInfo], *, gmail: bool = False, move: bool = False, uidplus: bool = False
) -> SpecialFolders:
    """Pick each role's folder from a LIST answer (see the module doc for the order)."""
    usable = _usable(folders)
    found: dict[Role, str | None] = {}
    for role, flags in ROLE_FLAGS.items():
        flagged = [f.name for f in usable if set(flags) & f.flags]
        found[role] = flagged[0] if flagged else _by_name(usable, KNOWN_NAMES[role])
    if gmail:
        everything = [f.name for f in usable if set(ALL_FLAGS) & f.flags]
        found[Role.ARCHIVE] = everything[0] if everything else _by_name(usable, GMAIL_ALL_NAMES)
    return SpecialFolders(
        archive=found[Role.ARCHIVE],
        trash=found[Role.TRASH],
        junk=found[Role.JUNK],
        gmail=gmail,
        move=move,
        uidplus=uidplus,
    )


def _has(client: Any, capability: str) -> bool:
    caps = getattr(getattr(client, "protocol", None), "capabilities", None) or ()
    return capability.upper() in {str(c).upper() for c in caps}


async def discover_folders(client: Any, *, timeout: float = 15.0) -> SpecialFolders:  # noqa: ASYNC109
    """The special folders of a logged-in client (one or two LIST commands)."""
    gmail = _has(client, "X-GM-EXT-1")
    move, uidplus = _has(client, "MOVE"), _has(client, "UIDPLUS")
    listed: list[FolderInfo] = []
    if _has(client, "SPECIAL-USE") and _has(client, "LIST-EXTENDED"):
        response = await run_command(client, client.list('""', '"*" RETURN (SPECIAL-USE)'), timeout)
        if getattr(response, "result", None) == "OK":
            listed = parse_list(response.lines)
    if not listed:
        response = await run_command(client, client.list('""', '"*"'), timeout)
        require_ok(response, "LIST")
        listed = parse_list(response.lines)
    return choose_folders(listed, gmail=gmail, move=move, uidplus=uidplus)
