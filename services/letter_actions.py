"""Acting on a received letter from the chat: mark read / unread, flag / unflag, Archive,
Delete (to Trash, never expunged outright), Spam (to Junk), and Undo of the last three for
UNDO_SECONDS. No aiogram here: the handler renders the LetterState this returns.

* Every action checks the letter's owner first (`MailboxService.owned_letter`, as Open does):
  a forged or another user's letter id raises LetterNotFound before any server is asked.
* No transaction is held across the IMAP round trip: `MailboxService.credentials` commits
  the update's work so far (services.hooks.checkpoint) right before the connection opens;
  what the server answered is written afterwards and committed by the update's middleware.
* Where a letter went is kept in `LetterMark` (folder, UIDVALIDITY and UID there from the
  server's COPYUID), so Undo moves exactly that letter back; without COPYUID it is found by
  its Message-ID. `undo_until` lives in the database, so Undo works (and is refused once too
  late) on whichever instance of a fleet gets the press.
* Undo puts the letter back into INBOX under a new UID. The letter row takes that UID at once,
  so the watcher, which alerts UIDs it does not know, treats it as known; if the watcher was
  quicker and stored it as a new letter, that duplicate row is removed (its alert, unless
  already on its way, then never goes out).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from mail import actions as imap_actions
from mail.actions import FLAGGED, SEEN, Flags, LetterGone, Moved
from mail.compose import others_addressed
from mail.folders import Role, SpecialFolders, discover_folders
from mail.imap import MailIMAP, close_imap, open_imap
from mail.types import MailCheckError
from services.deps import MailDeps
from services.mailboxes import LetterNotFound, MailboxService, servers_of
from storage.folders import save_folders
from storage.models import ItemLink, Letter, LetterMark, LetterPlace, Mailbox, MailboxFolders, User

log = logging.getLogger(__name__)

INBOX = "INBOX"
UNDO_SECONDS = 30.0
MAX_ID = 2**31
ALERT_DISCOVERY_TIMEOUT = 5.0
TRACKED = 200  # newest alerted letters per mailbox whose state follows the server's


class Clock(Protocol):
    def wall(self) -> datetime: ...


class SystemWallClock:
    def wall(self) -> datetime:
        return datetime.now(UTC)


class Action(str, enum.Enum):
    READ = "read"
    UNREAD = "unread"
    FLAG = "flag"
    UNFLAG = "unflag"
    ARCHIVE = "archive"
    TRASH = "trash"
    JUNK = "junk"
    UNDO = "undo"
    STATE = "state"  # just tell where the letter is


MOVES: dict[Action, Role] = {Action.ARCHIVE: Role.ARCHIVE, Action.TRASH: Role.TRASH, Action.JUNK: Role.JUNK}
PLACE_OF: dict[Role, LetterPlace] = {
    Role.ARCHIVE: LetterPlace.ARCHIVE, Role.TRASH: LetterPlace.TRASH, Role.JUNK: LetterPlace.JUNK,
}
FLAG_OF: dict[Action, tuple[str, bool]] = {
    Action.READ: (SEEN, True), Action.UNREAD: (SEEN, False),
    Action.FLAG: (FLAGGED, True), Action.UNFLAG: (FLAGGED, False),
}


class Outcome(str, enum.Enum):
    DONE = "done"
    GONE = "gone"  # not in INBOX any more (deleted or moved by another client)
    ELSEWHERE = "elsewhere"  # the bot moved it already (Archive pressed twice, a stale button)
    TOO_LATE = "too_late"  # Undo after its time
    NO_FOLDER = "no_folder"  # the mailbox has no folder for that action
    NOTHING = "nothing"  # Undo of a letter that is in INBOX


@dataclass(frozen=True, slots=True)
class LetterState:
    """What the buttons show."""

    letter_id: int
    seen: bool
    flagged: bool
    place: LetterPlace
    folder: str | None  # where the bot moved it, when not in INBOX
    undo_until: datetime | None  # Undo is offered until then
    roles: frozenset[Role]  # moves the mailbox has a folder for

    def can_undo(self, now: datetime) -> bool:
        return self.undo_until is not None and now < self.undo_until


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    outcome: Outcome
    state: LetterState
    undo_seconds: float = UNDO_SECONDS


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands timezone-aware columns back naive (in UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def folders_of(row: MailboxFolders | None) -> SpecialFolders | None:
    if row is None:
        return None
    return SpecialFolders(archive=row.archive, trash=row.trash, junk=row.junk, gmail=row.gmail)


def roles_of(folders: SpecialFolders | None) -> frozenset[Role]:
    if folders is None:
        return frozenset()
    return frozenset(role for role in Role if folders.folder(role) is not None)


class LetterActionService:
    def __init__(
        self,
        session: AsyncSession,
        deps: MailDeps,
        *,
        clock: Clock | None = None,
        undo_seconds: float = UNDO_SECONDS,
    ) -> None:
        self.session = session
        self.deps = deps
        self.mailboxes = MailboxService(session, deps)
        self.clock = clock or SystemWallClock()
        self.undo_seconds = undo_seconds

    # ---- reading -----------------------------------------------------------------------------
    async def state(self, user_id: int, letter_id: int, *, opened: bool = False) -> LetterState | None:
        """The buttons' state of the user's letter; None for a letter no action applies to
        (a sent one). `opened`: the letter was just read in full, which marks it \\Seen."""
        if not 0 < letter_id < MAX_ID:
            raise LetterNotFound(letter_id)
        mailbox, letter = await self.mailboxes.owned_letter(user_id, letter_id)
        if letter.folder != INBOX:
            return None
        mark = await self._mark(letter.id)
        folders = await self._cached_folders(mailbox.id)
        if folders is None:
            folders = await self._discover_quietly(mailbox)
        await self.session.flush()
        state = self._state(mark, folders)
        # shown as read, not stored: the watcher then sees the server's \Seen as a change
        # and redraws the alert's buttons too
        return replace(state, seen=True) if opened else state

    async def alert_states(self, mailbox_id: int, letter_ids: list[int]) -> tuple[dict[int, LetterState], bool]:
        """The state of just-arrived letters for their alerts' buttons (one read, nothing
        written: the watcher's record gave each new letter its mark; a letter without one,
        recorded before marks were, is in INBOX, unread, unflagged), and whether the
        mailbox's folders are still unknown. They are found when it is connected (the import's session); for one connected
        before that, AlertActions finds them after the alert has gone (never on its way: a
        login to the mail server would delay it)."""
        # one statement: the mailbox's folders beside each mark found (or one row without)
        stmt = (
            select(MailboxFolders, LetterMark)
            .select_from(Mailbox)
            .outerjoin(MailboxFolders, MailboxFolders.mailbox_id == Mailbox.id)
            .outerjoin(LetterMark, LetterMark.letter_id.in_(letter_ids or [0]))
            .where(Mailbox.id == mailbox_id)
        )
        rows = (await self.session.execute(stmt)).all()
        marks = {mark.letter_id: mark for _, mark in rows if mark is not None}
        folders = folders_of(rows[0][0]) if rows else None
        states = {
            letter_id: self._state(
                marks.get(letter_id) or LetterMark(letter_id=letter_id, place=LetterPlace.INBOX.value), folders
            )
            for letter_id in letter_ids
        }
        return states, folders is None

    async def discover_folders(self, mailbox_id: int) -> None:
        """Find and keep the folders of a mailbox connected before they were looked for."""
        if await self._cached_folders(mailbox_id) is not None:
            return
        mailbox = await self.session.get(Mailbox, mailbox_id)
        if mailbox is not None:
            await self._discover_quietly(mailbox, timeout=ALERT_DISCOVERY_TIMEOUT)

    async def remember_alert(self, letter_id: int, chat_id: int, message_id: int) -> None:
        mark = await self.session.get(LetterMark, letter_id)
        if mark is None:  # recorded by an older version, which wrote no mark with the letter
            mark = LetterMark(letter_id=letter_id, place=LetterPlace.INBOX.value, updated_at=self.clock.wall())
            self.session.add(mark)
        mark.alert_chat_id, mark.alert_message_id = chat_id, message_id
        await self.session.flush()

    # ---- acting ------------------------------------------------------------------------------
    async def act(self, user_id: int, letter_id: int, action: Action) -> ActionResult:
        """Do `action` on the user's letter. LetterNotFound for anyone else's (or a forged) id
        and for sent letters; MailCheckError when the server can't be reached."""
        if not 0 < letter_id < MAX_ID:  # from a button: beyond any id (and PostgreSQL's integer)
            raise LetterNotFound(letter_id)
        mailbox, letter = await self.mailboxes.owned_letter(user_id, letter_id)
        if letter.folder != INBOX:
            raise LetterNotFound(letter_id)
        mark = await self._mark(letter.id)
        folders = await self._cached_folders(mailbox.id)
        place = LetterPlace(mark.place)
        if action is Action.STATE:
            outcome = Outcome.DONE if place is LetterPlace.INBOX else Outcome.ELSEWHERE
            return self._result(action, outcome, mark, folders)
        if action is Action.UNDO:
            return await self._undo(mailbox, letter, mark, folders)
        if place is not LetterPlace.INBOX:
            return self._result(action, Outcome.GONE if place is LetterPlace.GONE else Outcome.ELSEWHERE, mark, folders)
        role = MOVES.get(action)
        if role is not None and folders is not None and folders.folder(role) is None:
            return self._result(action, Outcome.NO_FOLDER, mark, folders)
        client = await self._open(mailbox)
        outcome = Outcome.DONE
        try:
            uidvalidity = await imap_actions.select(client, INBOX)
            if uidvalidity is not None and uidvalidity != letter.uidvalidity:
                raise LetterGone(letter.uid)
            if role is None:
                flag, on = FLAG_OF[action]
                now = await imap_actions.set_flag(client, letter.uid, flag, on)
                mark.seen, mark.flagged = now.seen, now.flagged
            else:
                if folders is None:
                    folders = await discover_folders(client, timeout=self.deps.timeout)
                    await self._store_folders(mailbox.id, folders)
                target = folders.folder(role)
                if target is None:
                    outcome = Outcome.NO_FOLDER
                else:
                    moved = await imap_actions.move(client, letter.uid, target)
                    self._moved(mark, PLACE_OF[role], moved)
        except LetterGone:
            mark.place = LetterPlace.GONE.value
            outcome = Outcome.GONE
        finally:
            await close_imap(client)
        mark.updated_at = self.clock.wall()
        await self.session.flush()
        log.info("letter %s: %s -> %s", letter.id, action.value, outcome.value)
        return self._result(action, outcome, mark, folders)

    async def _undo(
        self, mailbox: Mailbox, letter: Letter, mark: LetterMark, folders: SpecialFolders | None
    ) -> ActionResult:
        place = LetterPlace(mark.place)
        if place in (LetterPlace.INBOX, LetterPlace.GONE) or mark.folder is None:
            return self._result(Action.UNDO, Outcome.NOTHING if place is LetterPlace.INBOX else Outcome.GONE, mark, folders)
        until = _aware(mark.undo_until)
        if until is None or self.clock.wall() >= until:
            mark.undo_until = None
            await self.session.flush()
            return self._result(Action.UNDO, Outcome.TOO_LATE, mark, folders)
        client = await self._open(mailbox)
        outcome = Outcome.DONE
        try:
            uidvalidity = await imap_actions.select(client, mark.folder)
            uid = mark.folder_uid if uidvalidity == mark.folder_uidvalidity else None
            if uid is None and letter.message_id:
                uid = await imap_actions.find_by_message_id(client, letter.message_id)
            if uid is None:
                raise LetterGone(0)
            back = await imap_actions.move(client, uid, INBOX)
            inbox_uid, inbox_validity = back.uid, back.uidvalidity
            if back.flags is not None:
                mark.seen, mark.flagged = back.flags.seen, back.flags.flagged
            if inbox_uid is None:
                inbox_validity = await imap_actions.select(client, INBOX)
                if letter.message_id:
                    inbox_uid = await imap_actions.find_by_message_id(client, letter.message_id)
        except LetterGone:
            mark.place = LetterPlace.GONE.value
            mark.undo_until = None
            outcome = Outcome.GONE
        finally:
            await close_imap(client)
        if outcome is Outcome.DONE:
            if inbox_uid is not None and inbox_validity is not None:
                await self._take_uid(letter, inbox_validity, inbox_uid)
            mark.place = LetterPlace.INBOX.value
            mark.folder = mark.folder_uid = mark.folder_uidvalidity = None
            mark.undo_until = None
        mark.updated_at = self.clock.wall()
        await self.session.flush()
        log.info("letter %s: undo -> %s", letter.id, outcome.value)
        return self._result(Action.UNDO, outcome, mark, folders)

    async def _take_uid(self, letter: Letter, uidvalidity: int, uid: int) -> None:
        """The letter row follows the letter back into INBOX under its new UID; a row the
        watcher may have made for that UID meanwhile is dropped."""
        twins = select(Letter.id).where(
            Letter.mailbox_id == letter.mailbox_id,
            Letter.folder == INBOX,
            Letter.uidvalidity == uidvalidity,
            Letter.uid == uid,
            Letter.id != letter.id,
        )
        twin_ids = list((await self.session.execute(twins)).scalars())
        if twin_ids:
            log.info("letter %s: the watcher's copy %s of the returned letter dropped", letter.id, twin_ids)
            await self.session.execute(update(ItemLink).where(ItemLink.letter_id.in_(twin_ids)).values(letter_id=None))
            await self.session.execute(delete(LetterMark).where(LetterMark.letter_id.in_(twin_ids)))
            await self.session.execute(delete(Letter).where(Letter.id.in_(twin_ids)))
        letter.uidvalidity, letter.uid = uidvalidity, uid

    # ---- internals ---------------------------------------------------------------------------
    def _moved(self, mark: LetterMark, place: LetterPlace, moved: Moved) -> None:
        if moved.flags is not None:
            mark.seen, mark.flagged = moved.flags.seen, moved.flags.flagged
        mark.place = place.value
        mark.folder = moved.folder
        mark.folder_uidvalidity = moved.uidvalidity
        mark.folder_uid = moved.uid
        mark.undo_until = self.clock.wall() + timedelta(seconds=self.undo_seconds)

    def _state(self, mark: LetterMark, folders: SpecialFolders | None) -> LetterState:
        return LetterState(
            letter_id=mark.letter_id,
            seen=bool(mark.seen),
            flagged=bool(mark.flagged),
            place=LetterPlace(mark.place),
            folder=mark.folder,
            undo_until=_aware(mark.undo_until),
            roles=roles_of(folders),
        )

    def _result(
        self, action: Action, outcome: Outcome, mark: LetterMark, folders: SpecialFolders | None
    ) -> ActionResult:
        return ActionResult(action, outcome, self._state(mark, folders), self.undo_seconds)

    async def _mark(self, letter_id: int) -> LetterMark:
        mark = await self.session.get(LetterMark, letter_id)
        if mark is None:
            mark = LetterMark(letter_id=letter_id, place=LetterPlace.INBOX.value, updated_at=self.clock.wall())
            self.session.add(mark)
            await self.session.flush()
        return mark

    async def _cached_folders(self, mailbox_id: int) -> SpecialFolders | None:
        return folders_of(await self.session.get(MailboxFolders, mailbox_id))

    async def _store_folders(self, mailbox_id: int, folders: SpecialFolders) -> None:
        await save_folders(
            self.session, mailbox_id, archive=folders.archive, trash=folders.trash, junk=folders.junk,
            gmail=folders.gmail, now=self.clock.wall(),
        )

    async def _discover_quietly(self, mailbox: Mailbox, timeout: float | None = None) -> SpecialFolders | None:  # noqa: ASYNC109
        """Find and keep the mailbox's folders; None (moves not offered yet) if the server
        can't be reached now: the next alert or action tries again."""
        limit = min(self.deps.timeout, timeout or self.deps.timeout)
        try:
            client = await self._open(mailbox, timeout=limit)
        except MailCheckError as exc:
            log.info("mailbox %s: folders not found now (%s)", mailbox.id, exc.kind.value)
            return None
        try:
            folders = await discover_folders(client, timeout=limit)
        except MailCheckError as exc:
            log.info("mailbox %s: folders not found now (%s)", mailbox.id, exc.kind.value)
            return None
        finally:
            await close_imap(client)
        await self._store_folders(mailbox.id, folders)
        return folders

    async def _open(self, mailbox: Mailbox, timeout: float | None = None) -> MailIMAP:  # noqa: ASYNC109
        creds = await self.mailboxes.credentials(mailbox)  # commits the work so far first
        return await open_imap(
            servers_of(mailbox).imap,
            creds,
            ssl_context=self.deps.ssl_context,
            guard=self.deps.guard,
            timeout=timeout or self.deps.timeout,
        )


class AlertActions:
    """The alert's side, on sessions of its own (the notifier has no update session): the
    state for a new alert's buttons, and which message that alert is."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], deps: MailDeps, clock: Clock | None = None) -> None:
        self.sessionmaker = sessionmaker
        self.deps = deps
        self.clock: Clock = clock or SystemWallClock()
        # mailboxes whose folders are being found (per process: at worst two instances both
        # look once; the result is the same row)
        self._finding: dict[int, asyncio.Task[None]] = {}

    def service(self, session: AsyncSession) -> LetterActionService:
        return LetterActionService(session, self.deps, clock=self.clock)

    async def states_for_alerts(self, session: AsyncSession, letters: list[Letter]) -> dict[int, LetterState]:
        """The buttons' state of a mailbox's new letters, read on the alert's own connection
        (services.watching.AlertData.reading)."""
        if not letters:
            return {}
        mailbox_id = letters[0].mailbox_id
        states, unknown = await self.service(session).alert_states(mailbox_id, [letter.id for letter in letters])
        if unknown and mailbox_id not in self._finding:
            # these alerts go now without the move buttons; the next ones and the letter
            # opened have them
            self._finding[mailbox_id] = asyncio.create_task(
                self._find_folders(mailbox_id), name=f"folders-{mailbox_id}"
            )
        return states

    async def _find_folders(self, mailbox_id: int) -> None:
        try:
            async with self.sessionmaker() as session:
                await self.service(session).discover_folders(mailbox_id)
                await session.commit()
        except Exception:  # noqa: BLE001 - the next alert or action tries again
            log.warning("mailbox %s: folders not found", mailbox_id, exc_info=True)
        finally:
            self._finding.pop(mailbox_id, None)

    async def close(self) -> None:
        """A stop: the folder look-ups under way end (the next start looks again)."""
        tasks = list(self._finding.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def alert_sent(self, letter_id: int, chat_id: int, message_id: int) -> None:
        """Which message is the letter's alert. Its mark exists (the watcher's record wrote
        it), except for a letter recorded before that: then it is written here, and a button
        pressed on the alert at that very moment may write it first (then once more)."""
        for again in (False, True):
            try:
                async with self.sessionmaker() as session:
                    await self.service(session).remember_alert(letter_id, chat_id, message_id)
                    await session.commit()
                return
            except IntegrityError:
                if again:
                    raise

    async def user_state(self, user_id: int, letter_id: int) -> LetterState | None:
        """For a timer that refreshes buttons: the state, None when the letter is gone."""
        async with self.sessionmaker() as session:
            try:
                state = await self.service(session).state(user_id, letter_id)
            except LetterNotFound:
                return None
            await session.commit()
            return state


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert message to refresh: where it is, in which language, showing what."""

    state: LetterState
    chat_id: int
    message_id: int
    language: str | None
    # what the rest of the alert's keyboard is made of (bot/attention.alert_keyboard)
    from_addr: str = ""
    reply_all: bool = False
    code: str | None = None


class LetterStateSync:
    """mail.watcher.LetterSync on the database: the UIDs of the newest alerted letters still
    in INBOX, and what the server says of them (flags, or gone), one short transaction each."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock | None = None, limit: int = TRACKED) -> None:
        self.sessionmaker = sessionmaker
        self.clock: Clock = clock or SystemWallClock()
        self.limit = limit

    async def tracked(self, mailbox_id: int, uidvalidity: int) -> list[int]:
        async with self.sessionmaker() as session:
            stmt = (
                select(Letter.uid)
                .join(LetterMark, LetterMark.letter_id == Letter.id)
                .where(
                    Letter.mailbox_id == mailbox_id,
                    Letter.folder == INBOX,
                    Letter.uidvalidity == uidvalidity,
                    LetterMark.place == LetterPlace.INBOX.value,
                    LetterMark.alert_message_id.is_not(None),
                )
                .order_by(Letter.id.desc())
                .limit(self.limit)
            )
            return [int(uid) for uid in (await session.execute(stmt)).scalars()]

    async def observed(self, mailbox_id: int, uidvalidity: int, flags: dict[int, Flags | None]) -> list[int]:
        if not flags:
            return []
        changed: list[int] = []
        async with self.sessionmaker() as session, session.begin():
            stmt = (
                select(Letter, LetterMark)
                .join(LetterMark, LetterMark.letter_id == Letter.id)
                .where(
                    Letter.mailbox_id == mailbox_id,
                    Letter.folder == INBOX,
                    Letter.uidvalidity == uidvalidity,
                    Letter.uid.in_(list(flags)),
                    LetterMark.place == LetterPlace.INBOX.value,
                )
            )
            for letter, mark in (await session.execute(stmt)).all():
                now = flags.get(letter.uid)
                if now is None:
                    log.info("letter %s: no longer in INBOX on the server", letter.id)
                    mark.place = LetterPlace.GONE.value
                else:
                    shown = (bool(mark.seen), bool(mark.flagged))
                    mark.seen, mark.flagged = now.seen, now.flagged
                    if shown == (now.seen, now.flagged):
                        continue  # nothing the buttons show changed
                mark.updated_at = self.clock.wall()
                changed.append(letter.id)
        return changed

    async def alert_views(self, letter_ids: list[int]) -> list[AlertView]:
        """The alerts of those letters, with their state, for their buttons to be redrawn."""
        if not letter_ids:
            return []
        async with self.sessionmaker() as session:
            stmt = (
                select(LetterMark, MailboxFolders, User.language, Letter.from_addr, Letter.to_addrs, Letter.code, Mailbox.email)
                .join(Letter, Letter.id == LetterMark.letter_id)
                .join(Mailbox, Mailbox.id == Letter.mailbox_id)
                .join(User, User.id == Mailbox.user_id)
                .outerjoin(MailboxFolders, MailboxFolders.mailbox_id == Mailbox.id)
                .where(LetterMark.letter_id.in_(letter_ids), LetterMark.alert_message_id.is_not(None))
            )
            views = []
            for mark, folders_row, language, from_addr, to_addrs, code, email in (await session.execute(stmt)).all():
                state = LetterState(
                    letter_id=mark.letter_id,
                    seen=bool(mark.seen),
                    flagged=bool(mark.flagged),
                    place=LetterPlace(mark.place),
                    folder=mark.folder,
                    undo_until=_aware(mark.undo_until),
                    roles=roles_of(folders_of(folders_row)),
                )
                assert mark.alert_chat_id is not None and mark.alert_message_id is not None
                views.append(AlertView(
                    state, int(mark.alert_chat_id), int(mark.alert_message_id), language,
                    from_addr=from_addr, reply_all=others_addressed(to_addrs or "", email), code=code,
                ))
            return views
