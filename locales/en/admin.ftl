# Messages of the admin area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

admin-menu =
    🛠 <b>Administration</b>
    Choose a section.

admin-btn_services = 📮 Standard services

admin-btn_companies = 🏢 Company servers

admin-btn_flags = 🚩 Feature flags

admin-btn_status = 📊 Status

admin-btn_broadcast = 📣 Outage notice

admin-btn_refresh = 🔄 Refresh

admin-btn_hide = 🚫 Hide from the connect wizard

admin-btn_show = ✅ Show in the connect wizard

admin-in_wizard = ✅ shown in the connect wizard

admin-not_in_wizard = 🚫 hidden from the connect wizard

admin-toast_shown = { $service } is shown in the connect wizard again.

admin-toast_hidden = { $service } is hidden from the connect wizard. Connected accounts keep working.

admin-input_cancelled = Cancelled.

admin-need_text = Please send text, or /cancel.

admin-svc_title =
    📮 <b>Standard services</b>
    ✅ shown in the connect wizard, 🚫 hidden. Hiding a service only removes it from the wizard: accounts already connected through it keep working. The number is how many accounts use it.

admin-svc_btn = { $icon } { $service } · { $count }

admin-svc_card =
    📮 <b>{ $service }</b>
    { $state }
    { $count ->
        [one] { $count } connected account
       *[other] { $count } connected accounts
    }

admin-account_line = • { $email } — { $state }

admin-accounts_more = … and { $count ->
        [one] { $count } more account
       *[other] { $count } more accounts
    }

admin-co_title =
    🏢 <b>Company servers</b>
    Mail servers of your company, offered in the connect wizard before the standard services. The number is how many accounts use each.

admin-co_none = No company servers yet.

admin-co_btn = { $icon } { $service } · { $count }

admin-co_btn_add = ➕ Add a company server

admin-co_card =
    🏢 <b>{ $service }</b> (code <code>{ $code }</code>)
    Mail domains: { $domains }
    IMAP: { $imap }
    SMTP: { $smtp }
    { $state }
    { $count ->
        [one] { $count } connected account
       *[other] { $count } connected accounts
    }

admin-co_btn_test = 🔌 Test the connection

admin-co_btn_name = ✏️ Name

admin-co_btn_domains = ✏️ Domains

admin-co_btn_imap = ✏️ IMAP

admin-co_btn_smtp = ✏️ SMTP

admin-co_btn_remove = 🗑 Remove

admin-co_btn_remove_yes = 🗑 Yes, remove it

admin-co_ask_name = Send the server's name as users will see it in the wizard, e.g. <i>Acme mail</i>.

admin-co_ask_domains = Send its mail domain(s), separated by commas, e.g. <i>acme.com, acme.ru</i>. Someone who picks Other with an address in one of them is offered this server.

admin-co_ask_imap = Send the IMAP server as <code>host:port security</code>, e.g. <code>mail.acme.com:993 ssl</code> or <code>mail.acme.com:143 starttls</code>. Without a port: 993 (SSL/TLS) or 143 (STARTTLS).

admin-co_ask_smtp = Send the SMTP server as <code>host:port security</code>, e.g. <code>mail.acme.com:465 ssl</code> or <code>mail.acme.com:587 starttls</code>. Without a port: 465 (SSL/TLS) or 587 (STARTTLS).

admin-co_current = Now: <code>{ $value }</code>

admin-co_bad_name = The name must be 1 to 128 characters on one line. Send it again.

admin-co_bad_domains = That is not a list of mail domains. Send them like <i>acme.com, acme.ru</i> (at most 20).

admin-co_bad_imap = I could not read that. Send it like <code>mail.acme.com:993 ssl</code> (security: ssl or starttls).

admin-co_bad_smtp = I could not read that. Send it like <code>mail.acme.com:465 ssl</code> (security: ssl or starttls).

admin-co_added = ✅ Company server <b>{ $service }</b> added. It is now in the connect wizard; use the test button to check its ports.

admin-co_saved = ✅ Saved. Accounts connected earlier keep their settings until their owners reconnect.

admin-co_testing = 🔌 Testing the ports of { $service } (no password is sent)…

admin-co_test_title = 🔌 <b>Connection test: { $service }</b> (no password sent)

admin-co_test_ok = ✅ { $protocol } { $server }: TLS is fine ({ $tls }, certificate trusted), the server greets as { $greeting }.

admin-co_test_fail = ❌ { $protocol } { $server }:

admin-co_test_all_ok = Both ports look right. Users can connect with their own login and password.

admin-co_test_some_failed = Fix the settings marked ❌ and test again.

admin-co_in_use = { $count ->
        [one] { $count } account uses this server, so it can't be removed. Hide it from the wizard instead; the account keeps working.
       *[other] { $count } accounts use this server, so it can't be removed. Hide it from the wizard instead; the accounts keep working.
    }

admin-co_remove_confirm = Remove the company server <b>{ $service }</b>? It disappears from the connect wizard. No account uses it.

admin-co_removed = { $service } removed.

admin-flags_title = 🚩 <b>Feature flags</b>

admin-flag_line = <b>{ $name }</b>: { $state }

admin-flag_configured = Set by the configuration ({ $name }={ $state }); the configuration wins over this chat. Change it there and restart.

admin-flag_stored_ignored = The value chosen here ({ $state }) is kept but ignored while the configuration sets the flag.

admin-flag_from_chat = Set here by an admin.

admin-flag_default = Never set: the default applies.

admin-flag_btn_on = Turn { $name } on

admin-flag_btn_off = Turn { $name } off

admin-status =
    📊 <b>Status</b>
    { $users ->
        [one] { $users } user
       *[other] { $users } users
    } ({ $active } active, { $blocked } blocked the bot)
    Mailboxes: 🟢 { $connected } connected · 🟡 { $reconnecting } reconnecting · 🔴 { $broken } broken

admin-status_per_service = <b>Per service</b> (🟢 / 🟡 / 🔴):

admin-status_service = • { $service }: { $connected } / { $reconnecting } / { $broken }

admin-status_errors = <b>Last errors</b>:

admin-status_error = • { $email } ({ $service }, { $state } since { $since }): { $error }

admin-status_no_errors = No mailbox is reconnecting or broken.

admin-bc_ask_text = 📣 Send the text of the notice (up to { $limit ->
        [one] { $limit } character
       *[other] { $limit } characters
    }; bold, italics and links are kept). You will choose who gets it and see a preview before anything is sent.

admin-bc_too_long = The notice is { $length ->
        [one] { $length } character
       *[other] { $length } characters
    } long; the limit is { $limit }. Send a shorter one.

admin-bc_pick_audience = Who should get the notice? The number is how many will receive it (users who blocked the bot are skipped).

admin-bc_btn_audience = { $audience } · { $count }

admin-bc_audience_all = Everyone

admin-bc_audience_service = Users of { $service }

admin-bc_btn_discard = ✖️ Discard

admin-bc_preview_intro = 👇 Preview: users get exactly this (each in their language):

admin-bc_notice =
    📣 <b>Notice from the administrator</b>

    { $text }

admin-bc_confirm =
    Send it to <b>{ $audience }</b>?
    It goes to { $count ->
        [one] { $count } user
       *[other] { $count } users
    }; { $skipped ->
        [0] nobody has blocked the bot, nobody is skipped.
        [one] { $skipped } more blocked the bot and is skipped.
       *[other] { $skipped } more blocked the bot and are skipped.
    }

admin-bc_nobody = Nobody would receive it: choose another audience.

admin-bc_btn_send = 📣 Send to { $count ->
        [one] { $count } user
       *[other] { $count } users
    }

admin-bc_btn_change_audience = 👥 Audience

admin-bc_btn_change_text = ✏️ Text

admin-bc_discarded = Notice discarded. Nothing was sent.

admin-bc_started = Sending to { $count ->
        [one] { $count } user
       *[other] { $count } users
    }…

admin-bc_already_sent = This notice was already sent or discarded.

admin-bc_busy = A notice is being sent right now. Wait until it is done, or stop it.

admin-bc_stopping = Stopping…

admin-bc_already_over = This notice is not being sent any more.

admin-bc_btn_stop = ⏹ Stop sending

admin-bc_progress =
    📣 <b>Sending the notice</b> to { $audience }
    ✅ sent: { $sent }
    ❌ failed: { $failed }
    🚫 blocked the bot: { $blocked }
    ⏳ left: { $left } of { $total }
    ⚡ { $rate } messages/s

admin-bc_done =
    📣 <b>Notice sent</b> to { $audience } in { $elapsed }
    ✅ sent: { $sent }
    ❌ failed: { $failed }
    🚫 blocked the bot: { $blocked }

admin-bc_cancelled =
    📣 <b>Sending stopped</b> ({ $audience })
    ✅ sent: { $sent }
    ❌ failed: { $failed }
    🚫 blocked the bot: { $blocked }
    ⏸ not sent: { $left }

admin-bc_uncertain = ⚠️ { $count ->
        [one] { $count } of the failed messages may or may not have arrived (the bot stopped, or Telegram did not answer, while it was being sent); it is not sent again, so nobody gets the notice twice.
       *[other] { $count } of the failed messages may or may not have arrived (the bot stopped, or Telegram did not answer, while they were being sent); they are not sent again, so nobody gets the notice twice.
    }

company-wizard_offer = 🏢 Addresses at this domain are served by <b>{ $service }</b>, set up by your administrator. Press the button to use its settings, or go on with Other.

company-wizard_btn = 🏢 Use { $service }
