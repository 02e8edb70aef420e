"""`python -m bot`: start mailbridge with settings from the environment / `.env`."""

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


async def _main(settings: Settings) -> None:
    from bot.app import build_app, run_polling

    app = await build_app(settings)
    try:
        await run_polling(app)
    finally:
        await app.close()


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"Configuration error:\n{exc}", file=sys.stderr)
        return 2
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        print(HOW_TO_GET_STARTED, file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    from aiogram.exceptions import TelegramUnauthorizedError

    try:
        asyncio.run(_main(settings))
    except KeyboardInterrupt:
        pass
    except TelegramUnauthorizedError:
        print("Telegram refused BOT_TOKEN (401 Unauthorized). Check the token from @BotFather.", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
