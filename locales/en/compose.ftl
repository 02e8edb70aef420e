# Answering letters from the chat: reply, reply to all, forward (handlers/compose.py).

compose-btn_reply = ↩️ Reply

compose-btn_reply_all = ↩️ Reply all

compose-btn_forward = ➡️ Forward

compose-btn_send = 📤 Send

compose-btn_edit_text = ✏️ Edit text

compose-btn_add_recipients = ➕ Add recipients

compose-btn_cancel = ✖️ Cancel

compose-ask_text = ✍️ Write your answer to «{ $subject }». Photos and documents you send now go with the letter as attachments. Nothing is sent until you press Send.

compose-ask_new_text = ✍️ Send the new text of the letter.

compose-ask_recipients = 📮 Whom should the letter go to? Send one or more addresses, separated by commas, e.g. <code>name@example.com, Anna &lt;anna@example.org&gt;</code>.

compose-preview_title = 📝 <b>Your letter</b> — nothing is sent until you press Send.

compose-preview_from = <b>From:</b> { $value }

compose-preview_to = <b>To:</b> { $value }

compose-preview_cc = <b>Cc:</b> { $value }

compose-preview_subject = <b>Subject:</b> { $value }

compose-preview_nobody = <i>nobody yet: add recipients</i>

compose-preview_no_text = <i>(no text yet)</i>

compose-preview_quote = <i>The letter you answer is quoted below your text.</i>

compose-preview_forward = <i>The original letter follows your text.</i>

compose-preview_attachments = 📎 <b>{ $count ->
        [one] { $count } attachment
       *[other] { $count } attachments
    }</b>

compose-preview_attachment = { $n }. { $name } — { $size }

compose-preview_forwarded_attachment = { $n }. { $name } — { $size } (from the original)

compose-quote_intro = On { $date }, { $sender } wrote:

compose-forward_title = ---------- Forwarded message ----------

compose-forward_from = From: { $value }

compose-forward_date = Date: { $value }

compose-forward_subject = Subject: { $value }

compose-forward_to = To: { $value }

compose-forward_cc = Cc: { $value }

compose-sending = ⏳ Sending…

compose-sent = ✅ Sent to { $to }. A copy is in the folder «{ $folder }».

compose-sent_no_copy = ✅ Sent to { $to }. The mail server did not take a copy into the Sent folder.

compose-cancelled = The draft is discarded; nothing was sent.

compose-expired = ⌛ Your draft «{ $subject }» was older than a day and has been discarded; nothing was sent. Press Reply or Forward under the letter to start again.

compose-stale = This draft is no longer open.

compose-gone = This letter is no longer in your mailbox.

compose-no_recipients = Add at least one recipient first.

compose-bad_addresses = ⚠️ { $count ->
        [one] This is not an e-mail address
       *[other] These are not e-mail addresses
    }: { $list }. Send the addresses again, e.g. <code>name@example.com</code>.

compose-recipients_added = { $count ->
        [one] { $count } recipient added.
       *[other] { $count } recipients added.
    }

compose-unsupported = Only text, photos and documents can go into a letter.

compose-too_many_files = A letter takes at most { $count } files from the chat.

compose-file_too_big = ⚠️ «{ $name }» is { $size }: bots can take files only up to { $limit } from Telegram. Send a smaller file, or a link to it.

compose-refused_rcpt = ⛔ Nothing was sent. The mail server refused { $list }: { $reply }
    I took { $count ->
        [one] this address
       *[other] these addresses
    } off the letter: press Send to send it to the others, or add other recipients.

compose-refused = ⛔ Nothing was sent. The mail server refused the letter: { $reply }

compose-too_large_server = ⛔ Nothing was sent: the letter is { $size } with its attachments, and your mail server takes at most { $limit }. Cancel and answer again with fewer or smaller files.

compose-too_large_total = ⛔ Nothing was sent: the attachments come to { $size }, more than the { $limit } a letter from the chat may carry.

compose-forward_too_big = ⛔ Nothing was sent: the attachment «{ $name }» of the original is { $size }, more than the { $limit } a letter from the chat may carry.

compose-broken = ⛔ Nothing was sent: the mailbox { $email } has to be reconnected first. Your draft is kept.

compose-unreachable = ⛔ Nothing was sent: the mail server could not be reached ({ $reason }). Your draft is kept: press Send again later.

compose-start_unreachable = Could not reach the mailbox to read the letter: { $reason } Try again later.

compose-download_refused = ⚠️ Nothing was sent: Telegram did not give the bot «{ $name }». Bots can take files only up to { $limit }; send a smaller file or a link, then press Send again.
