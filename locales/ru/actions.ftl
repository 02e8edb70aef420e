# Действия с письмом: кнопки под уведомлением и открытым письмом, ответы на нажатие.

act-btn_read = ✅ Прочитано
act-btn_unread = ✉️ Непрочитано
act-btn_flag = ⭐ Отметить
act-btn_unflag = ⭐ Снять отметку
act-btn_archive = 📦 В архив
act-btn_trash = 🗑 Удалить
act-btn_junk = 🚫 Спам
act-btn_undo = ↩️ Отменить

act-state_archive = 📦 В архиве
act-state_trash = 🗑 В корзине
act-state_junk = 🚫 В спаме
act-state_gone = ⚠️ Больше не во «Входящих»

act-done_read = Отмечено как прочитанное.
act-done_unread = Отмечено как непрочитанное.
act-done_flag = Письмо отмечено.
act-done_unflag = Отметка снята.
act-done_archive = Перенесено в архив «{ $folder }». Отменить можно в течение { $seconds ->
        [one] { $seconds } секунды
        [few] { $seconds } секунд
        [many] { $seconds } секунд
       *[other] { $seconds } секунды
    }.
act-done_trash = Перенесено в «{ $folder }». Отменить можно в течение { $seconds ->
        [one] { $seconds } секунды
        [few] { $seconds } секунд
        [many] { $seconds } секунд
       *[other] { $seconds } секунды
    }.
act-done_junk = Помечено как спам и перенесено в «{ $folder }». Отменить можно в течение { $seconds ->
        [one] { $seconds } секунды
        [few] { $seconds } секунд
        [many] { $seconds } секунд
       *[other] { $seconds } секунды
    }.
act-done_undo = Письмо снова во «Входящих».

act-in_inbox = Письмо во «Входящих».
act-in_archive = Письмо перенесено в архив «{ $folder }».
act-in_trash = Письмо перенесено в «{ $folder }».
act-in_junk = Письмо перенесено в «{ $folder }» как спам.
act-in_gone = Письма больше нет во «Входящих»: его удалили или переложили в другую папку.
act-gone = Письма больше нет во «Входящих»: его удалили или переложили в другую папку.
act-too_late = Отменить уже нельзя: письмо остаётся в «{ $folder }».
act-nothing = Письмо во «Входящих»: отменять нечего.
act-no_folder = В вашем ящике нет папки для этого.
act-unknown = Эта кнопка больше не действует.
act-unreachable = Не удалось связаться с почтовым ящиком: { $reason } Попробуйте позже.
