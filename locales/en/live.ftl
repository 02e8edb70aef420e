# Messages of the live area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

btn-reconnect = 🔄 Reconnect

btn-delete_account = 🗑 Delete account

btn-delete_yes = 🗑 Yes, delete

btn-delete_no = No, keep it

btn-open = 📖 Open

btn-newer = ⬅️ Newer

btn-older = Older ➡️

btn-sent = 📤 Sent

btn-inbox = 📥 Inbox

btn-new_password = 🔑 New password

btn-change_login = Login

btn-change_imap_host = IMAP server

btn-change_imap_port = IMAP port

btn-change_smtp_host = SMTP server

btn-change_smtp_port = SMTP port

btn-attachment = 📎 { $name } ({ $size })

alert-broken =
    🔴 <b>Connection to { $email } is broken</b>

    { $reason }

    New letters will not arrive until you reconnect. Press «Reconnect», check the password (or app password) and press Save.

alert-outage = 🟡 The mail server of { $email } has not answered since { $since }. I keep trying and will tell you when it is back; no letters are lost.

alert-recovered = 🟢 The connection to { $email } is back. Letters that arrived meanwhile follow.

reconnect-title =
    🔄 <b>Reconnect { $email }</b>

    State: { $state }
    Login: { $login }
    IMAP: <code>{ $imap }</code>
    SMTP: <code>{ $smtp }</code>

    Press Save to check the connection again. If the password or other settings changed, change them first.

reconnect-last_error = Last error: { $error }

reconnect-ask_password = Send the new password for <b>{ $login }</b>. I delete your message at once and check the connection right away.

reconnect-ask_login = Send the login (now: <code>{ $current }</code>).

reconnect-ask_imap_host = Send the IMAP server name (now: <code>{ $current }</code>).

reconnect-ask_imap_port = Send the IMAP port, 1 to 65535 (now: <code>{ $current }</code>).

reconnect-ask_smtp_host = Send the SMTP server name (now: <code>{ $current }</code>).

reconnect-ask_smtp_port = Send the SMTP port, 1 to 65535 (now: <code>{ $current }</code>).

reconnect-checking = ⏳ Checking IMAP and SMTP…

reconnect-done = 🟢 Reconnected. Letters that arrived meanwhile will follow.

delete-confirm =
    Delete the mailbox <b>{ $email }</b> from the bot?

    All imported letters are deleted from the bot (they stay in your mailbox). Letters linked to business items keep their short summary there. You can connect another mailbox afterwards.

delete-done = 🗑 The mailbox { $email } is disconnected and its letters are deleted from the bot. You can connect another one.

inbox-title = 📥 <b>Inbox</b> of { $email } — letters { $first }–{ $last } of { $total }

inbox-empty = 📥 No letters yet.

inbox-line = { $n }. { $clip }<b>{ $subject }</b> — { $who }, { $date }

inbox-no_subject = (no subject)

inbox-no_mailbox = No mailbox is connected. Connect one first.

sent-title = 📤 <b>Sent</b> from { $email } by business processes — letters { $first }–{ $last } of { $total }

sent-empty = 📤 Nothing has been sent from this address through the bot yet. Letters that business processes send on your behalf appear here.

sent-line = { $n }. { $clip }<b>{ $subject }</b> → { $who }, { $date }

read-loading = ⏳ Opening the letter…

read-gone = This letter is no longer available.

read-unreachable = Could not reach the mailbox to open the letter: { $reason } Try again later.

read-too_big = 📎 { $name } is { $size }: larger than the { $limit } Telegram lets a bot send. Open it in your mail program.

read-sending_file = ⏳ Sending { $name }…

summary-since = since { $since }

summary-error = Last error: { $error }

reconnect-oauth_unavailable = OAuth2 sign-in is not available for this service any more. Ask the bot's administrator, or delete the account and connect it with a password.

alert-broken_oauth =
    🔴 <b>Connection to { $email } is broken</b>

    { $reason }

    New letters will not arrive until you sign in again. Press «Reconnect», then «Sign in again».

reconnect-title_oauth =
    🔄 <b>Reconnect { $email }</b>

    State: { $state }
    Signed in at: { $service }
    IMAP: <code>{ $imap }</code>
    SMTP: <code>{ $smtp }</code>

    This mailbox is connected by signing in at { $service }, not by a password. Press «Sign in again» to get a new sign-in link or code.

btn-sign_in_again = 🔐 Sign in again
