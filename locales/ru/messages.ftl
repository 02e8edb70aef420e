# Messages of the messages area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

start-welcome =
    Здравствуйте, { $name }! Я приношу вашу почту в Telegram: оповещения о новых письмах за секунды и письма, которые можно читать прямо здесь.

    Подключите почтовый ящик, чтобы начать.

help-text =
    <b>mailbridge</b> подключает один почтовый ящик к этому чату.

    /start — главное меню
    /inbox — последние письма
    /sent — письма, отправленные от вашего имени
    /settings — почта, оповещения, язык
    /cancel — прервать текущее действие

    Сообщение с паролем сразу удаляется из чата, пароль хранится зашифрованным.

cmd-start = Главное меню

cmd-settings = Настройки почты и языка

cmd-cancel = Отменить текущий шаг

cmd-help = Что умеет бот

cmd-inbox = Последние письма

cmd-admin = Администрирование

btn-connect = 📬 Подключить почту

btn-mail_settings = 📬 Мой ящик

btn-settings = ⚙️ Настройки

btn-mail = 📬 Почта

btn-language = 🌐 Язык

btn-cancel = ✖️ Отмена

btn-back = ⬅️ Назад

btn-use_login = Использовать { $login }

btn-servers_ok = ✅ Всё верно

btn-edit_imap_host = Сервер IMAP

btn-edit_imap_port = Порт IMAP

btn-imap_security = Защита IMAP: { $sec }

btn-edit_smtp_host = Сервер SMTP

btn-edit_smtp_port = Порт SMTP

btn-smtp_security = Защита SMTP: { $sec }

btn-no_signature = Без подписи

btn-notify = 🔔 Оповещать

btn-dont_notify = 🔕 Не оповещать

btn-mobile_sound = 🔔 Со звуком

btn-mobile_silent = 🔕 Без звука

btn-allow = ✅ Разрешить

btn-deny = 🚫 Не разрешать

btn-save = 💾 Сохранить

btn-fix_password = 🔑 Ввести пароль заново

btn-fix_login = Изменить логин

btn-fix_email = Изменить e-mail

btn-fix_imap_host = Изменить сервер IMAP

btn-fix_imap_port = Изменить порт IMAP

btn-fix_smtp_host = Изменить сервер SMTP

btn-fix_smtp_port = Изменить порт SMTP

btn-fix_servers = Проверить все настройки серверов

btn-retry = 🔄 Проверить снова

btn-edit_signature = ✍️ Подпись

btn-toggle_notify = Оповещения о письмах: { $state }

btn-toggle_sound = Звук на телефоне: { $state }

btn-toggle_processes = Бизнес-процессы: { $state }

word-on = вкл.

word-off = выкл.

word-none = нет

security-ssl = SSL/TLS

security-starttls = STARTTLS

source-builtin = встроенному списку почтовых сервисов

source-autoconfig = серверу автонастройки домена

source-wellknown = файлу настроек на сайте домена

source-mx = почтовому серверу домена (MX)

source-probe = проверке типичных имён серверов

source-guess = догадке (автоматически ничего не нашлось)

source-manual = вашему вводу

connect-already = У вас уже подключён почтовый ящик. К аккаунту Telegram можно подключить только один: удалите его в /settings, чтобы подключить другой.

connect-pick_service = <b>Шаг 1.</b> В каком почтовом сервисе ваш ящик?

connect-ask_email =
    <b>{ $service }</b>

    <b>Шаг 2.</b> Отправьте адрес электронной почты.

connect-ask_login = <b>Шаг 3.</b> Логин для <b>{ $email }</b>. Обычно это сам адрес: нажмите кнопку или отправьте другой логин.

connect-discovering = 🔎 Ищу настройки серверов для этого адреса…

connect-review_servers =
    Настройки серверов найдены по { $source }:

    IMAP (входящая): <code>{ $imap }</code>
    SMTP (исходящая): <code>{ $smtp }</code>

    Проверьте их, прежде чем отправлять пароль. Чтобы изменить сервер, нажмите его кнопку или отправьте оба сразу: <code>imap.example.com:993 smtp.example.com:465</code>

connect-ask_imap_host = Отправьте имя сервера IMAP (сейчас: <code>{ $current }</code>).

connect-ask_imap_port = Отправьте порт IMAP, число от 1 до 65535 (сейчас: <code>{ $current }</code>). Обычно 993 для SSL/TLS или 143 для STARTTLS.

connect-ask_smtp_host = Отправьте имя сервера SMTP (сейчас: <code>{ $current }</code>).

connect-ask_smtp_port = Отправьте порт SMTP, число от 1 до 65535 (сейчас: <code>{ $current }</code>). Обычно 465 для SSL/TLS или 587 для STARTTLS.

connect-hint = 💡 { $hint }

connect-hint_imap =
    💡 { $hint }

    Сначала включите доступ для почтовых программ: { $path }

connect-ask_password =
    <b>Шаг 4.</b> Отправьте пароль для <b>{ $login }</b>.

    Я сразу удалю ваше сообщение и сохраню пароль в зашифрованном виде.

connect-checking = ⏳ Проверяю IMAP и SMTP…

connect-check_ok = ✅ Вход в IMAP и SMTP выполнен.

connect-ask_signature = <b>Шаг 5.</b> Отправьте подпись для исходящих писем (до { $limit ->
        [one] { $limit } символа
        [few] { $limit } символов
        [many] { $limit } символов
       *[other] { $limit } символа
    }) или нажмите «Без подписи».

connect-signature_saved =
    Подпись:
    { $signature }

connect-ask_alerts = <b>Шаг 6.</b> Оповещения о новых письмах: кто написал и о чём, с кнопкой, чтобы открыть письмо.

connect-ask_mobile = <b>Шаг 7.</b> Оповещения на телефоне: со звуком или без звука (в чат они всё равно придут, но без push-уведомления).

connect-ask_processes = <b>Шаг 8.</b> Разрешить бизнес-процессам компании отправлять письма с этого адреса от вашего имени?

connect-confirm =
    <b>Всё готово к сохранению</b>

    Адрес: { $email }
    Сервис: { $service }
    Подпись: { $signature }
    Оповещения о письмах: { $alerts }
    Звук на телефоне: { $sound }
    Бизнес-процессы: { $processes }

connect-importing = ⏳ Сохраняю и загружаю последние письма…

connect-done = ✅ <b>Почта подключена</b>

connect-in_progress = Вы подключаете почтовый ящик. Продолжите ниже или отправьте /cancel, чтобы прервать.

cancel-nothing = Отменять нечего.

cancel-done = Отменено. Ничего не сохранено.

fail-auth_failed = ❌ { $protocol }: сервер не принял логин или пароль.

fail-imap_disabled = ❌ { $protocol }: сервер отказал во входе. Либо пароль неверный, либо в настройках ящика выключен доступ почтовых программ (IMAP): проверьте и то и другое.

fail-app_password_required = ❌ { $protocol }: этому сервису нужен <b>пароль приложения</b>, а не обычный пароль.

fail-host_not_found = ❌ { $protocol }: сервер с таким именем не найден. Проверьте написание.

fail-connection_refused = ❌ { $protocol }: сервер отклонил подключение. Проверьте имя сервера и порт.

fail-tls_untrusted = ❌ { $protocol }: сертификату TLS сервера нельзя доверять (чужое имя, самоподписанный или просроченный). По таким соединениям я пароли не отправляю.

fail-tls_failed = ❌ { $protocol }: не удалось установить защищённое соединение. Проверьте тип защиты (SSL/TLS или STARTTLS) и порт.

fail-timeout = ❌ { $protocol }: сервер не ответил вовремя. Возможно, он недоступен или указан неверный порт.

fail-private_address = ❌ { $protocol }: имя сервера указывает на адрес в частной или локальной сети. Такие серверы из бота использовать нельзя.

fail-protocol = ❌ { $protocol }: сервер ответил что-то неожиданное. Точно ли это сервер и порт { $protocol }?

fail-server_said = Ответ сервера: <code>{ $detail }</code>

fail-what_next = Исправьте ошибку, и я проверю снова.

summary-address = Адрес: <b>{ $email }</b>

summary-service = Сервис: { $service }

summary-state = Состояние: { $state }

summary-signature = Подпись: { $signature }

summary-alerts = Оповещения о письмах: { $state }

summary-sound = Звук на телефоне: { $state }

summary-processes = Бизнес-процессы: { $state }

summary-imported = { $count ->
        [one] Загружено { $count } последнее письмо.
        [few] Загружены { $count } последних письма.
        [many] Загружено { $count } последних писем.
       *[other] Загружено { $count } последнего письма.
    }

state-draft = не завершено

state-connected = 🟢 подключено

state-reconnecting = 🟡 переподключение

state-broken = 🔴 соединение разорвано

settings-title = ⚙️ <b>Настройки</b>

settings-mail_title = 📬 <b>Почта</b>

settings-no_mailbox = Почтовый ящик ещё не подключён.

settings-pick_language = Выберите язык:

settings-language_set = Язык: русский

settings-ask_signature =
    Текущая подпись: { $current }

    Отправьте новую подпись (до { $limit ->
        [one] { $limit } символа
        [few] { $limit } символов
        [many] { $limit } символов
       *[other] { $limit } символа
    }).

settings-saved = Сохранено.

error-stale_button = Эта кнопка устарела. Используйте последнее сообщение.

error-service_unavailable = Этот сервис больше недоступен. Выберите другой.

error-bad_email = «{ $value }» — не адрес электронной почты. Отправьте адрес вида name@example.com.

error-bad_login = Логин должен содержать от 1 до 320 символов без пробелов. Отправьте его ещё раз.

error-bad_host = Это не имя сервера. Отправьте имя вида imap.example.com (до 253 символов, без пробелов и «://»).

error-bad_port = Порт — это целое число от 1 до 65535. Отправьте его ещё раз.

error-bad_password = Отправьте пароль одной строкой текста (до 1024 символов).

error-wizard_lost = Настройка была прервана. Начните заново с /start.

error-signature_too_long = В подписи { $length ->
        [one] { $length } символ
        [few] { $length } символа
        [many] { $length } символов
       *[other] { $length } символа
    }, а можно не больше { $limit }. Отправьте подпись короче.

error-use_buttons = Пожалуйста, выберите вариант кнопкой.

error-need_text = Пожалуйста, отправьте текст.

error-unknown_command = Я не знаю такой команды. Отправьте /start, чтобы открыть меню, или /help.

error-internal = Что-то пошло не так на моей стороне. Введённое вами не потеряно: попробуйте ещё раз.

error-not_your_mailbox = Этот почтовый ящик вам не принадлежит.

fail-oauth_refused = ❌ { $protocol }: сервер больше не принимает вход бота через ваш почтовый сервис (доступ отозван, истёк или изменился).

fail-what_next_oauth = Войдите снова: «Переподключить» → «Войти снова».

fail-server_tried = Сервер { $protocol }: <code>{ $server }</code>

connect-ask_server =
    Отправьте сервер { $protocol } в виде <code>адрес:порт</code> (сейчас: <code>{ $current }</code>). Обычно порт { $ssl_port } для SSL/TLS или { $tls_port } для STARTTLS.

    Можно и оба сервера сразу: <code>imap.example.com:993 smtp.example.com:465</code>

error-bad_server = Это не адрес сервера. Отправьте его в виде <code>адрес:порт</code>, например <code>imap.example.com:993</code>: имя без пробелов и «://», затем порт от 1 до 65535.

error-which_server = <code>{ $server }</code> — это сервер IMAP или SMTP? Нажмите кнопку нужного сервера или отправьте оба сразу: <code>imap.example.com:993 smtp.example.com:465</code>

error-private_host = <code>{ $host }</code> — адрес частной или локальной сети. Такие серверы в этом боте использовать нельзя: отправьте другой.

connect-unexpected_text_deleted =
    🔒 Я удалил ваше сообщение: это не адрес сервера, а прямо перед шагом с паролем это может быть сам пароль.

    Если серверы верны, нажмите «✅ Всё верно» и затем отправьте пароль. Чтобы изменить сервер, отправьте <code>адрес:порт</code> или оба сразу: <code>imap.example.com:993 smtp.example.com:465</code>

secret-unexpected_deleted = 🔒 Я удалил ваше сообщение: здесь я ждал нажатия кнопки, а текст на этом шаге может оказаться паролем. Пожалуйста, выберите вариант кнопкой.

secret-delete_yourself = ⚠️ Я не смог удалить ваше сообщение, а в нём может быть пароль. Пожалуйста, удалите его сами: нажмите на него и удерживайте, затем «Удалить».
