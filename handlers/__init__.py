"""Thin aiogram routers: parse input, call one use case, render the reply."""

from aiogram import Router

from handlers import (
    account,
    admin,
    connect,
    fallback,
    letter_actions,
    letters,
    membership,
    oauth,
    settings,
    start,
)


def all_routers() -> list[Router]:
    """Fresh routers for one Dispatcher. Order matters: OAuth and admin first (admin commands
    must win over a wizard step that takes any text); the wizard's /cancel and mid-wizard commands come
    before /start; the fallback router is last. Membership (blocked / unblocked) takes no messages."""
    modules = (oauth, admin, membership, connect, start, account, settings, letters, letter_actions, fallback)
    return [m.router.create_router() for m in modules]
