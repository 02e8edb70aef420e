# Alert rules, quiet hours and grouped alerts (bot/attention.py, handlers/rules.py, handlers/quiet.py).

attn-btn_mute_sender = 🔕 Mute sender

attn-btn_mute_domain = 🔕 Mute domain

attn-btn_undo = ↩️ Undo

attn-muted_sender = Alerts from { $value } are muted. The letters still arrive in /inbox.

attn-muted_domain = Alerts from the domain { $value } are muted. The letters still arrive in /inbox.

attn-unmuted = Undone: alerts are back.

attn-not_found = This is not there any more.

attn-line = { $n }. { $sender } — { $subject }

attn-group_title = { $count ->
        [one] 📬 <b>{ $count } new letter</b>
       *[other] 📬 <b>{ $count } new letters</b>
    }

attn-more = { $count ->
        [one] …and { $count } more letter in /inbox
       *[other] …and { $count } more letters in /inbox
    }

attn-digest_title = { $count ->
        [one] 🌙 <b>Quiet hours are over — { $count } letter arrived</b>
       *[other] 🌙 <b>Quiet hours are over — { $count } letters arrived</b>
    }

attn-btn_rules = 🔕 Alert rules

attn-btn_quiet = 🌙 Quiet hours

attn-rules_empty =
    🔕 <b>Alert rules</b>
    No rules yet. Mute a sender right from an alert, or add a rule: mute (no alert) or VIP (always with sound) by sender, domain or a word in the subject.

attn-rules_title = { $count ->
        [one] 🔕 <b>Alert rules</b>: { $count } rule (page { $page } of { $pages })
       *[other] 🔕 <b>Alert rules</b>: { $count } rules (page { $page } of { $pages })
    }

attn-rule_mute = { $n }. 🔕 { $kind }: { $value }

attn-rule_vip = { $n }. ⭐ { $kind }: { $value }

attn-kind_sender = sender

attn-kind_domain = domain

attn-kind_subject = word in subject

attn-btn_newer = ⬅️ Back

attn-btn_older = Next ➡️

attn-btn_add_rule = ➕ Add a rule

attn-deleted = Rule deleted.

attn-pick_kind = What should the new rule do? <b>Mute</b>: the letter arrives without an alert. <b>VIP</b>: the alert always comes with sound.

attn-btn_sender_mute = 🔕 Sender

attn-btn_domain_mute = 🔕 Domain

attn-btn_subject_mute = 🔕 Word

attn-btn_sender_vip = ⭐ Sender

attn-btn_domain_vip = ⭐ Domain

attn-btn_subject_vip = ⭐ Word

attn-ask_sender = Send the sender's address, e.g. news@example.com

attn-ask_domain = Send the domain, e.g. example.com (its subdomains are included)

attn-ask_subject = Send a word (or a few words) from the subject

attn-rule_saved_mute = Saved: alerts muted for { $kind } { $value }.

attn-rule_saved_vip = Saved: { $kind } { $value } is VIP, alerts always with sound.

attn-err_too_long = That is too long: at most { $limit } characters. Try again or press Cancel.

attn-err_bad_address = That is not an e-mail address. Send it like news@example.com, or press Cancel.

attn-err_bad_domain = That is not a domain. Send it like example.com, or press Cancel.

attn-err_bad_word = Send a word of 1 to 60 characters with at least one letter or digit, or press Cancel.

attn-err_too_many = You have too many rules. Delete some first.

attn-err_no_address = This letter has no sender address to mute.

attn-zone_unset = not set

attn-mode_silent = silent alerts

attn-mode_hold = held, one digest at the end

attn-quiet_title =
    🌙 <b>Quiet hours</b>
    Time zone: { $zone }
    Window: { $window }
    During it: { $mode }
    VIP letters break through: { $vip }
    Group alerts when this many letters arrive at once: { $burst }

attn-quiet_now = Quiet hours are on now, until { $until }.

attn-btn_zone = 🌍 Time zone: { $zone }

attn-btn_window = 🕙 Window: { $window }

attn-btn_mode = During it: { $mode }

attn-btn_vip = ⭐ VIP break through: { $state }

attn-btn_burst = 📬 Group from: { $value }

attn-btn_quiet_off = Turn quiet hours off

attn-ask_zone = Pick your time zone, or type its name (e.g. Europe/Paris) or the offset from UTC (e.g. UTC+3, -05:30).

attn-ask_window = Your time zone is { $zone }. Pick the quiet window, or type it like 22:00-08:00.

attn-err_bad_zone = I don't know that time zone. Type a name like Europe/Paris or an offset like UTC+3.

attn-err_bad_window = Type the window like 22:00-08:00 (start and end must differ).

attn-err_no_zone = Set your time zone first.

attn-err_bad_choice = That choice is not available any more.
