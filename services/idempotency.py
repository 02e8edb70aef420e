"""Idempotency keys for the business-process API (Stripe's model), so a process engine that
retries a timed-out `POST /api/v1/mail/send` does not send the letter twice.

A key is scoped to the API token (only the token's SHA-256 is stored) and kept for KEY_TTL.

* `claim` is the first step of a request with a key. It inserts an in-progress row in its own
  committed transaction BEFORE anything is sent; the unique (token_hash, key) constraint makes
  sure two concurrent requests cannot both claim it (the loser's IntegrityError means "a
  repeat"). A repeat gets the stored answer (`Replay`), `InProgress` while the first request
  runs, or `Reused` when the key came with a different request.
* `complete` stores the final answer (status and JSON body, errors included) for replays.
* `release` deletes the claim so the key can be used again: only for unexpected failures
  (the API's 500 `internal`) that happened before the letter was handed to the SMTP server,
  the one case where a retry can neither repeat an answer nor send a second copy.

Unlike repositories, this store commits: a claim must be durable, and visible to a concurrent
request, before the send starts, whatever the send's own transaction does. Expired rows are
purged as new keys are claimed, at most PURGE_BATCH at a time.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import IdempotencyKey, IdempotencyState, utcnow

log = logging.getLogger(__name__)

KEY_TTL = timedelta(hours=24)
PURGE_BATCH = 200
CLAIM_ATTEMPTS = 3  # a lost insert race whose winner row is gone at once (released): try again


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



@dataclass(frozen=True)
class Claimed:
    """The key is ours: do the work, then `complete` or `release`."""

    row_id: int


@dataclass(frozen=True)
class Replay:
    """The key was used for the same request, which is finished: answer this again."""

    status: int
    body: str


@dataclass(frozen=True)
class InProgress:
    """The key's first request is still running (or died while sending): try again later."""


@dataclass(frozen=True)
class Reused:
    """The key was used with a different request."""


Claim = Claimed | Replay | InProgress | Reused


class IdempotencyStore:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def claim(self, token_hash: str, key: str, request_hash: str) -> Claim:
        for _ in range(CLAIM_ATTEMPTS):
            now = utcnow()
            async with self.sessionmaker() as session:
                # an expired row of this key no longer counts: the key works afresh
                await session.execute(
                    delete(IdempotencyKey).where(
                        IdempotencyKey.token_hash == token_hash, IdempotencyKey.key == key,
                        IdempotencyKey.created_at < now - KEY_TTL,
                    )
                )
                row = IdempotencyKey(
                    token_hash=token_hash, key=key, request_hash=request_hash,
                    state=IdempotencyState.IN_PROGRESS.value, created_at=now,
                )
                session.add(row)
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                else:
                    await self._purge(now)
                    return Claimed(row.id)
                existing = (
                    await session.execute(
                        select(IdempotencyKey).where(
                            IdempotencyKey.token_hash == token_hash, IdempotencyKey.key == key
                        )
                    )
                ).scalar_one_or_none()
            if existing is None:
                continue  # released (or purged) between our insert and this read
            if existing.request_hash != request_hash:
                return Reused()
            if existing.state != IdempotencyState.COMPLETED.value or existing.response_status is None:
                return InProgress()
            return Replay(existing.response_status, existing.response_body or "")
        return InProgress()

    async def complete(self, claim: Claimed, status: int, body: str) -> None:
        async with self.sessionmaker() as session:
            await session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.id == claim.row_id)
                .values(
                    state=IdempotencyState.COMPLETED.value, response_status=status, response_body=body,
                    completed_at=utcnow(),
                )
            )
            await session.commit()

    async def release(self, claim: Claimed) -> None:
        async with self.sessionmaker() as session:
            await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim.row_id))
            await session.commit()

    async def _purge(self, now: datetime) -> None:
        """Delete up to PURGE_BATCH expired rows (oldest first); best effort."""
        try:
            async with self.sessionmaker() as session:
                expired = (
                    select(IdempotencyKey.id)
                    .where(IdempotencyKey.created_at < now - KEY_TTL)
                    .order_by(IdempotencyKey.created_at)
                    .limit(PURGE_BATCH)
                )
                await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired)))
                await session.commit()
        except Exception as exc:  # noqa: BLE001 - the next claim purges again
            log.warning("idempotency keys: purge failed: %s", type(exc).__name__)
