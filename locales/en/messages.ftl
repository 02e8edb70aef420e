# Messages of the messages area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

start-welcome =
    Hello, { $name }! I bring your e-mail into Telegram: new-mail alerts within seconds, letters you can read right here.

    Connect your mailbox to begin.

help-text =
    <b>mailbridge</b> connects one e-mail mailbox to this chat.

    /start — main menu
    /inbox — latest letters
    /sent — letters sent on your behalf
    /settings — mailbox, alerts, language
    /cancel — leave what you are doing

    Your password is deleted from the chat at once and stored encrypted.

cmd-start = Main menu

cmd-settings = Mailbox and language settings

cmd-cancel = Cancel the current step

cmd-help = What this bot does

cmd-inbox = Latest letters

cmd-admin = Administration

btn-connect = 📬 Connect mail

btn-mail_settings = 📬 My mailbox

btn-settings = ⚙️ Settings

btn-mail = 📬 Mail

btn-language = 🌐 Language

btn-cancel = ✖️ Cancel

btn-back = ⬅️ Back

btn-use_login = Use { $login }

btn-servers_ok = ✅ These are right

btn-edit_imap_host = IMAP server

btn-edit_imap_port = IMAP port

btn-imap_security = IMAP security: { $sec }

btn-edit_smtp_host = SMTP server

btn-edit_smtp_port = SMTP port

btn-smtp_security = SMTP security: { $sec }

btn-no_signature = No signature

btn-notify = 🔔 Notify

btn-dont_notify = 🔕 Don't notify

btn-mobile_sound = 🔔 With sound

btn-mobile_silent = 🔕 Silently

btn-allow = ✅ Allow

btn-deny = 🚫 Don't allow

btn-save = 💾 Save

btn-fix_password = 🔑 Enter the password again

btn-fix_login = Change login

btn-fix_email = Change e-mail

btn-fix_imap_host = Change IMAP server

btn-fix_imap_port = Change IMAP port

btn-fix_smtp_host = Change SMTP server

btn-fix_smtp_port = Change SMTP port

btn-fix_servers = Review all server settings

btn-retry = 🔄 Try again

btn-edit_signature = ✍️ Signature

btn-toggle_notify = New-mail alerts: { $state }

btn-toggle_sound = Sound on mobile: { $state }

btn-toggle_processes = Business processes: { $state }

word-on = on

word-off = off

word-none = none

security-ssl = SSL/TLS

security-starttls = STARTTLS

source-builtin = the built-in list of mail services

source-autoconfig = the domain's autoconfig server

source-wellknown = the domain's own configuration file

source-mx = the domain's mail exchanger (MX)

source-probe = probing common server names

source-guess = a guess (nothing was found automatically)

source-manual = your input

connect-already = You already have a mailbox connected. One mailbox per Telegram account: delete it in /settings to connect another.

connect-pick_service = <b>Step 1.</b> Which mail service is your mailbox at?

connect-ask_email =
    <b>{ $service }</b>

    <b>Step 2.</b> Send your e-mail address.

connect-ask_login = <b>Step 3.</b> Login for <b>{ $email }</b>. Usually it is the address itself: press the button, or send a different login.

connect-discovering = 🔎 Looking up the server settings for this address…

connect-review_servers =
    Server settings found via { $source }:

    IMAP (incoming): <code>{ $imap }</code>
    SMTP (outgoing): <code>{ $smtp }</code>

    Check them before you send your password. To change a server, press it, or send both at once: <code>imap.example.com:993 smtp.example.com:465</code>

connect-ask_imap_host = Send the IMAP server name (now: <code>{ $current }</code>).

connect-ask_imap_port = Send the IMAP port, a number from 1 to 65535 (now: <code>{ $current }</code>). Usually 993 for SSL/TLS or 143 for STARTTLS.

connect-ask_smtp_host = Send the SMTP server name (now: <code>{ $current }</code>).

connect-ask_smtp_port = Send the SMTP port, a number from 1 to 65535 (now: <code>{ $current }</code>). Usually 465 for SSL/TLS or 587 for STARTTLS.

connect-hint = 💡 { $hint }

connect-hint_imap =
    💡 { $hint }

    Switch on access for mail programs first: { $path }

connect-ask_password =
    <b>Step 4.</b> Send the password for <b>{ $login }</b>.

    I delete your message right away and keep the password encrypted.

connect-checking = ⏳ Checking IMAP and SMTP…

connect-check_ok = ✅ Signed in to IMAP and SMTP.

connect-ask_signature = <b>Step 5.</b> Send a signature for your outgoing letters (up to { $limit ->
        [one] { $limit } character
       *[other] { $limit } characters
    }), or press «No signature».

connect-signature_saved =
    Signature:
    { $signature }

connect-ask_alerts = <b>Step 6.</b> Alerts about new letters: who wrote and about what, with a button to open the letter.

connect-ask_mobile = <b>Step 7.</b> Alerts on your phone: with sound, or silently (they still arrive in the chat, without a push).

connect-ask_processes = <b>Step 8.</b> May the company's business processes send letters from this address on your behalf?

connect-confirm =
    <b>Ready to save</b>

    Address: { $email }
    Service: { $service }
    Signature: { $signature }
    New-mail alerts: { $alerts }
    Sound on mobile: { $sound }
    Business processes: { $processes }

connect-importing = ⏳ Saving and loading your latest letters…

connect-done = ✅ <b>Mailbox connected</b>

connect-in_progress = You are connecting a mailbox. Carry on below, or send /cancel to stop.

cancel-nothing = Nothing to cancel.

cancel-done = Cancelled. Nothing was saved.

fail-auth_failed = ❌ { $protocol }: the server did not accept the login or password.

fail-imap_disabled = ❌ { $protocol }: the server refused the login. Either the password is wrong, or access by mail programs (IMAP) is switched off in your mailbox settings: check both.

fail-app_password_required = ❌ { $protocol }: this service needs an <b>app password</b>, not your usual password.

fail-host_not_found = ❌ { $protocol }: the server name was not found. Check the spelling.

fail-connection_refused = ❌ { $protocol }: the server refused the connection. Check the server name and port.

fail-tls_untrusted = ❌ { $protocol }: the server's TLS certificate is not trusted (wrong name, self-signed or expired). I do not send passwords over such connections.

fail-tls_failed = ❌ { $protocol }: a secure connection could not be set up. Check the security setting (SSL/TLS or STARTTLS) and the port.

fail-timeout = ❌ { $protocol }: the server did not answer in time. It may be down, or the port may be wrong.

fail-private_address = ❌ { $protocol }: this server name points to a private or local network address. Such servers can't be used from this bot.

fail-protocol = ❌ { $protocol }: the server answered something unexpected. Is this really an { $protocol } server and port?

fail-server_said = The server said: <code>{ $detail }</code>

fail-what_next = Fix what is wrong and I will check again.

summary-address = Address: <b>{ $email }</b>

summary-service = Service: { $service }

summary-state = State: { $state }

summary-signature = Signature: { $signature }

summary-alerts = New-mail alerts: { $state }

summary-sound = Sound on mobile: { $state }

summary-processes = Business processes: { $state }

summary-imported = { $count ->
        [one] Loaded your latest letter.
       *[other] Loaded your { $count } latest letters.
    }

state-draft = not finished

state-connected = 🟢 connected

state-reconnecting = 🟡 reconnecting

state-broken = 🔴 connection broken

settings-title = ⚙️ <b>Settings</b>

settings-mail_title = 📬 <b>Mail</b>

settings-no_mailbox = No mailbox is connected yet.

settings-pick_language = Choose the language:

settings-language_set = Language: English

settings-ask_signature =
    Current signature: { $current }

    Send a new signature (up to { $limit ->
        [one] { $limit } character
       *[other] { $limit } characters
    }).

settings-saved = Saved.

error-stale_button = This button is out of date. Use the latest message.

error-service_unavailable = This service is no longer available. Choose another.

error-bad_email = «{ $value }» is not an e-mail address. Send it like name@example.com.

error-bad_login = The login must be 1 to 320 characters without spaces. Send it again.

error-bad_host = That is not a server name. Send a name like imap.example.com (up to 253 characters, no spaces or «://»).

error-bad_port = The port must be a whole number from 1 to 65535. Send it again.

error-bad_password = Send the password as one line of text (up to 1024 characters).

error-wizard_lost = This setup was interrupted. Start again with /start.

error-signature_too_long = The signature is { $length ->
        [one] { $length } character
       *[other] { $length } characters
    } long; the limit is { $limit }. Send a shorter one.

error-use_buttons = Please choose with the buttons.

error-need_text = Please send text.

error-unknown_command = I don't know that command. Send /start for the menu or /help.

error-internal = Something went wrong on my side. Nothing you entered was lost: try again.

error-not_your_mailbox = This mailbox is not yours.

fail-oauth_refused = ❌ { $protocol }: the server no longer accepts the bot's sign-in at your mail service (it was withdrawn, expired or changed).

fail-what_next_oauth = Sign in again: «Reconnect» → «Sign in again».

fail-server_tried = { $protocol } server tried: <code>{ $server }</code>

connect-ask_server =
    Send the { $protocol } server as <code>host:port</code> (now: <code>{ $current }</code>). Usually port { $ssl_port } for SSL/TLS or { $tls_port } for STARTTLS.

    Both servers at once work too: <code>imap.example.com:993 smtp.example.com:465</code>

error-bad_server = That is not a server. Send it as <code>host:port</code>, for example <code>imap.example.com:993</code>: a name without spaces or «://», then a port from 1 to 65535.

error-which_server = Is <code>{ $server }</code> the IMAP or the SMTP server? Press the button for it, or send both at once: <code>imap.example.com:993 smtp.example.com:465</code>

error-private_host = <code>{ $host }</code> is a private or local network address. Such servers can't be used from this bot: send another one.

connect-unexpected_text_deleted =
    🔒 I deleted your message: it is not a server address, and just before the password step it may be the password itself.

    If the servers are right, press «✅ These are right» and then send the password. To change a server, send <code>host:port</code>, or both at once: <code>imap.example.com:993 smtp.example.com:465</code>

secret-unexpected_deleted = 🔒 I deleted your message: here I was waiting for a button, and text at this step may be a password. Please use the buttons.

secret-delete_yourself = ⚠️ I could not delete your message, and it may contain your password. Please delete it yourself: press and hold it, then «Delete».
