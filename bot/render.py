"""Texts built from data (all values escaped by the translator)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram.types import InlineKeyboardMarkup

from bot import keyboards as kb
from bot.callbacks import InboxCB, LetterCB, SentCB
from bot.i18n import Html, Translator, escape, on_off
from mail.types import FailureKind, MailCheckError, MailServers, Protocol, ServerSettings
from services.mailboxes import LetterPage
from storage.models import Mailbox

DETAIL_MAX = 300
HINTED = {FailureKind.AUTH_FAILED, FailureKind.IMAP_DISABLED, FailureKind.APP_PASSWORD_REQUIRED}


def hint_text(t: Translator, hint: str, imap_path: str = "") -> str:
    """The provider's advice shown before the password and after a refused login."""
    if not hint:
        return ""
    if imap_path:
        return t("connect.hint_imap", hint=hint, path=imap_path)
    return t("connect.hint", hint=hint)


def failure_reason(t: Translator, exc: MailCheckError, *, oauth: bool = False) -> str:
    """What went wrong, in one line. An OAuth2 account's refused login is about its sign-in,
    never about a password."""
    protocol = exc.protocol.value.upper()
    if oauth and exc.kind in HINTED:
        return t("fail.oauth_refused", protocol=protocol)
    return t(f"fail.{exc.kind.value}", protocol=protocol)


LOCAL_KINDS = {
    FailureKind.HOST_NOT_FOUND, FailureKind.CONNECTION_REFUSED, FailureKind.TIMEOUT,
    FailureKind.PRIVATE_ADDRESS, FailureKind.TLS_UNTRUSTED, FailureKind.TLS_FAILED,
}


def check_failure(
    t: Translator, exc: MailCheckError, *, hint: str = "", servers: MailServers | None = None,
    oauth: bool = False,
) -> str:
    """What went wrong, for each protocol that failed (IMAP and SMTP are checked together, so
    both are told at once). "The server said" only quotes what a server said; a local failure
    (name not found, connection refused, timeout, private address, TLS) is told in plain words,
    naming the server that was tried when it is known. An OAuth2 account's refused login is
    about signing in again, never about a password."""
    parts = []
    # the other protocol's failure too, unless it only repeats the same refused login
    failures = [exc, *[o for o in exc.others if o.protocol != exc.protocol and not (o.kind == exc.kind and o.kind in HINTED)]]
    for failure in failures:
        part = failure_reason(t, failure, oauth=oauth)
        if servers is not None and failure.kind in LOCAL_KINDS:
            server = servers.imap if failure.protocol is Protocol.IMAP else servers.smtp
            part += "\n" + t("fail.server_tried", protocol=failure.protocol.value.upper(), server=Html(server_line(t, server)))
        detail = (failure.detail or "").strip()
        if detail and failure.server_said:
            if len(detail) > DETAIL_MAX:
                detail = detail[:DETAIL_MAX] + "…"
            part += "\n\n" + t("fail.server_said", detail=detail)
        parts.append(part)
    text = "\n\n".join(parts)
    if hint and not oauth and any(f.kind in HINTED for f in failures):
        text += "\n\n" + hint
    if oauth and exc.kind in HINTED:
        return text + "\n\n" + t("fail.what_next_oauth")
    return text + "\n\n" + t("fail.what_next")


def server_line(t: Translator, server: ServerSettings) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host  # an IPv6 address
    return escape(f"{host}:{server.port}") + " · " + escape(t(f"security.{server.security.value}"))


def mailbox_summary(t: Translator, mailbox: Mailbox, *, imported: int | None = None, title_key: str = "settings.mail_title") -> str:
    lines = [
        t(title_key),
        "",
        t("summary.address", email=mailbox.email),
        t("summary.service", service=mailbox.service.name(t.lang) if mailbox.service else "?"),
        t("summary.state", state=t(f"state.{mailbox.state}")) + " " + t("summary.since", since=when(mailbox.state_since)),
        t("summary.signature", signature=mailbox.signature or Html(t("word.none"))),
        t("summary.alerts", state=on_off(t, mailbox.notify)),
        t("summary.sound", state=on_off(t, mailbox.notify_sound)),
        t("summary.processes", state=on_off(t, mailbox.use_in_processes)),
    ]
    if mailbox.last_error and mailbox.state != "connected":
        lines.append(t("summary.error", error=mailbox.last_error[:DETAIL_MAX]))
    if imported is not None:
        lines.append("")
        lines.append(t("summary.imported", count=imported))
    return "\n".join(lines)


def when(moment: datetime | None) -> str:
    """A date for people: 'HH:MM' today, else 'DD.MM.YYYY HH:MM' (UTC)."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M")
    return moment.strftime("%d.%m.%Y %H:%M")


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def letter_page(t: Translator, page: LetterPage, per_page: int) -> tuple[str, InlineKeyboardMarkup | None]:
    """The Inbox or the Sent list: a numbered line per letter, a button to open each, paging,
    and a button to the other list when it has letters."""
    kind = "sent" if page.sent else "inbox"
    page_cb: type[InboxCB] | type[SentCB] = SentCB if page.sent else InboxCB
    switch = []
    if page.sent or page.others:  # back to the Inbox always; to Sent when there is something
        other_cb = InboxCB(page=0) if page.sent else SentCB(page=0)
        switch = [kb.Button(text=t("btn.inbox" if page.sent else "btn.sent"), callback_data=other_cb.pack())]
    if not page.letters:
        return t(f"{kind}.empty"), kb.markup([switch]) if switch else None
    first = page.page * per_page + 1
    last = first + len(page.letters) - 1
    lines = [t(f"{kind}.title", email=page.mailbox.email, first=first, last=last, total=page.total), ""]
    buttons = []
    for n, letter in enumerate(page.letters, start=first):
        subject = clip(letter.subject, 80) or t("inbox.no_subject")
        who = clip(letter.to_addrs, 40) if page.sent else clip(letter.from_name or letter.from_addr, 40)
        lines.append(t(
            f"{kind}.line", n=n, clip="📎 " if letter.has_attachments else "", subject=subject, who=who,
            date=when(letter.sent_at),
        ))
        buttons.append([kb.Button(text=f"{n}. {clip(subject, 40)}", callback_data=LetterCB(letter_id=letter.id).pack())])
    nav = []
    if page.page > 0:
        nav.append(kb.Button(text=t("btn.newer"), callback_data=page_cb(page=page.page - 1).pack()))
    if last < page.total:
        nav.append(kb.Button(text=t("btn.older"), callback_data=page_cb(page=page.page + 1).pack()))
    buttons.append(nav)
    if switch:
        buttons.append(switch)
    return "\n".join(lines), kb.markup(buttons)
