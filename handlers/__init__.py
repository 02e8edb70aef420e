"""Thin aiogram routers: parse input, call one use case, render the reply."""

from aiogram import Router

from handlers import (
    account,
    admin,
    compose,
    connect,
    fallback,
    letter_actions,
    letters,
    membership,
    oauth,
    quiet,
    rules,
    search,
    settings,
    start,
)


def all_routers() -> list[Router]:
    """Fresh routers for one Dispatcher. Order matters: OAuth and admin first (admin commands
    must win over a wizard step that takes any text); the wizard's /cancel and mid-wizard commands come
    before /start; the fallback router is last. Compose (answering letters) takes only its own
    states and buttons, and replies to the bot's letter messages in no state. Membership (blocked / unblocked) takes no messages."""
    modules = (oauth, admin, membership, compose, connect, start, account, settings, letters, letter_actions, rules, quiet, search, fallback)
    return [m.router.create_router() for m in modules]
