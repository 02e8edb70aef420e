# Letter actions: buttons on an alert or an opened letter, and the answers to a press.

act-btn_read = ✅ Mark read
act-btn_unread = ✉️ Mark unread
act-btn_flag = ⭐ Flag
act-btn_unflag = ⭐ Unflag
act-btn_archive = 📦 Archive
act-btn_trash = 🗑 Delete
act-btn_junk = 🚫 Spam
act-btn_undo = ↩️ Undo

act-state_archive = 📦 Archived
act-state_trash = 🗑 In Trash
act-state_junk = 🚫 In Spam
act-state_gone = ⚠️ Not in Inbox any more

act-done_read = Marked as read.
act-done_unread = Marked as unread.
act-done_flag = Flagged.
act-done_unflag = Flag removed.
act-done_archive = Archived to “{ $folder }”. Undo within { $seconds ->
        [one] { $seconds } second
       *[other] { $seconds } seconds
    }.
act-done_trash = Moved to “{ $folder }”. Undo within { $seconds ->
        [one] { $seconds } second
       *[other] { $seconds } seconds
    }.
act-done_junk = Reported as spam and moved to “{ $folder }”. Undo within { $seconds ->
        [one] { $seconds } second
       *[other] { $seconds } seconds
    }.
act-done_undo = Back in Inbox.

act-in_inbox = This letter is in Inbox.
act-in_archive = This letter was archived to “{ $folder }”.
act-in_trash = This letter was moved to “{ $folder }”.
act-in_junk = This letter was moved to “{ $folder }” as spam.
act-in_gone = This letter is no longer in Inbox: it was deleted or moved elsewhere.
act-gone = This letter is no longer in Inbox: it was deleted or moved elsewhere.
act-too_late = Too late to undo: the letter stays in “{ $folder }”.
act-nothing = The letter is in Inbox: there is nothing to undo.
act-no_folder = Your mailbox has no folder for that.
act-unknown = This button is no longer valid.
act-unreachable = Could not reach the mailbox to do that: { $reason } Try again later.
