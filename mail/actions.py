"""What a user does to one letter on the server: flags (\\Seen, \\Flagged) and moves (Archive,
Trash, Junk, and back). No aiogram here.

Every function works on a logged-in client and ONE UID. A move uses MOVE (RFC 6851) when the
server has it; otherwise ``UID COPY``, ``UID STORE +FLAGS.SILENT (\\Deleted)`` and ``UID
EXPUNGE <that uid>`` (UIDPLUS, RFC 4315). A bare EXPUNGE is never sent: it would also remove
every other letter someone marked \\Deleted. A server with neither MOVE nor UIDPLUS gets the
copy and the \\Deleted flag only (the original stays, hidden by clients that hide deleted
mail, until that user's own client expunges).

Where the letter landed comes from the ``[COPYUID <uidvalidity> <src> <dst>]`` code of the
MOVE/COPY answer (UIDPLUS); without it the caller finds the letter by its Message-ID
(:func:`find_by_message_id`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mail.importer import COMMAND_TIMEOUT, parse_fetch, parse_search, parse_select, run_command
from mail.netguard import require_ok
from mail.outbox import quote_mailbox
from mail.structure import as_count

SEEN = "\\Seen"
FLAGGED = "\\Flagged"
_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Flags:
    seen: bool
    flagged: bool


@dataclass(frozen=True, slots=True)
class Moved:
    """Where the letter is now: `uid` None when the server did not say (no COPYUID); its
    flags as they were just before the move."""

    folder: str
    uidvalidity: int | None
    uid: int | None
    flags: Flags | None = None


class LetterGone(Exception):
    """No letter with that UID in that folder (deleted or moved elsewhere)."""


def _flags_of(record: dict[str, Any]) -> Flags:
    raw = record.get("FLAGS") or []
    names = {bytes(f).decode("ascii", "replace").lower() for f in raw if isinstance(f, bytes | bytearray)}
    return Flags(seen=SEEN.lower() in names, flagged=FLAGGED.lower() in names)


def _has(client: Any, capability: str) -> bool:
    caps = getattr(getattr(client, "protocol", None), "capabilities", None) or ()
    return capability.upper() in {str(c).upper() for c in caps}


async def select(client: Any, folder: str, timeout: float = COMMAND_TIMEOUT) -> int | None:  # noqa: ASYNC109
    """SELECT the folder (decoded name); its UIDVALIDITY."""
    response = await run_command(client, client.select(quote_mailbox(folder)), timeout)
    require_ok(response, f"SELECT {folder}")
    return parse_select(response.lines)["uidvalidity"]


async def flags(client: Any, uid: int, timeout: float = COMMAND_TIMEOUT) -> Flags:  # noqa: ASYNC109
    """The flags of that UID in the selected folder; LetterGone when it is not there."""
    uid = int(uid)
    response = await run_command(client, client.uid("fetch", str(uid), "(UID FLAGS)"), timeout)
    require_ok(response, "FETCH")
    for record in parse_fetch(response.lines):
        if as_count(record.get("UID")) == uid:
            return _flags_of(record)
    raise LetterGone(uid)


async def set_flag(client: Any, uid: int, flag: str, on: bool, timeout: float = COMMAND_TIMEOUT) -> Flags:  # noqa: ASYNC109
    """Add or remove \\Seen or \\Flagged on that UID of the selected folder; the letter's flags
    afterwards (from the server's FETCH answer). LetterGone when it is not there."""
    if flag not in (SEEN, FLAGGED):
        raise ValueError(flag)
    uid = int(uid)
    op = "+FLAGS" if on else "-FLAGS"
    response = await run_command(client, client.uid("store", str(uid), op, f"({flag})"), timeout)
    require_ok(response, "STORE")
    for record in parse_fetch(response.lines):
        if as_count(record.get("UID")) in (uid, 0) and "FLAGS" in record:
            return _flags_of(record)
    # a server may leave the FETCH out (or the letter is gone): ask
    return await flags(client, uid, timeout)


def _copyuid(lines: list[Any], uid: int) -> tuple[int, int] | None:
    for line in lines:
        if not isinstance(line, bytes | bytearray):
            continue
        m = _COPYUID.search(bytes(line))
        if not m:
            continue
        sources, targets = _expand(m.group(2)), _expand(m.group(3))
        if uid in sources and len(sources) == len(targets):
            return int(m.group(1)), targets[sources.index(uid)]
    return None


def _expand(uid_set: bytes) -> list[int]:
    out: list[int] = []
    for part in uid_set.decode("ascii").split(","):
        if ":" in part:
            low, high = (int(x) for x in part.split(":", 1))
            if high - low > 10_000:
                return []
            out.extend(range(min(low, high), max(low, high) + 1))
        elif part:
            out.append(int(part))
    return out


async def move(
    client: Any, uid: int, target: str, timeout: float = COMMAND_TIMEOUT  # noqa: ASYNC109
) -> Moved:
    """Move that UID of the selected folder to `target` (decoded name). LetterGone when it is
    not in the selected folder any more."""
    uid = int(uid)
    before = await flags(client, uid, timeout)  # LetterGone: a MOVE of a missing UID says OK as well
    quoted = quote_mailbox(target)
    if _has(client, "MOVE"):
        response = await run_command(client, client.uid("move", str(uid), quoted), timeout)
        require_ok(response, "MOVE")
    else:
        response = await run_command(client, client.uid("copy", str(uid), quoted), timeout)
        require_ok(response, "COPY")
        stored = await run_command(
            client, client.uid("store", str(uid), "+FLAGS.SILENT", "(\\Deleted)"), timeout
        )
        require_ok(stored, "STORE")
        if _has(client, "UIDPLUS"):  # only this UID; never a bare EXPUNGE
            expunged = await run_command(client, client.uid("expunge", str(uid)), timeout)
            require_ok(expunged, "UID EXPUNGE")
    landed = _copyuid(response.lines, uid)
    if landed is None:
        return Moved(target, None, None, before)
    return Moved(target, landed[0], landed[1], before)


async def find_by_message_id(
    client: Any, message_id: str, timeout: float = COMMAND_TIMEOUT  # noqa: ASYNC109
) -> int | None:
    """The newest UID of the selected folder whose Message-ID header is `message_id`."""
    clean = message_id.strip()
    if not clean or any(c in clean for c in '\r\n"\\') or len(clean) > 900:
        return None
    response = await run_command(
        client, client.uid_search("HEADER", "Message-ID", f'"{clean}"', charset=None), timeout
    )
    if getattr(response, "result", None) != "OK":
        return None
    uids = parse_search(response.lines)
    return max(uids) if uids else None


async def flags_of(
    client: Any, uids: list[int], timeout: float = COMMAND_TIMEOUT  # noqa: ASYNC109
) -> dict[int, Flags]:
    """The flags of those UIDs of the selected folder, in one ``UID FETCH``; a UID missing
    from the answer is not in the folder any more."""
    if not uids:
        return {}
    wanted = {int(u) for u in uids}
    response = await run_command(
        client, client.uid("fetch", ",".join(str(u) for u in sorted(wanted)), "(UID FLAGS)"), timeout
    )
    require_ok(response, "FETCH")
    out: dict[int, Flags] = {}
    for record in parse_fetch(response.lines):
        uid = as_count(record.get("UID"))
        if uid in wanted:
            out[uid] = _flags_of(record)
    return out
