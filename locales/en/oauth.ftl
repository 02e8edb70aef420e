# Messages of the oauth area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

oauth-btn_authorize = 🔐 Authorize with { $service }

oauth-or_authorize = Or press <b>Authorize</b> to sign in at { $service } instead: the bot gets access to this mailbox without your password.

oauth-open_link = Open the link below and sign in at <b>{ $service }</b> as <b>{ $email }</b>. The link works once, for { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }; afterwards come back here.

oauth-btn_sign_in = 🔐 Sign in at { $service }

oauth-device_prompt =
    To sign in at <b>{ $service }</b> as <b>{ $email }</b>, open { $url } and enter the code

    <code>{ $code }</code>

    I am waiting here for { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.

oauth-btn_open_device = 🔗 Open { $service }

oauth-signed_in = 🔐 Signed in at { $service }.

oauth-not_offered = Sign-in with { $service } is not available right now. Please send the password instead.

oauth-chat_unknown_state = That sign-in link is not valid. Press Authorize again to get a new one.

oauth-chat_used_state = That sign-in link was already used or replaced by a newer one. Nothing was saved. Press Authorize again if you still need to sign in.

oauth-chat_expired_state = The sign-in took longer than { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    } and expired. Nothing was saved. Press Authorize to try again.

oauth-chat_denied = You declined access at { $service }. Nothing was saved. Press Authorize to try again, or send the password instead.

oauth-chat_provider_error = { $service } reported an error during sign-in ({ $detail }). Nothing was saved. Please try again in a moment.

oauth-chat_no_verifier = The sign-in could not be verified. Nothing was saved. Press Authorize to start again.

oauth-chat_exchange_failed = { $service } did not confirm the sign-in ({ $detail }). Nothing was saved. Press Authorize to start again.

oauth-chat_not_configured = Sign-in with { $service } was switched off meanwhile. Nothing was saved. Please send the password instead.

oauth-chat_wizard_gone = You signed in at { $service }, but the mailbox setup it belonged to was cancelled or moved on. Nothing was saved.

oauth-chat_device_expired = The code for { $service } expired before you signed in. Press Authorize to get a new one.

oauth-chat_device_failed = Sign-in at { $service } did not work ({ $detail }). Please try again.

oauth-reconnected = ✅ Signed in at { $service } again: the mailbox <b>{ $email }</b> is connected.

oauth-page_title = mailbridge — mail sign-in

oauth-page_ok_title = Signed in

oauth-page_ok = You are signed in at { $service }. Go back to Telegram to finish setting up your mailbox.

oauth-page_problem_title = Sign-in not completed

oauth-page_unknown_state = This sign-in link is not valid. Go back to Telegram and press Authorize to get a new one.

oauth-page_used_state = This sign-in link was already used or replaced by a newer one. Nothing was saved.

oauth-page_expired_state = This sign-in link expired. Nothing was saved. Go back to Telegram and press Authorize again.

oauth-page_denied = You declined access. Nothing was saved.

oauth-page_provider_error = The mail provider reported an error. Nothing was saved. Please try again from Telegram.

oauth-page_no_verifier = The sign-in could not be verified. Nothing was saved.

oauth-page_exchange_failed = The mail provider did not confirm the sign-in. Nothing was saved.

oauth-page_not_configured = Sign-in with this service is not available right now. Nothing was saved.

oauth-page_wizard_gone = The mailbox setup this sign-in belonged to was cancelled. Nothing was saved.

oauth-page_back = Back to Telegram

oauth-admin_flag_state = OAuth2 sign-in (enablePostmanOauth2) is { $state }.

oauth-admin_flag_config_wins = Saved ({ $wanted }), but the configuration sets enablePostmanOauth2 and wins: OAuth2 sign-in stays { $state }.

oauth-admin_flag_usage = Usage: /oauth_flag on|off

oauth-admin_client_usage =
    Usage: /oauth_client &lt;service_code&gt; &lt;client_id&gt; &lt;client_secret or -&gt; [authorize_url token_url [device_url] [scopes...]]

    Service codes: { $codes }

oauth-admin_client_unknown_service = There is no service with the code { $code }. Service codes: { $codes }

oauth-admin_client_bad = Not saved: { $problem }. Endpoints must be https URLs; company servers and Other need the token URL and an authorize or device URL.

oauth-admin_client_saved =
    OAuth2 client for <b>{ $service }</b> saved (client id <code>{ $client_id }</code>; the secret is stored encrypted and your message was deleted).
    Flow: { $flow }.

oauth-admin_client_redirect = Register this redirect URI at the provider: <code>{ $uri }</code>

oauth-flow_code = sign-in by link (authorization code with PKCE)

oauth-flow_device = sign-in with a code (device flow)

oauth-flow_none = none yet (set PUBLIC_URL for sign-in by link, or give a device URL)

oauth-chat_done_state = Your sign-in link for { $service } was opened again. It had already been used, so this changed nothing: your sign-in stands.

oauth-chat_insecure_link = { $service } gave a sign-in page that is not secure (not https), so I will not send you there. Sign-in with a code does not work for { $service } right now: send the password instead, or ask the bot's administrator to check the sign-in settings.

oauth-chat_not_offered = Sign-in with { $service } is not available right now. Please send the password instead.

oauth-page_done_state = This sign-in link was already used. Opening it again changes nothing; you can close this page.

oauth-admin_client_flag_off = OAuth2 sign-in (enablePostmanOauth2) is off: users will see <b>Authorize</b> once it is on (/oauth_flag on).

oauth-admin_client_flag_config_off = OAuth2 sign-in (enablePostmanOauth2) is switched off in the configuration: users will see <b>Authorize</b> once the configuration turns it on.
