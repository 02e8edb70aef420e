"""API_RATE_PER_MINUTE: each API token gets its own budget; past it, 429 rate_limited with
Retry-After, and nothing is done (a letter is not sent)."""

from __future__ import annotations

import pytest

from bot.api import TokenRateLimit
from tests.harness.mailstack import MailStack, MailUser
from tests.harness.plugin_app import BotHarness
from tests.test_api import TOKEN, TOKEN2, Api, error_of, new_user

LINKS = "/api/v1/items/deal/D-1/links"


async def test_each_token_has_its_own_budget(harness: BotHarness, mail_user: MailUser, mail_stack: MailStack) -> None:
    # 6 a minute: one more every 10 s, so a slow machine can't refill the budget mid-test
    await harness.start(api_tokens=f"{TOKEN}, {TOKEN2}", web_port=0, api_rate_per_minute=6)
    api = Api(harness)
    try:
        await api.employee(7401, mail_user)
        for _ in range(5):
            status, _data = await api.call("GET", LINKS)
            assert status == 200
        to = new_user(mail_stack)
        status, data = await api.send({"user_id": 7401, "to": [to.address], "text": "the 6th request"})
        assert status == 200, data
        before = len(mail_stack.submitted)
        status, data = await api.send({"user_id": 7401, "to": [to.address], "text": "one too many"})
        assert status == 429 and error_of(data)[0] == "rate_limited"
        assert 1 <= int(api.last_headers["Retry-After"]) <= 10
        assert len(mail_stack.submitted) == before  # nothing was sent
        # the other token is not affected; neither are the public document and health
        status, _data = await api.call("GET", LINKS, token=TOKEN2)
        assert status == 200
        status, _data = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200
        status, _data = await api.call("GET", "/health", token=None)
        assert status == 200
        # a wrong token is refused as such, not counted against anyone
        status, data = await api.call("GET", LINKS, token="x" * 32)
        assert status == 401
    finally:
        await api.close()


def test_the_budget_refills_evenly() -> None:
    now = [0.0]
    limit = TokenRateLimit(60, clock=lambda: now[0])
    assert all(limit.take(1) == 0 for _ in range(60))  # a minute's worth at once
    assert limit.take(1) == pytest.approx(1.0)  # then one a second
    assert limit.take(2) == 0  # each token on its own
    now[0] += 0.5
    assert limit.take(1) == pytest.approx(0.5)
    now[0] += 0.5
    assert limit.take(1) == 0 and limit.take(1) > 0
    now[0] += 3600
    assert all(limit.take(1) == 0 for _ in range(60)) and limit.take(1) > 0  # never above a minute's worth
    assert TokenRateLimit(0).take(1) == 0


async def test_zero_means_no_limit(harness: BotHarness) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0, api_rate_per_minute=0)
    api = Api(harness)
    try:
        statuses = [(await api.call("GET", LINKS))[0] for _ in range(150)]
        assert set(statuses) == {200}
    finally:
        await api.close()


async def test_rate_limit_is_documented(harness: BotHarness) -> None:
    await harness.start(api_tokens=TOKEN, web_port=0)
    api = Api(harness)
    try:
        status, doc = await api.call("GET", "/api/v1/openapi.json", token=None)
        assert status == 200
        for path, operations in doc["paths"].items():
            for method, op in operations.items():
                if not op["security"]:
                    continue  # public: health
                limited = op["responses"]["429"]
                assert limited["x-error-codes"] == ["rate_limited"], (method, path)
                assert "Retry-After" in limited["headers"]
    finally:
        await api.close()
