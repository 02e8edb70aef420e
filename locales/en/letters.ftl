# Messages of the letters area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

letter-from = <b>From:</b> { $sender }

letter-to = <b>To:</b> { $value }

letter-cc = <b>Cc:</b> { $value }

letter-date = <b>Date:</b> { $value }

letter-subject = <b>Subject:</b> { $value }

letter-no_subject = (no subject)

letter-unknown_sender = (unknown sender)

letter-no_text = <i>The letter has no text.</i>

letter-truncated = <i>… The letter goes on; the rest of its text is not shown here.</i>

letter-attachments = 📎 <b>{ $count ->
        [one] { $count } attachment
       *[other] { $count } attachments
    }</b>

letter-attachment = { $n }. { $name } — { $size }

letter-attachment_too_large = { $n }. { $name } — { $size } ⚠️ too large to send here: Telegram lets bots send files up to { $limit }

letter-attachments_more = … and { $count ->
        [one] { $count } more attachment
       *[other] { $count } more attachments
    }

letter-size_b = { $value } B

letter-size_kb = { $value } KB

letter-size_mb = { $value } MB

letter-size_gb = { $value } GB

letter-alert =
    📩 <b>New letter</b>
    From: { $sender }
    Subject: { $subject }
