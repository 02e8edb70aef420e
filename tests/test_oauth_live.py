"""An OAuth2 mailbox living in the watcher: IDLE with an access token that keeps being
refreshed, then the grant is revoked at the provider: ONE Reconnect prompt, Reconnect -> Save
signs in again, the watcher resumes and alerts come again."""

from __future__ import annotations

from tests.harness.mailstack import MailUser
from tests.harness.oauth_server import ScriptedBrowser
from tests.test_connect_wizard import letter
from tests.test_live_mailbox import settle, wait_alerts, wait_watching
from tests.test_oauth_wizard import World, authorize, finish_wizard, to_password_step, world  # noqa: F401


async def test_oauth_mailbox_watched_then_revoked_then_reauthorized(world: World, mail_user: MailUser) -> None:  # noqa: F811
    await world.company("acme-live", "Acme Live")
    await world.configure("acme-live", lifetime=30)  # under a minute: every (re)connect refreshes first
    user = world.h.user(9301)
    await to_password_step(user, "Acme Live", mail_user.address)
    page = await ScriptedBrowser().sign_in(await authorize(user, "Acme Live"), mail_user.address, mail_user.password)
    assert page.status == 200
    await finish_wizard(user)
    box = await world.mailbox(user.id)
    assert box is not None and box.auth_kind == "oauth2"
    await wait_watching(world.h, box.id)

    # IDLE works with the token: a letter gives an alert
    await world.h.stack.deliver(mail_user.address, letter(1, subject="Via OAuth IDLE"))
    await wait_alerts(world.h, user, 1)

    # the access token expires and the session drops: the watcher refreshes and carries on
    world.oauth.expire_access_tokens(mail_user.address)
    await world.h.stack.kick(mail_user.address)
    await world.h.stack.deliver(mail_user.address, letter(2, subject="After refresh"))
    found = await wait_alerts(world.h, user, 2, timeout=15)
    assert "After refresh" in found[-1].text

    # the person withdraws the bot's access at the provider: one Reconnect prompt
    world.oauth.revoke_user(mail_user.address)
    world.oauth.expire_access_tokens(mail_user.address)
    await world.h.stack.kick(mail_user.address)
    prompt = await user.wait_for_text("is broken", timeout=20)
    await settle(4)
    assert sum("is broken" in m.text for m in user.messages()) == 1
    box = await world.mailbox(user.id)
    assert box is not None and box.state == "broken"
    # told to sign in again, not to check a password it never had
    assert "sign in again" in prompt.text and "password" not in prompt.text and "login" not in prompt.text

    # Reconnect -> Sign in again starts a new authorization
    await user.press("🔄 Reconnect", message_id=prompt.message_id)
    card = user.last()
    assert card.labels == ["🔐 Sign in again", "✖️ Cancel"], "no New password for an account that has none"
    assert "signing in at Acme Live, not by a password" in card.text and "If the password" not in card.text
    mark = user.mark()
    await user.press("🔐 Sign in again")
    message = await user.wait_for(lambda m: "🔐 Sign in at Acme Live" in m.labels, since=mark)
    page = await ScriptedBrowser().sign_in(message.button("🔐 Sign in at Acme Live").url or "", mail_user.address, mail_user.password)
    assert page.status == 200
    await user.wait_for_text("Signed in at Acme Live again", timeout=10)
    await wait_watching(world.h, box.id)
    await world.h.stack.deliver(mail_user.address, letter(3, subject="Back after re-authorization"))
    found = await wait_alerts(world.h, user, 3, timeout=15)
    assert "Back after re-authorization" in found[-1].text
