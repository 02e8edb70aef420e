"""`python -m bot`: start mailbridge with settings from the environment / `.env`.

`python -m bot rotate-keys`: re-encrypt every stored secret with the first of ENCRYPTION_KEYS
(after putting a new key first; README "Encryption keys"). Safe while instances run."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from bot.config import Settings
from bot.logs import configure_logging

HOW_TO_GET_STARTED = """\
BOT_TOKEN is not set.

Get a token from @BotFather in Telegram (send /newbot, pick a name), then either
  put BOT_TOKEN=<token> into the .env file next to README.md (see .env.example), or
  export BOT_TOKEN=<token>
and start again.
"""


USAGE = "usage: python -m bot [rotate-keys]"


async def _main(settings: Settings) -> None:
    from bot.app import build_app, run

    app = await build_app(settings)
    try:
        await run(app)
    finally:
        await app.close()


async def _rotate_keys(settings: Settings) -> int:
    from storage.crypto import SecretBox, parse_keys
    from storage.db import create_engine, create_sessionmaker, migrate
    from storage.keys import rotate_secrets

    raw = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    if raw is None and settings.encryption_key_file.exists():
        raw = settings.encryption_key_file.read_text(encoding="ascii")
    keys = parse_keys(raw or "")
    if not keys:
        print("rotate-keys: ENCRYPTION_KEYS is not set (nor a key file): nothing to rotate with.", file=sys.stderr)
        return 2
    await migrate(settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        report = await rotate_secrets(create_sessionmaker(engine), SecretBox(keys), keys[0])
    finally:
        await engine.dispose()
    print(
        f"rotate-keys: {report.rotated} re-encrypted with the first key, {report.current} already were, "
        f"{report.changed_meanwhile} rewritten meanwhile by a running instance, {report.unreadable} unreadable "
        "with every configured key (left as they are)."
    )
    if report.unreadable:
        print("rotate-keys: keep the old keys until the owners of unreadable secrets reconnect.", file=sys.stderr)
        return 1
    if len(keys) > 1:
        print("rotate-keys: every readable secret is now under the first key; the others may be removed.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["rotate-keys"]):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args == ["rotate-keys"]:
        return asyncio.run(_rotate_keys(settings))
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        print(HOW_TO_GET_STARTED, file=sys.stderr)
        return 2
    from aiogram.exceptions import TelegramUnauthorizedError

    from bot.fleet import AnotherInstance, RedisUnavailable
    from storage.crypto import KeyConfigError
    from storage.keys import KeysDoNotMatch

    try:
        asyncio.run(_main(settings))
    except KeyboardInterrupt:
        pass
    except (AnotherInstance, KeyConfigError, KeysDoNotMatch, RedisUnavailable) as exc:
        print(f"mailbridge did not start: {exc}", file=sys.stderr)
        return 3
    except TelegramUnauthorizedError:
        print("Telegram refused BOT_TOKEN (401 Unauthorized). Check the token from @BotFather.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
