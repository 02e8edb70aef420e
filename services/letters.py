"""Letters as the mail layer sees them (LetterSummary) and as the database keeps them."""

from __future__ import annotations

from mail.types import LetterSummary
from storage.models import AlertState, Letter


def letter_row(mailbox_id: int, uidvalidity: int, item: LetterSummary, *, alerted: bool) -> Letter:
    return Letter(
        mailbox_id=mailbox_id,
        uidvalidity=uidvalidity,
        uid=item.uid,
        message_id=item.message_id,
        from_name=item.from_name,
        from_addr=item.from_addr,
        to_addrs=item.to,
        subject=item.subject,
        sent_at=item.date,
        snippet=item.snippet,
        has_attachments=item.has_attachments,
        size=item.size,
        code=item.code,
        alerted=alerted,
        # letters born alerted (the import, our own sent ones) never get an alert
        alert_state=AlertState.SKIPPED.value if alerted else AlertState.PENDING.value,
    )


def summary_of(letter: Letter) -> LetterSummary:
    return LetterSummary(
        uid=letter.uid,
        message_id=letter.message_id,
        from_name=letter.from_name,
        from_addr=letter.from_addr,
        to=letter.to_addrs,
        subject=letter.subject,
        date=letter.sent_at,
        snippet=letter.snippet,
        has_attachments=letter.has_attachments,
        size=letter.size,
        code=letter.code,
    )
