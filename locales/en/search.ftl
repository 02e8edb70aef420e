## One-time codes in alerts

codes-alert_code = 🔑 Code: <code>{ $code }</code>
codes-btn_copy = 📋 Copy { $code }

## Search

cmd-search = Search your letters
search-btn_search = 🔎 Search
search-ask =
    🔎 Send the words to look for in the sender, the subject and the text of your letters.
    <b>from:</b> and <b>subject:</b> narrow a word to one field; "quoted words" are searched as a phrase.
    For example: <code>invoice from:anna subject:"March report"</code>
search-cancelled = Search cancelled.
search-need_text = Please send the words to search for as text.
search-bad_empty = Send at least one word to search for.
search-bad_too_long = That is too long to search for: at most { $limit } characters. Send shorter words.
search-bad_control = The words contain invisible control characters. Send them as plain text.
search-bad_too_many = Too many words: at most { $limit }. Send fewer.
search-title = 🔎 <b>{ $query }</b> — letters { $first }–{ $last } of { $total }
search-empty = 🔎 Nothing found for <b>{ $query }</b>.
search-mode_local = ⚠️ The mail server can't search in this alphabet, so only the letters the bot has stored were searched (sender, subject and the start of the text).
search-mode_ascii = ⚠️ The mail server can't search in UTF-8; the words were searched in plain ASCII.
search-expired = This search is over. Start a new one with /search.
search-timeout = ⏳ The mail server did not answer the search in time. Try again later or with other words.
search-refused = The mail server refused the search: { $detail }
search-unreachable = Could not reach the mailbox to search: { $reason } Try again later.
