# Messages of the letters area. Keys in the code are dotted: t("a.b_c") reads `a-b_c`.

letter-from = <b>От:</b> { $sender }

letter-to = <b>Кому:</b> { $value }

letter-cc = <b>Копия:</b> { $value }

letter-date = <b>Дата:</b> { $value }

letter-subject = <b>Тема:</b> { $value }

letter-no_subject = (без темы)

letter-unknown_sender = (отправитель не указан)

letter-no_text = <i>В письме нет текста.</i>

letter-truncated = <i>… Письмо длиннее: остальной текст здесь не показан.</i>

letter-attachments = 📎 <b>{ $count ->
        [one] { $count } вложение
        [few] { $count } вложения
        [many] { $count } вложений
       *[other] { $count } вложения
    }</b>

letter-attachment = { $n }. { $name } — { $size }

letter-attachment_too_large = { $n }. { $name } — { $size } ⚠️ слишком большой, чтобы прислать сюда: боты в Telegram отправляют файлы до { $limit }

letter-attachments_more = … и ещё { $count ->
        [one] { $count } вложение
        [few] { $count } вложения
        [many] { $count } вложений
       *[other] { $count } вложения
    }

letter-size_b = { $value } Б

letter-size_kb = { $value } КБ

letter-size_mb = { $value } МБ

letter-size_gb = { $value } ГБ

letter-alert =
    📩 <b>Новое письмо</b>
    От: { $sender }
    Тема: { $subject }
