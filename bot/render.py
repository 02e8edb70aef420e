"""Texts built from data (all values escaped by the translator)."""

from __future__ import annotations

from bot.i18n import Html, Translator, escape
from mail.types import FailureKind, MailCheckError, ServerSettings
from storage.models import Mailbox

DETAIL_MAX = 300
HINTED = {FailureKind.AUTH_FAILED, FailureKind.IMAP_DISABLED, FailureKind.APP_PASSWORD_REQUIRED}


def server_line(t: Translator, server: ServerSettings) -> str:
    return escape(f"{server.host}:{server.port}") + " · " + escape(t(f"security.{server.security.value}"))


def hint_text(t: Translator, hint: str, imap_path: str = "") -> str:
    """The provider's advice shown before the password and after a refused login."""
    if not hint:
        return ""
    if imap_path:
        return t("connect.hint_imap", hint=hint, path=imap_path)
    return t("connect.hint", hint=hint)


def check_failure(t: Translator, exc: MailCheckError, *, hint: str = "") -> str:
    text = t(f"fail.{exc.kind.value}", protocol=exc.protocol.value.upper())
    detail = (exc.detail or "").strip()
    if detail:
        if len(detail) > DETAIL_MAX:
            detail = detail[:DETAIL_MAX] + "…"
        text += "\n\n" + t("fail.server_said", detail=detail)
    if hint and exc.kind in HINTED:
        text += "\n\n" + hint
    return text + "\n\n" + t("fail.what_next")


def mailbox_summary(t: Translator, mailbox: Mailbox, *, imported: int | None = None, title_key: str = "settings.mail_title") -> str:
    lines = [
        t(title_key),
        "",
        t("summary.address", email=mailbox.email),
        t("summary.service", service=mailbox.service.name(t.lang) if mailbox.service else "?"),
        t("summary.state", state=t(f"state.{mailbox.state}")),
        t("summary.signature", signature=mailbox.signature or Html(t("word.none"))),
        t("summary.alerts", state=on_off(t, mailbox.notify)),
        t("summary.sound", state=on_off(t, mailbox.notify_sound)),
        t("summary.processes", state=on_off(t, mailbox.use_in_processes)),
    ]
    if imported is not None:
        lines.append("")
        lines.append(t("summary.imported", count=imported))
    return "\n".join(lines)


def on_off(t: Translator, flag: bool) -> str:
    return t("word.on") if flag else t("word.off")
