"""The HTTP session to the Bot API: aiogram's aiohttp session, with its answer types kept.

aiogram reads every answer as ``Response[method.__returning__]``, a pydantic generic model
class parametrized per call. pydantic caches such classes only weakly, and each one is held in
reference cycles, so the next young garbage collection frees it as soon as the answer is read;
the next answer then builds the class again: about 4 ms of CPU on this machine, for every
request (seen as 5 % of a busy bot's samples in a profile of ``bench/fleet_light.py``).
:class:`KeptTypesSession` keeps a strong reference to each answer type once it is first built,
so it is built once per method for the process's lifetime (a few dozen classes at most).

Per session, by nature: each instance of a fleet keeps its own classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods.base import Response, TelegramMethod, TelegramType

if TYPE_CHECKING:
    from aiogram import Bot


class KeptTypesSession(AiohttpSession):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answer_types: dict[type[TelegramMethod[Any]], type[Response[Any]]] = {}

    def check_response(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        status_code: int,
        content: str,
    ) -> Response[TelegramType]:
        kind = type(method)
        if kind not in self.answer_types:
            self.answer_types[kind] = Response[method.__returning__]  # type: ignore[name-defined]
        return super().check_response(bot, method, status_code, content)
