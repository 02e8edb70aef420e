# Messages of the oauth area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

oauth-btn_authorize = 🔐 Войти через { $service }

oauth-or_authorize = Или нажмите <b>Войти</b>, чтобы войти на сайте { $service }: бот получит доступ к ящику без вашего пароля.

oauth-open_link = Откройте ссылку ниже и войдите в <b>{ $service }</b> как <b>{ $email }</b>. Ссылка срабатывает один раз в течение { $minutes ->
        [one] { $minutes } минуты
        [few] { $minutes } минут
        [many] { $minutes } минут
       *[other] { $minutes } минуты
    }; потом возвращайтесь сюда.

oauth-btn_sign_in = 🔐 Войти в { $service }

oauth-device_prompt =
    Чтобы войти в <b>{ $service }</b> как <b>{ $email }</b>, откройте { $url } и введите код

    <code>{ $code }</code>

    Я жду здесь { $minutes ->
        [one] { $minutes } минуту
        [few] { $minutes } минуты
        [many] { $minutes } минут
       *[other] { $minutes } минуты
    }.

oauth-btn_open_device = 🔗 Открыть { $service }

oauth-signed_in = 🔐 Вход в { $service } выполнен.

oauth-not_offered = Вход через { $service } сейчас недоступен. Пришлите, пожалуйста, пароль.

oauth-chat_unknown_state = Эта ссылка для входа недействительна. Нажмите «Войти» ещё раз, чтобы получить новую.

oauth-chat_used_state = Эта ссылка для входа уже использована или заменена новой. Ничего не сохранено. Нажмите «Войти» ещё раз, если вход ещё нужен.

oauth-chat_expired_state = Вход занял больше { $minutes ->
        [one] { $minutes } минуты
        [few] { $minutes } минут
        [many] { $minutes } минут
       *[other] { $minutes } минуты
    }, ссылка истекла. Ничего не сохранено. Нажмите «Войти», чтобы попробовать снова.

oauth-chat_denied = Вы отказали в доступе на сайте { $service }. Ничего не сохранено. Нажмите «Войти», чтобы попробовать снова, или пришлите пароль.

oauth-chat_provider_error = { $service } сообщил об ошибке при входе ({ $detail }). Ничего не сохранено. Попробуйте ещё раз чуть позже.

oauth-chat_no_verifier = Вход не удалось проверить. Ничего не сохранено. Нажмите «Войти», чтобы начать заново.

oauth-chat_exchange_failed = { $service } не подтвердил вход ({ $detail }). Ничего не сохранено. Нажмите «Войти», чтобы начать заново.

oauth-chat_not_configured = Вход через { $service } тем временем отключили. Ничего не сохранено. Пришлите, пожалуйста, пароль.

oauth-chat_wizard_gone = Вы вошли в { $service }, но настройка ящика, к которой относился вход, отменена или ушла дальше. Ничего не сохранено.

oauth-chat_device_expired = Код для { $service } истёк до того, как вы вошли. Нажмите «Войти», чтобы получить новый.

oauth-chat_device_failed = Вход в { $service } не удался ({ $detail }). Попробуйте ещё раз.

oauth-reconnected = ✅ Вход в { $service } выполнен снова: ящик <b>{ $email }</b> подключён.

oauth-page_title = mailbridge — вход в почту

oauth-page_ok_title = Вход выполнен

oauth-page_ok = Вы вошли в { $service }. Вернитесь в Telegram, чтобы закончить настройку ящика.

oauth-page_problem_title = Вход не завершён

oauth-page_unknown_state = Эта ссылка для входа недействительна. Вернитесь в Telegram и нажмите «Войти», чтобы получить новую.

oauth-page_used_state = Эта ссылка для входа уже использована или заменена новой. Ничего не сохранено.

oauth-page_expired_state = Срок действия ссылки истёк. Ничего не сохранено. Вернитесь в Telegram и нажмите «Войти» ещё раз.

oauth-page_denied = Вы отказали в доступе. Ничего не сохранено.

oauth-page_provider_error = Почтовый сервис сообщил об ошибке. Ничего не сохранено. Попробуйте ещё раз из Telegram.

oauth-page_no_verifier = Вход не удалось проверить. Ничего не сохранено.

oauth-page_exchange_failed = Почтовый сервис не подтвердил вход. Ничего не сохранено.

oauth-page_not_configured = Вход через этот сервис сейчас недоступен. Ничего не сохранено.

oauth-page_wizard_gone = Настройка ящика, к которой относился этот вход, отменена. Ничего не сохранено.

oauth-page_back = Вернуться в Telegram

oauth-admin_flag_state = Вход через OAuth2 (enablePostmanOauth2): { $state }.

oauth-admin_flag_config_wins = Сохранено ({ $wanted }), но enablePostmanOauth2 задан в конфигурации и важнее: вход через OAuth2 остаётся в состоянии «{ $state }».

oauth-admin_flag_usage = Использование: /oauth_flag on|off

oauth-admin_client_usage =
    Использование: /oauth_client &lt;код_сервиса&gt; &lt;client_id&gt; &lt;client_secret или -&gt; [authorize_url token_url [device_url] [scopes...]]

    Коды сервисов: { $codes }

oauth-admin_client_unknown_service = Сервиса с кодом { $code } нет. Коды сервисов: { $codes }

oauth-admin_client_bad = Не сохранено: { $problem }. Адреса должны быть https; для корпоративных серверов и «Другого» нужны token URL и authorize или device URL.

oauth-admin_client_saved =
    OAuth2-клиент для <b>{ $service }</b> сохранён (client id <code>{ $client_id }</code>; секрет хранится зашифрованным, ваше сообщение удалено).
    Способ входа: { $flow }.

oauth-admin_client_redirect = Зарегистрируйте у провайдера этот redirect URI: <code>{ $uri }</code>

oauth-flow_code = по ссылке (authorization code с PKCE)

oauth-flow_device = по коду (device flow)

oauth-flow_none = пока нет (задайте PUBLIC_URL для входа по ссылке или укажите device URL)

oauth-chat_done_state = Вашу ссылку для входа в { $service } открыли ещё раз. Она уже была использована, поэтому ничего не изменилось: вход остаётся в силе.

oauth-chat_insecure_link = { $service } выдал страницу входа без защиты (не https), поэтому я не стану вас туда отправлять. Вход по коду для { $service } сейчас не работает: пришлите пароль или попросите администратора бота проверить настройки входа.

oauth-chat_not_offered = Вход через { $service } сейчас недоступен. Пришлите, пожалуйста, пароль.

oauth-page_done_state = Эта ссылка для входа уже была использована. Повторное открытие ничего не меняет; страницу можно закрыть.

oauth-admin_client_flag_off = Вход через OAuth2 (enablePostmanOauth2) выключен: пользователи увидят кнопку <b>Войти</b>, когда он будет включён (/oauth_flag on).

oauth-admin_client_flag_config_off = Вход через OAuth2 (enablePostmanOauth2) выключен в конфигурации: пользователи увидят кнопку <b>Войти</b>, когда конфигурация его включит.
