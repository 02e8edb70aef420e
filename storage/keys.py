"""Every secret column at rest, and what the encryption keys must agree with.

* `stored_secrets()`: how many secrets the database holds (a fresh key would make them all
  unreadable: then no key is generated, bot/app.py).
* `check_keys()`: at start-up, the configured keys must read the stored secrets; an instance
  started with other keys (instances must share ENCRYPTION_KEYS) stops with a clear message
  instead of marking healthy accounts broken one by one.
* `rotate_secrets()`: `python -m bot rotate-keys` re-encrypts every secret with the first key,
  in batches, each batch its own transaction, idempotent (a secret already under the first key
  is left alone) and safe next to running instances (a row changed meanwhile, e.g. a refreshed
  OAuth2 token, is never overwritten: compare-and-set on the old ciphertext).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from storage.crypto import SecretBox
from storage.models import Mailbox, OAuthState, Service

log = logging.getLogger(__name__)

# (model, its primary key, the encrypted column): every secret the bot keeps
SECRET_COLUMNS: tuple[tuple[type, InstrumentedAttribute[int], InstrumentedAttribute[str | None]], ...] = (
    (Mailbox, Mailbox.id, Mailbox.secret_enc),  # type: ignore[arg-type]
    (Service, Service.id, Service.oauth2_client_secret_enc),
    (OAuthState, OAuthState.id, OAuthState.code_verifier_enc),
)


class KeysDoNotMatch(Exception):
    """The configured keys read none of the stored secrets (message names no secret)."""


async def stored_secrets(session: AsyncSession) -> int:
    total = 0
    for _model, _pk, column in SECRET_COLUMNS:
        total += int((await session.execute(select(func.count()).where(column.isnot(None), column != ""))).scalar_one())
    return total


async def check_keys(session: AsyncSession, box: SecretBox, *, sample: int = 20) -> None:
    """Try the newest `sample` secrets of each column: when there are some and not one can be
    read, the keys are not this database's (KeysDoNotMatch). Some unreadable among readable ones
    only give a warning (say, a row written by an instance with a wrong key: its owner
    reconnects)."""
    tried = readable = 0
    for _model, pk, column in SECRET_COLUMNS:
        rows = await session.execute(
            select(column).where(column.isnot(None), column != "").order_by(pk.desc()).limit(sample)
        )
        for (token,) in rows:
            if not token:
                continue
            tried += 1
            try:
                box.decrypt(token)
                readable += 1
            except ValueError:
                pass
    if tried and not readable:
        raise KeysDoNotMatch(
            f"ENCRYPTION_KEYS cannot decrypt any of the {tried} newest secrets stored in the database: "
            "this instance has other keys than the ones that wrote them. Every instance must use the same "
            "ENCRYPTION_KEYS (a rotated-out key stays in the list, after the new first key, until "
            "`python -m bot rotate-keys` has run)."
        )
    if readable < tried:
        log.warning("%d of the %d newest stored secrets cannot be decrypted with ENCRYPTION_KEYS", tried - readable, tried)


@dataclass
class Rotation:
    rotated: int = 0
    current: int = 0  # already encrypted with the first key
    unreadable: int = 0  # no configured key reads it: left as it is
    changed_meanwhile: int = 0  # rewritten by a running instance during the rotation (already current)


async def rotate_secrets(
    sessionmaker: async_sessionmaker[AsyncSession], box: SecretBox, first_key: str, *, batch: int = 200
) -> Rotation:
    """Re-encrypt every stored secret with `first_key` (the first of the box's keys)."""
    primary = Fernet(first_key.encode())
    report = Rotation()
    for model, pk, column in SECRET_COLUMNS:
        last = None
        while True:
            async with sessionmaker() as session:
                query = select(pk, column).where(column.isnot(None), column != "").order_by(pk).limit(batch)
                if last is not None:
                    query = query.where(pk > last)
                rows = (await session.execute(query)).all()
                if not rows:
                    break
                for row_id, token in rows:
                    last = row_id
                    if not token:
                        continue
                    try:
                        primary.decrypt(token.encode("ascii"))
                        report.current += 1
                        continue
                    except InvalidToken:
                        pass
                    try:
                        new = box.rotate(token)
                    except Exception:  # noqa: BLE001 - InvalidToken from MultiFernet: no key reads it
                        report.unreadable += 1
                        log.warning("%s %s: secret unreadable with every configured key; left as it is", model.__tablename__, row_id)  # type: ignore[attr-defined]
                        continue
                    result = await session.execute(
                        update(model).where(pk == row_id, column == token).values({column.key: new})
                        .execution_options(synchronize_session=False)
                    )
                    if getattr(result, "rowcount", 0) == 1:
                        report.rotated += 1
                    else:
                        report.changed_meanwhile += 1
                await session.commit()
    return report
