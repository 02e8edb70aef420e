# Messages of the live area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

btn-reconnect = 🔄 Переподключить

btn-delete_account = 🗑 Удалить аккаунт

btn-delete_yes = 🗑 Да, удалить

btn-delete_no = Нет, оставить

btn-open = 📖 Открыть

btn-newer = ⬅️ Новее

btn-older = Старее ➡️

btn-sent = 📤 Отправленные

btn-inbox = 📥 Входящие

btn-new_password = 🔑 Новый пароль

btn-change_login = Логин

btn-change_imap_host = Сервер IMAP

btn-change_imap_port = Порт IMAP

btn-change_smtp_host = Сервер SMTP

btn-change_smtp_port = Порт SMTP

btn-attachment = 📎 { $name } ({ $size })

alert-broken =
    🔴 <b>Соединение с { $email } разорвано</b>

    { $reason }

    Новые письма не будут приходить, пока вы не переподключитесь. Нажмите «Переподключить», проверьте пароль (или пароль приложения) и нажмите «Сохранить».

alert-outage = 🟡 Почтовый сервер { $email } не отвечает с { $since }. Я продолжаю попытки и сообщу, когда связь вернётся; письма не потеряются.

alert-recovered = 🟢 Соединение с { $email } восстановлено. Письма, пришедшие за это время, будут следом.

reconnect-title =
    🔄 <b>Переподключение { $email }</b>

    Состояние: { $state }
    Логин: { $login }
    IMAP: <code>{ $imap }</code>
    SMTP: <code>{ $smtp }</code>

    Нажмите «Сохранить», чтобы проверить соединение снова. Если пароль или другие настройки изменились, сначала измените их.

reconnect-last_error = Последняя ошибка: { $error }

reconnect-ask_password = Отправьте новый пароль для <b>{ $login }</b>. Я сразу удалю сообщение и проверю соединение.

reconnect-ask_login = Отправьте логин (сейчас: <code>{ $current }</code>).

reconnect-ask_imap_host = Отправьте имя сервера IMAP (сейчас: <code>{ $current }</code>).

reconnect-ask_imap_port = Отправьте порт IMAP, от 1 до 65535 (сейчас: <code>{ $current }</code>).

reconnect-ask_smtp_host = Отправьте имя сервера SMTP (сейчас: <code>{ $current }</code>).

reconnect-ask_smtp_port = Отправьте порт SMTP, от 1 до 65535 (сейчас: <code>{ $current }</code>).

reconnect-checking = ⏳ Проверяю IMAP и SMTP…

reconnect-done = 🟢 Соединение восстановлено. Письма, пришедшие за это время, будут следом.

delete-confirm =
    Удалить почтовый ящик <b>{ $email }</b> из бота?

    Все загруженные письма удалятся из бота (в самом ящике они останутся). У писем, связанных с элементами бизнес-процессов, там сохранится краткое описание. Потом можно подключить другой ящик.

delete-done = 🗑 Ящик { $email } отключён, его письма удалены из бота. Можно подключить другой.

inbox-title = 📥 <b>Входящие</b> { $email } — письма { $first }–{ $last } из { $total }

inbox-empty = 📥 Писем пока нет.

inbox-line = { $n }. { $clip }<b>{ $subject }</b> — { $who }, { $date }

inbox-no_subject = (без темы)

inbox-no_mailbox = Почтовый ящик не подключён. Сначала подключите его.

sent-title = 📤 <b>Отправленные</b> бизнес-процессами с { $email } — письма { $first }–{ $last } из { $total }

sent-empty = 📤 Через бота с этого адреса ещё ничего не отправляли. Здесь появятся письма, которые бизнес-процессы отправят от вашего имени.

sent-line = { $n }. { $clip }<b>{ $subject }</b> → { $who }, { $date }

read-loading = ⏳ Открываю письмо…

read-gone = Это письмо больше недоступно.

read-unreachable = Не удалось связаться с почтовым сервером, чтобы открыть письмо: { $reason } Попробуйте позже.

read-too_big = 📎 { $name } весит { $size }: больше { $limit }, которые Telegram позволяет отправить боту. Откройте его в почтовой программе.

read-sending_file = ⏳ Отправляю { $name }…

summary-since = с { $since }

summary-error = Последняя ошибка: { $error }

reconnect-oauth_unavailable = Вход через OAuth2 для этого сервиса больше недоступен. Обратитесь к администратору бота или удалите аккаунт и подключите его с паролем.

alert-broken_oauth =
    🔴 <b>Соединение с { $email } разорвано</b>

    { $reason }

    Новые письма не будут приходить, пока вы не войдёте снова. Нажмите «Переподключить», затем «Войти снова».

reconnect-title_oauth =
    🔄 <b>Переподключение { $email }</b>

    Состояние: { $state }
    Вход через: { $service }
    IMAP: <code>{ $imap }</code>
    SMTP: <code>{ $smtp }</code>

    Этот ящик подключён входом в { $service }, а не паролем. Нажмите «Войти снова», чтобы получить новую ссылку или код для входа.

btn-sign_in_again = 🔐 Войти снова
