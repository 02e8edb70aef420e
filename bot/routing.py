"""Handlers are declared on a RouteTable (a list, not a live Router), so every Dispatcher built
by `create_dispatcher()` gets fresh Routers: no import-time singletons, and several bots or
tests can live in one process.

Filters given to the table (`message_filters`, `callback_filters`) go on the Router itself
(`router.message.filter(...)`): every handler of the table inherits them, and an update they
refuse is left to the next router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import Router

Handler = Callable[..., Any]


class RouteTable:
    def __init__(self, name: str, *, message_filters: tuple[Any, ...] = (), callback_filters: tuple[Any, ...] = ()) -> None:
        self.name = name
        self.message_filters = message_filters
        self.callback_filters = callback_filters
        self._entries: list[tuple[str, Handler, tuple[Any, ...], dict[str, Any]]] = []

    def _add(self, observer: str, filters: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self._entries.append((observer, handler, filters, kwargs))
            return handler

        return register

    def message(self, *filters: Any, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self._add("message", filters, kwargs)

    def callback_query(self, *filters: Any, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self._add("callback_query", filters, kwargs)

    def my_chat_member(self, *filters: Any, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self._add("my_chat_member", filters, kwargs)

    def errors(self, *filters: Any, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self._add("errors", filters, kwargs)

    def create_router(self) -> Router:
        router = Router(name=self.name)
        if self.message_filters:
            router.message.filter(*self.message_filters)
        if self.callback_filters:
            router.callback_query.filter(*self.callback_filters)
        for observer, handler, filters, kwargs in self._entries:
            getattr(router, observer).register(handler, *filters, **kwargs)
        return router
