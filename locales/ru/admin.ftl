# Messages of the admin area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

admin-menu =
    🛠 <b>Администрирование</b>
    Выберите раздел.

admin-btn_services = 📮 Стандартные сервисы

admin-btn_companies = 🏢 Серверы компании

admin-btn_flags = 🚩 Флаги функций

admin-btn_status = 📊 Состояние

admin-btn_broadcast = 📣 Оповещение о сбое

admin-btn_refresh = 🔄 Обновить

admin-btn_hide = 🚫 Скрыть из мастера подключения

admin-btn_show = ✅ Показывать в мастере подключения

admin-in_wizard = ✅ показывается в мастере подключения

admin-not_in_wizard = 🚫 скрыт из мастера подключения

admin-toast_shown = { $service } снова показывается в мастере подключения.

admin-toast_hidden = { $service } скрыт из мастера подключения. Подключённые ящики продолжают работать.

admin-input_cancelled = Отменено.

admin-need_text = Пришлите текст или /cancel.

admin-svc_title =
    📮 <b>Стандартные сервисы</b>
    ✅ показывается в мастере подключения, 🚫 скрыт. Скрытие убирает сервис только из мастера: уже подключённые через него ящики продолжают работать. Число — сколько ящиков его используют.

admin-svc_btn = { $icon } { $service } · { $count }

admin-svc_card =
    📮 <b>{ $service }</b>
    { $state }
    { $count ->
        [one] Подключён { $count } ящик
        [few] Подключено { $count } ящика
        [many] Подключено { $count } ящиков
       *[other] Подключено { $count } ящика
    }

admin-account_line = • { $email } — { $state }

admin-accounts_more = … и ещё { $count ->
        [one] { $count } ящик
        [few] { $count } ящика
        [many] { $count } ящиков
       *[other] { $count } ящика
    }

admin-co_title =
    🏢 <b>Серверы компании</b>
    Почтовые серверы вашей компании; в мастере подключения они идут перед стандартными сервисами. Число — сколько ящиков используют каждый.

admin-co_none = Серверов компании пока нет.

admin-co_btn = { $icon } { $service } · { $count }

admin-co_btn_add = ➕ Добавить сервер компании

admin-co_card =
    🏢 <b>{ $service }</b> (код <code>{ $code }</code>)
    Почтовые домены: { $domains }
    IMAP: { $imap }
    SMTP: { $smtp }
    { $state }
    { $count ->
        [one] Подключён { $count } ящик
        [few] Подключено { $count } ящика
        [many] Подключено { $count } ящиков
       *[other] Подключено { $count } ящика
    }

admin-co_btn_test = 🔌 Проверить подключение

admin-co_btn_name = ✏️ Название

admin-co_btn_domains = ✏️ Домены

admin-co_btn_imap = ✏️ IMAP

admin-co_btn_smtp = ✏️ SMTP

admin-co_btn_remove = 🗑 Удалить

admin-co_btn_remove_yes = 🗑 Да, удалить

admin-co_ask_name = Пришлите название сервера, как его увидят пользователи в мастере, например <i>Почта Acme</i>.

admin-co_ask_domains = Пришлите его почтовые домены через запятую, например <i>acme.com, acme.ru</i>. Тому, кто выберет «Другой» и введёт адрес в одном из них, будет предложен этот сервер.

admin-co_ask_imap = Пришлите IMAP-сервер в виде <code>хост:порт защита</code>, например <code>mail.acme.com:993 ssl</code> или <code>mail.acme.com:143 starttls</code>. Без порта: 993 (SSL/TLS) или 143 (STARTTLS).

admin-co_ask_smtp = Пришлите SMTP-сервер в виде <code>хост:порт защита</code>, например <code>mail.acme.com:465 ssl</code> или <code>mail.acme.com:587 starttls</code>. Без порта: 465 (SSL/TLS) или 587 (STARTTLS).

admin-co_current = Сейчас: <code>{ $value }</code>

admin-co_bad_name = Название — от 1 до 128 символов в одну строку. Пришлите ещё раз.

admin-co_bad_domains = Это не список почтовых доменов. Пришлите так: <i>acme.com, acme.ru</i> (не больше 20).

admin-co_bad_imap = Не получилось разобрать. Пришлите так: <code>mail.acme.com:993 ssl</code> (защита: ssl или starttls).

admin-co_bad_smtp = Не получилось разобрать. Пришлите так: <code>mail.acme.com:465 ssl</code> (защита: ssl или starttls).

admin-co_added = ✅ Сервер компании <b>{ $service }</b> добавлен и уже есть в мастере подключения; кнопка проверки покажет, отвечают ли его порты.

admin-co_saved = ✅ Сохранено. Ранее подключённые ящики сохраняют свои настройки, пока владельцы их не переподключат.

admin-co_testing = 🔌 Проверяю порты { $service } (пароль не отправляется)…

admin-co_test_title = 🔌 <b>Проверка подключения: { $service }</b> (без пароля)

admin-co_test_ok = ✅ { $protocol } { $server }: TLS в порядке ({ $tls }, сертификату можно доверять), сервер приветствует как { $greeting }.

admin-co_test_fail = ❌ { $protocol } { $server }:

admin-co_test_all_ok = Оба порта в порядке. Пользователи могут подключаться со своими логином и паролем.

admin-co_test_some_failed = Исправьте настройки, отмеченные ❌, и проверьте ещё раз.

admin-co_in_use = { $count ->
        [one] Этот сервер использует { $count } ящик, поэтому удалить его нельзя. Скройте его из мастера — ящик продолжит работать.
        [few] Этот сервер используют { $count } ящика, поэтому удалить его нельзя. Скройте его из мастера — ящики продолжат работать.
        [many] Этот сервер используют { $count } ящиков, поэтому удалить его нельзя. Скройте его из мастера — ящики продолжат работать.
       *[other] Этот сервер используют { $count } ящика, поэтому удалить его нельзя. Скройте его из мастера — ящики продолжат работать.
    }

admin-co_remove_confirm = Удалить сервер компании <b>{ $service }</b>? Он исчезнет из мастера подключения. Ни один ящик его не использует.

admin-co_removed = { $service } удалён.

admin-flags_title = 🚩 <b>Флаги функций</b>

admin-flag_line = <b>{ $name }</b>: { $state }

admin-flag_configured = Задан в конфигурации ({ $name }={ $state }); конфигурация важнее этого чата. Измените её и перезапустите бота.

admin-flag_stored_ignored = Значение, выбранное здесь ({ $state }), сохранено, но не действует, пока флаг задан в конфигурации.

admin-flag_from_chat = Задан здесь администратором.

admin-flag_default = Не задавался: действует значение по умолчанию.

admin-flag_btn_on = Включить { $name }

admin-flag_btn_off = Выключить { $name }

admin-status =
    📊 <b>Состояние</b>
    { $users ->
        [one] { $users } пользователь
        [few] { $users } пользователя
        [many] { $users } пользователей
       *[other] { $users } пользователя
    } ({ $active ->
        [one] { $active } активный
        [few] { $active } активных
        [many] { $active } активных
       *[other] { $active } активных
    }, { $blocked ->
        [one] { $blocked } заблокировал бота
        [few] { $blocked } заблокировали бота
        [many] { $blocked } заблокировали бота
       *[other] { $blocked } заблокировали бота
    })
    Ящики: 🟢 { $connected ->
        [one] { $connected } подключён
        [few] { $connected } подключены
        [many] { $connected } подключены
       *[other] { $connected } подключены
    } · 🟡 { $reconnecting ->
        [one] { $reconnecting } переподключается
        [few] { $reconnecting } переподключаются
        [many] { $reconnecting } переподключаются
       *[other] { $reconnecting } переподключаются
    } · 🔴 { $broken ->
        [one] { $broken } сломан
        [few] { $broken } сломаны
        [many] { $broken } сломаны
       *[other] { $broken } сломаны
    }

admin-status_per_service = <b>По сервисам</b> (🟢 / 🟡 / 🔴):

admin-status_service = • { $service }: { $connected } / { $reconnecting } / { $broken }

admin-status_errors = <b>Последние ошибки</b>:

admin-status_error = • { $email } ({ $service }, { $state } с { $since }): { $error }

admin-status_no_errors = Нет ящиков, которые переподключаются или сломаны.

admin-bc_ask_text = 📣 Пришлите текст оповещения (до { $limit ->
        [one] { $limit } символа
        [few] { $limit } символов
        [many] { $limit } символов
       *[other] { $limit } символа
    }; жирный, курсив и ссылки сохранятся). Затем вы выберете получателей и увидите предпросмотр — до этого ничего не отправится.

admin-bc_too_long = В оповещении { $length ->
        [one] { $length } символ
        [few] { $length } символа
        [many] { $length } символов
       *[other] { $length } символа
    }, а можно не больше { $limit }. Пришлите покороче.

admin-bc_pick_audience = Кому отправить оповещение? Число — сколько человек его получат (заблокировавшие бота пропускаются).

admin-bc_btn_audience = { $audience } · { $count }

admin-bc_audience_all = Всем

admin-bc_audience_service = Пользователям { $service }

admin-bc_btn_discard = ✖️ Отменить

admin-bc_preview_intro = 👇 Предпросмотр: пользователи получат именно это (каждый на своём языке):

admin-bc_notice =
    📣 <b>Сообщение администратора</b>

    { $text }

admin-bc_confirm =
    Отправить: <b>{ $audience }</b>?
    { $count ->
        [one] Оповещение получит { $count } пользователь
        [few] Оповещение получат { $count } пользователя
        [many] Оповещение получат { $count } пользователей
       *[other] Оповещение получат { $count } пользователя
    }; { $skipped ->
        [0] никто не заблокировал бота, пропускать некого.
        [one] ещё { $skipped } заблокировал бота и будет пропущен.
        [few] ещё { $skipped } заблокировали бота и будут пропущены.
        [many] ещё { $skipped } заблокировали бота и будут пропущены.
       *[other] ещё { $skipped } заблокировали бота и будут пропущены.
    }

admin-bc_nobody = Никто его не получит: выберите других получателей.

admin-bc_btn_send = 📣 Отправить { $count ->
        [one] { $count } пользователю
        [few] { $count } пользователям
        [many] { $count } пользователям
       *[other] { $count } пользователям
    }

admin-bc_btn_change_audience = 👥 Получатели

admin-bc_btn_change_text = ✏️ Текст

admin-bc_discarded = Оповещение отменено, ничего не отправлено.

admin-bc_started = Отправляю { $count ->
        [one] { $count } пользователю
        [few] { $count } пользователям
        [many] { $count } пользователям
       *[other] { $count } пользователям
    }…

admin-bc_already_sent = Это оповещение уже отправлено или отменено.

admin-bc_busy = Сейчас уже идёт рассылка оповещения. Дождитесь окончания или остановите её.

admin-bc_stopping = Останавливаю…

admin-bc_already_over = Это оповещение уже не рассылается.

admin-bc_btn_stop = ⏹ Остановить рассылку

admin-bc_progress =
    📣 <b>Рассылка оповещения</b>: { $audience }
    ✅ отправлено: { $sent }
    ❌ не доставлено: { $failed }
    🚫 заблокировали бота: { $blocked }
    ⏳ осталось: { $left } из { $total }
    ⚡ { $rate } сообщ./с

admin-bc_done =
    📣 <b>Оповещение разослано</b>: { $audience }, за { $elapsed }
    ✅ отправлено: { $sent }
    ❌ не доставлено: { $failed }
    🚫 заблокировали бота: { $blocked }

admin-bc_cancelled =
    📣 <b>Рассылка остановлена</b> ({ $audience })
    ✅ отправлено: { $sent }
    ❌ не доставлено: { $failed }
    🚫 заблокировали бота: { $blocked }
    ⏸ не отправлено: { $left }

admin-bc_uncertain = ⚠️ { $count ->
        [one] { $count } сообщение из неотправленных могло как дойти, так и не дойти (бот остановился или Telegram не ответил во время отправки); повторно оно не отправляется, чтобы никто не получил оповещение дважды.
        [few] { $count } сообщения из неотправленных могли как дойти, так и не дойти (бот остановился или Telegram не ответил во время отправки); повторно они не отправляются, чтобы никто не получил оповещение дважды.
        [many] { $count } сообщений из неотправленных могли как дойти, так и не дойти (бот остановился или Telegram не ответил во время отправки); повторно они не отправляются, чтобы никто не получил оповещение дважды.
       *[other] { $count } сообщения из неотправленных могли как дойти, так и не дойти (бот остановился или Telegram не ответил во время отправки); повторно они не отправляются, чтобы никто не получил оповещение дважды.
    }

company-wizard_offer = 🏢 Адреса этого домена обслуживает <b>{ $service }</b> — сервер, настроенный вашим администратором. Нажмите кнопку, чтобы взять его настройки, или продолжайте с «Другой».

company-wizard_btn = 🏢 Использовать { $service }
