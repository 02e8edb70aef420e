"""Thin aiogram routers: parse input, call one use case, render the reply."""

from aiogram import Router

from handlers import account, connect, fallback, letters, settings, start


def all_routers() -> list[Router]:
    """Fresh routers for one Dispatcher. Order matters: the wizard's /cancel and mid-wizard
    commands come before /start; the fallback router is last."""
    return [m.router.create_router() for m in (connect, start, account, settings, letters, fallback)]
