# Правила уведомлений, тихие часы и сгруппированные уведомления.

attn-btn_mute_sender = 🔕 Заглушить отправителя

attn-btn_mute_domain = 🔕 Заглушить домен

attn-btn_undo = ↩️ Отменить

attn-muted_sender = Уведомления от { $value } отключены. Письма по-прежнему приходят в /inbox.

attn-muted_domain = Уведомления от домена { $value } отключены. Письма по-прежнему приходят в /inbox.

attn-unmuted = Отменено: уведомления снова приходят.

attn-not_found = Этого уже нет.

attn-line = { $n }. { $sender } — { $subject }

attn-group_title = { $count ->
        [one] 📬 <b>{ $count } новое письмо</b>
        [few] 📬 <b>{ $count } новых письма</b>
        [many] 📬 <b>{ $count } новых писем</b>
       *[other] 📬 <b>{ $count } новых письма</b>
    }

attn-more = { $count ->
        [one] …и ещё { $count } письмо в /inbox
        [few] …и ещё { $count } письма в /inbox
        [many] …и ещё { $count } писем в /inbox
       *[other] …и ещё { $count } письма в /inbox
    }

attn-digest_title = { $count ->
        [one] 🌙 <b>Тихие часы закончились — пришло { $count } письмо</b>
        [few] 🌙 <b>Тихие часы закончились — пришло { $count } письма</b>
        [many] 🌙 <b>Тихие часы закончились — пришло { $count } писем</b>
       *[other] 🌙 <b>Тихие часы закончились — пришло { $count } письма</b>
    }

attn-btn_rules = 🔕 Правила уведомлений

attn-btn_quiet = 🌙 Тихие часы

attn-rules_empty =
    🔕 <b>Правила уведомлений</b>
    Правил пока нет. Отключите отправителя прямо из уведомления или добавьте правило: без уведомлений или VIP (всегда со звуком) — по отправителю, домену или слову в теме.

attn-rules_title = { $count ->
        [one] 🔕 <b>Правила уведомлений</b>: { $count } правило (страница { $page } из { $pages })
        [few] 🔕 <b>Правила уведомлений</b>: { $count } правила (страница { $page } из { $pages })
        [many] 🔕 <b>Правила уведомлений</b>: { $count } правил (страница { $page } из { $pages })
       *[other] 🔕 <b>Правила уведомлений</b>: { $count } правила (страница { $page } из { $pages })
    }

attn-rule_mute = { $n }. 🔕 { $kind }: { $value }

attn-rule_vip = { $n }. ⭐ { $kind }: { $value }

attn-kind_sender = отправитель

attn-kind_domain = домен

attn-kind_subject = слово в теме

attn-btn_newer = ⬅️ Назад

attn-btn_older = Дальше ➡️

attn-btn_add_rule = ➕ Добавить правило

attn-deleted = Правило удалено.

attn-pick_kind = Что должно делать правило? <b>Без уведомлений</b>: письмо приходит без уведомления. <b>VIP</b>: уведомление всегда со звуком.

attn-btn_sender_mute = 🔕 Отправитель

attn-btn_domain_mute = 🔕 Домен

attn-btn_subject_mute = 🔕 Слово

attn-btn_sender_vip = ⭐ Отправитель

attn-btn_domain_vip = ⭐ Домен

attn-btn_subject_vip = ⭐ Слово

attn-ask_sender = Пришлите адрес отправителя, например news@example.com

attn-ask_domain = Пришлите домен, например example.com (поддомены тоже подойдут)

attn-ask_subject = Пришлите слово (или несколько слов) из темы

attn-rule_saved_mute = Сохранено: без уведомлений — { $kind } { $value }.

attn-rule_saved_vip = Сохранено: { $kind } { $value } — VIP, уведомления всегда со звуком.

attn-err_too_long = Слишком длинно: не больше { $limit } символов. Попробуйте ещё раз или нажмите «Отмена».

attn-err_bad_address = Это не адрес почты. Пришлите в виде news@example.com или нажмите «Отмена».

attn-err_bad_domain = Это не домен. Пришлите в виде example.com или нажмите «Отмена».

attn-err_bad_word = Пришлите слово от 1 до 60 символов, хотя бы с одной буквой или цифрой, или нажмите «Отмена».

attn-err_too_many = Слишком много правил. Сначала удалите лишние.

attn-err_no_address = У этого письма нет адреса отправителя.

attn-zone_unset = не задан

attn-mode_silent = уведомления без звука

attn-mode_hold = копить и прислать одной сводкой в конце

attn-quiet_title =
    🌙 <b>Тихие часы</b>
    Часовой пояс: { $zone }
    Время: { $window }
    В это время: { $mode }
    VIP-письма приходят сразу: { $vip }
    Группировать уведомления, когда писем сразу столько: { $burst }

attn-quiet_now = Сейчас тихие часы, до { $until }.

attn-btn_zone = 🌍 Часовой пояс: { $zone }

attn-btn_window = 🕙 Время: { $window }

attn-btn_mode = В это время: { $mode }

attn-btn_vip = ⭐ VIP сразу: { $state }

attn-btn_burst = 📬 Группировать от: { $value }

attn-btn_quiet_off = Выключить тихие часы

attn-ask_zone = Выберите часовой пояс или напишите его название (например, Europe/Moscow) или смещение от UTC (например, UTC+3, -05:30).

attn-ask_window = Ваш часовой пояс — { $zone }. Выберите время тишины или напишите его так: 22:00-08:00.

attn-err_bad_zone = Не знаю такого часового пояса. Напишите название вроде Europe/Moscow или смещение вроде UTC+3.

attn-err_bad_window = Напишите время так: 22:00-08:00 (начало и конец должны различаться).

attn-err_no_zone = Сначала задайте часовой пояс.

attn-err_bad_choice = Этот вариант больше недоступен.
