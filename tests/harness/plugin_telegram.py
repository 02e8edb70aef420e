"""Pytest fixtures for the fake Telegram Bot API (see tests/harness/fake_telegram.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot

from tests.harness.fake_telegram import FakeTelegram, make_bot


@pytest.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A started FakeTelegram on a free 127.0.0.1 port; stopped after the test."""
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def telegram_bot(fake_telegram: FakeTelegram) -> AsyncIterator[Bot]:
    """An aiogram Bot bound to ``fake_telegram``; its HTTP session is closed after the test."""
    bot = make_bot(fake_telegram)
    try:
        yield bot
    finally:
        await bot.session.close()
