# Ответы на письма из чата: ответить, ответить всем, переслать (handlers/compose.py).

compose-btn_reply = ↩️ Ответить

compose-btn_reply_all = ↩️ Ответить всем

compose-btn_forward = ➡️ Переслать

compose-btn_send = 📤 Отправить

compose-btn_edit_text = ✏️ Изменить текст

compose-btn_add_recipients = ➕ Добавить получателей

compose-btn_cancel = ✖️ Отмена

compose-ask_text = ✍️ Напишите ответ на «{ $subject }». Фото и документы, которые вы пришлёте сейчас, уйдут с письмом как вложения. Ничего не отправится, пока вы не нажмёте «Отправить».

compose-ask_new_text = ✍️ Пришлите новый текст письма.

compose-ask_recipients = 📮 Кому отправить письмо? Пришлите один или несколько адресов через запятую, например <code>name@example.com, Анна &lt;anna@example.org&gt;</code>.

compose-preview_title = 📝 <b>Ваше письмо</b> — ничего не отправится, пока вы не нажмёте «Отправить».

compose-preview_from = <b>От:</b> { $value }

compose-preview_to = <b>Кому:</b> { $value }

compose-preview_cc = <b>Копия:</b> { $value }

compose-preview_subject = <b>Тема:</b> { $value }

compose-preview_nobody = <i>пока никому: добавьте получателей</i>

compose-preview_no_text = <i>(текста пока нет)</i>

compose-preview_quote = <i>Письмо, на которое вы отвечаете, будет процитировано под вашим текстом.</i>

compose-preview_forward = <i>Исходное письмо пойдёт после вашего текста.</i>

compose-preview_attachments = 📎 <b>{ $count ->
        [one] { $count } вложение
        [few] { $count } вложения
        [many] { $count } вложений
       *[other] { $count } вложения
    }</b>

compose-preview_attachment = { $n }. { $name } — { $size }

compose-preview_forwarded_attachment = { $n }. { $name } — { $size } (из исходного письма)

compose-quote_intro = { $date }, { $sender } пишет:

compose-forward_title = ---------- Пересылаемое сообщение ----------

compose-forward_from = От: { $value }

compose-forward_date = Дата: { $value }

compose-forward_subject = Тема: { $value }

compose-forward_to = Кому: { $value }

compose-forward_cc = Копия: { $value }

compose-sending = ⏳ Отправляю…

compose-sent = ✅ Отправлено: { $to }. Копия лежит в папке «{ $folder }».

compose-sent_no_copy = ✅ Отправлено: { $to }. Почтовый сервер не сохранил копию в папку «Отправленные».

compose-cancelled = Черновик удалён, ничего не отправлено.

compose-expired = ⌛ Черновику «{ $subject }» больше суток, он удалён; ничего не отправлено. Чтобы начать заново, нажмите «Ответить» или «Переслать» под письмом.

compose-stale = Этот черновик уже закрыт.

compose-gone = Этого письма больше нет в вашем ящике.

compose-no_recipients = Сначала добавьте хотя бы одного получателя.

compose-bad_addresses = ⚠️ { $count ->
        [one] Это не адрес электронной почты
        [few] Это не адреса электронной почты
        [many] Это не адреса электронной почты
       *[other] Это не адреса электронной почты
    }: { $list }. Пришлите адреса ещё раз, например <code>name@example.com</code>.

compose-recipients_added = { $count ->
        [one] Добавлен { $count } получатель.
        [few] Добавлено { $count } получателя.
        [many] Добавлено { $count } получателей.
       *[other] Добавлено { $count } получателя.
    }

compose-unsupported = В письмо можно добавить только текст, фото и документы.

compose-too_many_files = В одно письмо можно взять из чата не больше { $count } файлов.

compose-file_too_big = ⚠️ «{ $name }» весит { $size }: боты могут получать из Telegram файлы только до { $limit }. Пришлите файл поменьше или ссылку на него.

compose-refused_rcpt = ⛔ Ничего не отправлено. Почтовый сервер не принял { $list }: { $reply }
    Я убрал { $count ->
        [one] этот адрес
        [few] эти адреса
        [many] эти адреса
       *[other] эти адреса
    } из письма: нажмите «Отправить», чтобы отправить остальным, или добавьте других получателей.

compose-refused = ⛔ Ничего не отправлено. Почтовый сервер отказался принять письмо: { $reply }

compose-too_large_server = ⛔ Ничего не отправлено: письмо с вложениями весит { $size }, а ваш почтовый сервер принимает не больше { $limit }. Отмените и ответьте заново с меньшим числом файлов или файлами поменьше.

compose-too_large_total = ⛔ Ничего не отправлено: вложения весят { $size }, а письмо из чата может нести не больше { $limit }.

compose-forward_too_big = ⛔ Ничего не отправлено: вложение «{ $name }» исходного письма весит { $size }, а письмо из чата может нести не больше { $limit }.

compose-broken = ⛔ Ничего не отправлено: ящик { $email } нужно сначала переподключить. Черновик сохранён.

compose-unreachable = ⛔ Ничего не отправлено: не удалось связаться с почтовым сервером ({ $reason }). Черновик сохранён: нажмите «Отправить» позже.

compose-start_unreachable = Не удалось связаться с ящиком, чтобы прочитать письмо: { $reason } Попробуйте позже.

compose-download_refused = ⚠️ Ничего не отправлено: Telegram не отдал боту «{ $name }». Боты могут получать файлы только до { $limit }; пришлите файл поменьше или ссылку и нажмите «Отправить» ещё раз.
