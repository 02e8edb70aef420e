"""Writes the one-time-code corpus: realistic letters (.eml) and manifest.json with the
expected answer of each (the code, or null for a look-alike). Run it again after editing
the list: `python tests/corpus/codes/generate.py`. The letters are written as real mail
clients send them: plain text or HTML (quoted-printable or base64), UTF-8 or a legacy
Cyrillic charset, encoded subjects."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).parent

# (file name, sender, subject, body, expected code or None, "plain" | "html", charset)
L = tuple[str, str, str, str, str | None, str, str]

LETTERS: list[L] = [
    # ---------------------------------------------------------------- codes, English
    ("en_github_device", "GitHub <noreply@github.com>", "[GitHub] Please verify your device",
     "Hey octocat!\n\nA sign in attempt requires further verification because we did not recognize your device. "
     "To complete the sign in, enter the verification code on the unrecognized device.\n\n"
     "Device: Firefox on Linux\nVerification code: 482913\n\nIf you did not attempt to sign in to your account, "
     "your password may be compromised.\n\nThanks,\nThe GitHub Team", "482913", "plain", "utf-8"),
    ("en_instagram_subject", "Instagram <security@mail.instagram.com>", "739104 is your Instagram code",
     "Hi anna.k,\n\nSomeone tried to log in to your Instagram account. If this was you, please use the following code "
     "to confirm your identity:\n\n739104\n\nIf this wasn't you, please reset your password to secure your account.",
     "739104", "plain", "utf-8"),
    ("en_slack_html", "Slack <no-reply@slack.com>", "Slack confirmation code: K7Q-2PZ",
     "<html><body><h1>Confirm your email address</h1><p>Your confirmation code is below — enter it in your open "
     "browser window and we'll help you get signed in.</p><div style='font-size:30px'>K7Q-2PZ</div>"
     "<p>If you didn't request this email, there's nothing to worry about — you can safely ignore it.</p>"
     "<p>Slack Technologies, 500 Howard Street, San Francisco, CA 94105</p></body></html>",
     "K7Q-2PZ", "html", "utf-8"),
    ("en_microsoft", "Microsoft account team <account-security-noreply@accountprotection.microsoft.com>",
     "Microsoft account security code",
     "Microsoft account\n\nSecurity code\n\nPlease use the following security code for the Microsoft account "
     "an***@example.com.\n\nSecurity code: 5021\n\nIf you don't recognize the Microsoft account an***@example.com, "
     "you can click here to remove your email address from that account.\n\nThanks,\nThe Microsoft account team",
     "5021", "plain", "utf-8"),
    ("en_google_html", "Google <no-reply@accounts.google.com>", "Email verification code: 318406",
     "<div><img src='logo.png' alt='Google'></div><table><tr><td><p>Google uses this code to verify your identity."
     "</p><p>Use this code to finish setting up your recovery email:</p><p style='font-size:36px'>318406</p>"
     "<p>This code will expire in 24 hours.</p><p>If you don't recognize <b>user@example.com</b>, you can safely "
     "ignore this email.</p></td></tr></table>", "318406", "html", "utf-8"),
    ("en_amazon_otp", "Amazon <account-update@amazon.com>", "Amazon password assistance",
     "To authenticate, please use the following One Time Password (OTP):\n\n904417\n\nDon't share this OTP with "
     "anyone. Our customer service team will never ask you for your password, OTP, credit card, or banking info.\n\n"
     "We hope to see you again soon.", "904417", "plain", "utf-8"),
    ("en_discord", "Discord <noreply@discord.com>", "Your Discord login code",
     "Hey there,\n\nYour one-time login code is 286 513. It expires in 10 minutes.\n\nIf you didn't try to log in, "
     "change your password.\n\nDiscord, 444 De Haro Street #200, San Francisco, CA 94107", "286513", "plain", "utf-8"),
    ("en_steam", "Steam Support <noreply@steampowered.com>", "Your Steam account: Access from new web or mobile device",
     "Dear gamer42,\n\nHere is the Steam Guard code you need to login to account gamer42:\n\nF4G7K\n\n"
     "This email was generated because of a login attempt from a web or mobile device located at Berlin, DE.\n"
     "The login attempt included your correct account name and password.", "F4G7K", "plain", "utf-8"),
    ("en_paypal_subject", "PayPal <service@paypal.com>", "Your PayPal security code is 551204",
     "Hello,\n\nWe just need to confirm it's you. Enter the code below on the PayPal page.\n\n551204\n\n"
     "The code expires in 10 minutes. Don't share it with anyone.\n\nPayPal", "551204", "plain", "utf-8"),
    ("en_notion_html", "Notion Team <notify@mail.notion.so>", "Your temporary Notion login code is hulk-fast-apple",
     "<p>Copy and paste this temporary login code:</p><pre>hulk-fast-apple-62</pre>"
     "<p>If you didn't try to login, you can safely ignore this email.</p>", "hulk-fast-apple-62", "html", "utf-8"),
    ("en_zoom", "Zoom <no-reply@zoom.us>", "Zoom verification code",
     "Hi Alex,\n\nPlease enter this verification code to sign in: 7380 1942\n\nThe code will expire in 10 minutes.\n\n"
     "Thank you,\nThe Zoom Team\n\nCopyright 2026 Zoom Video Communications, Inc. All rights reserved.",
     "73801942", "plain", "utf-8"),
    ("en_bank_3ds", "Acme Bank <alerts@acmebank.com>", "Payment confirmation",
     "Your one-time passcode for the purchase at EXAMPLE STORE of USD 49.99 with card ending 4417 is 640218. "
     "Never share this passcode.", "640218", "plain", "utf-8"),
    ("en_twitter", "X <verify@x.com>", "Confirm your email address",
     "Confirm your email address\n\nThere's one quick step you need to complete before creating your X account. "
     "Let's make sure this is the right email address for you — please confirm this is the right address to use "
     "for your new account.\n\nPlease enter this verification code to get started on X:\n\n805631\n\n"
     "Verification codes expire after two hours.\n\nThanks,\nX", "805631", "plain", "utf-8"),
    ("en_apple_html", "Apple <noreply@email.apple.com>", "Verify your email address",
     "<html><head><style>p{font-family:Helvetica}</style></head><body><p>Dear Anna Smith,</p><p>To verify your "
     "email address, enter this code in your browser.</p><p><b>427 915</b></p><p>If you didn't ask to verify this "
     "address, you can ignore this email.</p><p>Apple ID Support</p><p>Apple Inc., One Apple Park Way, Cupertino, "
     "CA 95014</p></body></html>", "427915", "html", "utf-8"),
    ("en_dropbox", "Dropbox <no-reply@dropbox.com>", "Your Dropbox security code",
     "Hi Maria,\n\nYour security code is: 093125\n\nEnter this code to finish signing in. The code expires in "
     "10 minutes.\n\nHappy Dropboxing!\n- The Dropbox Team", "093125", "plain", "utf-8"),
    ("en_binance", "Binance <do-not-reply@binance.com>", "[Binance] Login Verification",
     "Login Verification\n\nYour verification code:\n\n193840\n\nThe verification code will be valid for 30 minutes. "
     "Please do not share this code with anyone.\n\nDon't recognize this activity? Please reset your password "
     "and contact customer support immediately.", "193840", "plain", "utf-8"),
    ("en_linkedin", "LinkedIn <security-noreply@linkedin.com>", "Here's your verification code 624 019",
     "Hi John,\n\nHere's the verification code you requested.\n\nThis code will expire in 15 minutes. "
     "Never share this code with anyone.", "624019", "plain", "utf-8"),
    ("en_shopify_login", "Shopify <mailer@shopify.com>", "Your login code",
     "Your login code for mystore.myshopify.com: 3391\n\nUse it to sign in to your store. If you didn't request it, "
     "please ignore this message.", "3391", "plain", "utf-8"),
    # ---------------------------------------------------------------- codes, Russian
    ("ru_yandex", "Яндекс ID <noreply@id.yandex.ru>", "Код подтверждения",
     "Здравствуйте!\n\nВы запросили код для входа в Яндекс ID.\n\nКод подтверждения: 529174\n\n"
     "Никому не сообщайте этот код. Если вы не запрашивали код, просто проигнорируйте это письмо.\n\n"
     "С уважением,\nкоманда Яндекс ID", "529174", "plain", "utf-8"),
    ("ru_gosuslugi", "Госуслуги <no-reply@gosuslugi.ru>", "Код подтверждения адреса электронной почты",
     "Здравствуйте, Иван Петрович!\n\nДля подтверждения адреса электронной почты введите код 4817 на странице "
     "подтверждения.\n\nКод действует 3 дня.\n\nЕсли вы не регистрировались на портале, не обращайте внимания "
     "на это письмо.", "4817", "plain", "utf-8"),
    ("ru_mailru_html", "Mail <security@corp.mail.ru>", "Код для входа в аккаунт",
     "<html><body><table><tr><td><h2>Вход в аккаунт</h2><p>Кто-то пытается войти в ваш аккаунт "
     "ivanov@mail.ru.</p><p>Ваш код для входа:</p><p style='font-size:28px;letter-spacing:4px'>638 201</p>"
     "<p>Если это были не вы, смените пароль.</p></td></tr></table></body></html>", "638201", "html", "utf-8"),
    ("ru_vk", "ВКонтакте <admin@notify.vk.com>", "Код подтверждения ВКонтакте",
     "Ваш код подтверждения: 71523. Не сообщайте его никому, даже сотрудникам ВКонтакте.", "71523", "plain",
     "utf-8"),
    ("ru_sber_koi8", "СберБанк <noreply@sberbank.ru>", "Одноразовый пароль",
     "Одноразовый пароль для входа в СберБанк Онлайн: 20934\nНикому не сообщайте пароль. "
     "Если вы не входили в СберБанк Онлайн, позвоните по номеру 900.", "20934", "plain", "koi8-r"),
    ("ru_tinkoff_subject", "Т-Банк <noreply@tbank.ru>", "483920 — ваш код для входа",
     "Никому не сообщайте этот код, даже сотрудникам банка. Код действует 5 минут.", "483920", "plain", "utf-8"),
    ("ru_ozon_login", "OZON <noreply@sender.ozon.ru>", "Код для входа на OZON",
     "Ваш код для входа: 8815\n\nВведите его на сайте или в приложении OZON. Если вы не пытались войти — "
     "проигнорируйте это письмо.", "8815", "plain", "utf-8"),
    ("ru_hh_html", "hh.ru <noreply@hh.ru>", "Код для входа на hh.ru",
     "<div style='font-family:Arial'><p>Здравствуйте!</p><p>Введите этот код, чтобы войти на hh.ru:</p>"
     "<p><strong>9204</strong></p><p>Код действует 30 минут. Если вы не запрашивали код — просто "
     "проигнорируйте письмо.</p></div>", "9204", "html", "utf-8"),
    ("ru_avito_cp1251", "Авито <noreply@avito.ru>", "Подтверждение входа",
     "Здравствуйте!\n\nКто-то пытается войти в ваш профиль на Авито. Проверочный код: 304 118\n\n"
     "Если это не вы, срочно смените пароль.", "304118", "plain", "windows-1251"),
    ("ru_gosuslugi_html_password", "Госуслуги <no-reply@gosuslugi.ru>", "Восстановление доступа",
     "<p>Вы запросили восстановление доступа к учётной записи.</p><p>Пароль для входа: <b>Kd83mQz1</b></p>"
     "<p>После входа смените пароль в настройках профиля.</p>", "Kd83mQz1", "html", "utf-8"),
    ("ru_kaspersky", "Kaspersky <noreply@kaspersky.com>", "Код безопасности для My Kaspersky",
     "Здравствуйте!\n\nКод безопасности для входа в My Kaspersky: 562817\n\nКод действителен в течение 15 минут.",
     "562817", "plain", "utf-8"),
    ("ru_wb", "Wildberries <noreply@wildberries.ru>", "Вход в личный кабинет",
     "Код: 1947 — ваш код для входа в личный кабинет Wildberries. Никому его не сообщайте.", "1947", "plain",
     "utf-8"),
    ("ru_steam_ru", "Steam <noreply@steampowered.com>", "Ваш аккаунт Steam: вход с нового устройства",
     "Здравствуйте, gamer42!\n\nКод Steam Guard, необходимый для входа в аккаунт gamer42:\n\nF4G7K\n\n"
     "Это письмо было создано автоматически.", "F4G7K", "plain", "utf-8"),
    ("ru_sms_in_mail", "МТС <noreply@mts.ru>", "Код из SMS",
     "Код из смс: 7731. Введите его на сайте mts.ru для подтверждения номера.", "7731", "plain", "utf-8"),
    ("ru_bank_3ds_html", "Альфа-Банк <info@alfabank.ru>", "Подтверждение операции",
     "<table><tr><td>Покупка на сумму 2 499,00 ₽ в магазине SHOP.RU по карте *4417.</td></tr>"
     "<tr><td>Код подтверждения операции: <b>820316</b></td></tr><tr><td>Никому не сообщайте код.</td></tr>"
     "</table>", "820316", "html", "utf-8"),
    ("ru_one_time_code_before", "Госуслуги <no-reply@gosuslugi.ru>", "Вход на портал",
     "390571 — код подтверждения входа на портал Госуслуг. Никому не сообщайте код.", "390571", "plain",
     "utf-8"),
    ("ru_yandex_alnum", "Яндекс 360 <noreply@360.yandex.ru>", "Код подтверждения почты",
     "Чтобы подтвердить адрес, введите проверочный код: ZK4P7Q", "ZK4P7Q", "plain", "utf-8"),
    ("ru_litres_pass", "ЛитРес <noreply@litres.ru>", "Ваш одноразовый пароль",
     "Одноразовый пароль для входа на ЛитРес: 66291. Он действует 10 минут.", "66291", "plain", "utf-8"),
    # ---------------------------------------------------------------- look-alikes, English
    ("en_order_confirmation", "Amazon.com <auto-confirm@amazon.com>", "Your Amazon.com order #112-4827391-2284210",
     "Hello Anna,\n\nThank you for shopping with us. We'll send a confirmation when your item ships.\n\n"
     "Order #112-4827391-2284210\nArriving: Thursday, March 12\nOrder Total: $84.99\n\nWe hope to see you again soon.",
     None, "plain", "utf-8"),
    ("en_tracking", "UPS <mcinfo@ups.com>", "UPS Update: Package Scheduled for Delivery Today",
     "Your package is on the way.\n\nTracking Number: 1Z999AA10123456784\nScheduled Delivery: Today, 10:30 AM - "
     "2:30 PM\nShip To: BERLIN, DE 10115\n\nTrack your package with UPS My Choice.", None, "plain", "utf-8"),
    ("en_promo", "Nike <nike@official.nike.com>", "20% off ends tonight",
     "Use code SPRING24 at checkout to get 20% off your next order. Offer ends 03/31/2026 at 11:59 PM PT. "
     "Promo code cannot be combined with other offers.", None, "plain", "utf-8"),
    ("en_invoice", "Stripe <invoice+statements@stripe.com>", "Your receipt from Acme Inc. #2041-7713",
     "Receipt from Acme Inc.\n\nAmount paid: $1,299.00\nDate paid: March 2, 2026\nInvoice number 204177\n"
     "Payment method: Visa - 4242\n\nIf you have any questions, contact us at support@acme.example or call "
     "+1 415 555 0123.", None, "plain", "utf-8"),
    ("en_flight_booking", "Lufthansa <online@booking-lufthansa.com>", "Your booking confirmation - Booking code ABC1D2",
     "Thank you for booking with Lufthansa.\n\nBooking code: ABC1D2\nFlight LH 2035 Munich - Berlin\n"
     "Departure 14.04.2026 07:15\n\nPlease check in online 23 hours before departure.", None, "plain", "utf-8"),
    ("en_newsletter_year", "The Verge <newsletter@theverge.com>", "The best laptops of 2026",
     "Our reviewers tested 48 laptops in 2026. The code names of next year's chips leaked too: see our report. "
     "Prices start at 999 dollars.", None, "plain", "utf-8"),
    ("en_zip_code", "USPS <auto-reply@usps.com>", "Address change confirmation",
     "Your change of address request was received.\n\nNew address: 1600 Amphitheatre Pkwy, Mountain View, CA\n"
     "ZIP code: 94043\nConfirmation number: 48193\n\nThank you for using USPS.", None, "plain", "utf-8"),
    ("en_phone", "Support <help@shop.example>", "We tried to reach you",
     "We tried to call you about your request. Please call us back at +1 (800) 555-0199 or 1-800-555-0100. "
     "Our office hours are 9:00-17:00.", None, "plain", "utf-8"),
    ("en_github_pr", "GitHub <notifications@github.com>", "Re: [acme/api] Fix login code path (#4821)",
     "@octocat commented on this pull request.\n\nIn src/auth/login.py line 2041: the code path for 2FA still "
     "returns 401 for valid tokens.\n\nReply to this email directly or view it on GitHub.", None, "plain", "utf-8"),
    ("en_error_code", "AWS Notifications <no-reply@sns.amazonaws.com>", "ALARM: \"api-5xx\" in EU (Frankfurt)",
     "You are receiving this email because your Amazon CloudWatch Alarm \"api-5xx\" has entered the ALARM state.\n"
     "Error code 5031 was returned 1204 times in the last 5 minutes.\nThreshold: 1000", None, "plain", "utf-8"),
    ("en_gift_card", "Steam <noreply@steampowered.com>", "You've received a gift card",
     "Your friend sent you a Steam gift card worth $20.00.\n\nGift code: 7HX4K-2LQ9P-88ZRT\n\nRedeem it in your "
     "Steam wallet.", None, "plain", "utf-8"),
    ("en_bill", "Vodafone <billing@vodafone.example>", "Your bill is ready",
     "Your bill for February is ready. Account number: 77120934\nAmount due: EUR 34.50\nDue date: 15.03.2026",
     None, "plain", "utf-8"),
    ("en_backup_codes", "GitHub <noreply@github.com>", "Your two-factor recovery codes",
     "Here are your new recovery codes. Keep them somewhere safe:\n\n4f82c-1d93a\n77ab0-e1c25\n90d1f-3b8a7\n\n"
     "Each code can be used once.", None, "plain", "utf-8"),
    ("en_html_marketing", "Booking.com <email@booking.com>", "Genius deals for your next trip",
     "<html><body><h1>Save 15% or more</h1><p>Use code SUMMER2026 at checkout.</p><p>Valid for stays between "
     "01.06.2026 and 31.08.2026. Prices from 79 EUR per night.</p><p>Booking.com B.V., Herengracht 597, "
     "1017 CE Amsterdam</p></body></html>", None, "html", "utf-8"),
    ("en_meeting", "Google Calendar <calendar-notification@google.com>", "Invitation: Weekly sync @ Tue 10:00",
     "Join with Google Meet: meet.google.com/abc-defg-hij\nJoin by phone: +1 262-555-0188 PIN: 483 920 112#\n"
     "Meeting ID 8421 6620", None, "plain", "utf-8"),
    ("en_delivery_pickup", "DHL <noreply@dhl.com>", "Your parcel is ready for pickup",
     "Your parcel 00340434161234567890 is waiting at Packstation 143.\nPickup code: 6620\nIt will be kept for "
     "7 days.", None, "plain", "utf-8"),
    ("en_course_code", "Coursera <no-reply@coursera.org>", "New lecture: Writing clean code",
     "Week 3 is live: writing clean code in Python. The course code CS1010 covers 12 lectures and 4 quizzes.",
     None, "plain", "utf-8"),
    ("en_password_changed", "Google <no-reply@accounts.google.com>", "Security alert",
     "Your password was changed on March 2, 2026 at 14:32 (UTC). If you didn't change it, you should check "
     "what happened. Device: Pixel 8.", None, "plain", "utf-8"),
    # ---------------------------------------------------------------- look-alikes, Russian
    ("ru_order_confirmed", "OZON <noreply@sender.ozon.ru>", "Подтверждение заказа № 48213957-0021",
     "Здравствуйте!\n\nВаш заказ № 48213957-0021 подтверждён и будет доставлен 14.03.2026.\nСумма заказа: "
     "3 490 ₽\nСпособ оплаты: карта *4417", None, "plain", "utf-8"),
    ("ru_promo", "Лэтуаль <info@letu.ru>", "Скидка 30% только сегодня",
     "Дарим скидку 30% на всё! Промокод LETU30 действует до 31.03.2026. Введите промокод в корзине.", None,
     "plain", "utf-8"),
    ("ru_pickup_code", "Wildberries <noreply@wildberries.ru>", "Заказ ждёт вас в пункте выдачи",
     "Ваш заказ прибыл в пункт выдачи по адресу ул. Ленина, 15.\nКод для получения: 4821\nСрок хранения — 7 дней.",
     None, "plain", "utf-8"),
    ("ru_tracking", "Почта России <noreply@pochta.ru>", "Отправление RA644000001RU прибыло в отделение",
     "Ваше отправление с трек-номером RA644000001RU прибыло в отделение 101000.\nКод отслеживания: RA644000001RU\n"
     "Получите его до 20.03.2026.", None, "plain", "utf-8"),
    ("ru_invoice", "Бухгалтерия <buh@firm.example>", "Счёт на оплату № 2041 от 02.03.2026",
     "Добрый день!\n\nВо вложении счёт № 2041 на сумму 18 500,00 руб. Просим оплатить до 10.03.2026.\n"
     "ИНН 7701234567, КПП 770101001.\n\nС уважением, бухгалтерия.", None, "plain", "utf-8"),
    ("ru_phone", "Служба поддержки <support@shop.example>", "Мы не смогли до вас дозвониться",
     "Перезвоните нам по телефону 8 800 555-35-35 или +7 (495) 123-45-67 в рабочее время с 9:00 до 21:00.",
     None, "plain", "utf-8"),
    ("ru_news_year", "Коммерсантъ <news@kommersant.ru>", "Главное за день",
     "Госдума приняла закон о кодексе поведения в сети. Новые правила вступят в силу в 2027 году. "
     "Курс доллара — 92,4 руб.", None, "plain", "utf-8"),
    ("ru_bank_statement", "Т-Банк <noreply@tbank.ru>", "Выписка по счёту",
     "Выписка по счёту 40817810099910004312 за февраль 2026.\nВходящий остаток: 12 450,00 ₽\nПоступления: "
     "85 000,00 ₽\nСписания: 63 212,40 ₽", None, "plain", "utf-8"),
    ("ru_region_code", "Госуслуги <no-reply@gosuslugi.ru>", "Заявление принято",
     "Ваше заявление № 3312847 принято. Код подразделения: 770-001. Срок рассмотрения — 5 рабочих дней.",
     None, "plain", "utf-8"),
    ("ru_html_sale", "М.Видео <info@mvideo.ru>", "Выгодно: смартфоны со скидкой",
     "<html><body><h2>Скидки до 40%</h2><p>iPhone 15 — от 69 990 ₽</p><p>Код акции: MV2026 — дополнительная "
     "скидка 5%</p><p>Предложение действует до 15.03.2026.</p></body></html>", None, "html", "utf-8"),
    ("ru_taxi_receipt", "Яндекс Go <taxi@yandex.ru>", "Отчёт о поездке 2 марта",
     "Поездка 2 марта, 18:42\nОт: ул. Тверская, 7\nДо: Ленинградский пр-т, 39\nСтоимость: 612 ₽\n"
     "Номер заказа: 7712094", None, "plain", "utf-8"),
    ("ru_password_changed", "Яндекс ID <noreply@id.yandex.ru>", "Пароль изменён",
     "Пароль от вашего аккаунта был изменён 02.03.2026 в 14:32. Если это были не вы, восстановите доступ по "
     "ссылке. Обращение № 552811.", None, "plain", "utf-8"),
    ("ru_meeting", "Контур.Толк <noreply@kontur.ru>", "Встреча в 15:00",
     "Подключиться к встрече: https://ktalk.ru/room/8812\nИдентификатор встречи: 881 204 773\nПароль встречи не "
     "нужен.", None, "plain", "utf-8"),
    ("ru_gift_certificate", "Золотое яблоко <info@goldapple.ru>", "Ваш подарочный сертификат",
     "Поздравляем! Код сертификата: GA-7731-KQ. Номинал — 3000 ₽. Действует до 31.12.2026.", None, "plain",
     "utf-8"),
    ("ru_delivery_code", "СДЭК <noreply@cdek.ru>", "Посылка доставлена в пункт выдачи",
     "Посылка № 1523478890 ожидает вас в ПВЗ. Код получения: 5512. Срок хранения до 12.03.2026.", None, "plain",
     "utf-8"),
    ("ru_forum_digest", "Хабр <noreply@habr.com>", "Дайджест: лучший код недели",
     "В этом выпуске: как мы переписали код авторизации на Rust и ускорили вход в 4 раза; 2048 строк вместо "
     "12000.", None, "plain", "utf-8"),
    ("ru_barcode", "Лента <info@lenta.com>", "Ваша карта Лента",
     "Номер вашей карты: 7777 0012 3456 7890. Штрих-код карты: 4601234567890. Баллы: 1240.", None, "plain",
     "utf-8"),
    # ---------------------------------------------------------------- more, written after the detector
    ("en_uber", "Uber <uber@uber.com>", "Your Uber account",
     "Your Uber code: 4821. Never share this code. Reply STOP ALL to unsubscribe.", "4821", "plain", "utf-8"),
    ("en_facebook_subject", "Facebook <security@facebookmail.com>", "FB-48213 is your Facebook confirmation code",
     "Hi Anna,\n\nWe received a request to confirm this email address for your Facebook account.", "FB-48213",
     "plain", "utf-8"),
    ("ru_register_code", "Самокат <noreply@samokat.ru>", "Регистрация",
     "Код: 7294\nВведите его для подтверждения регистрации в приложении.", "7294", "plain", "utf-8"),
    ("en_verify_link", "Medium <noreply@medium.com>", "Verify your email",
     "Verify your email by opening https://medium.com/m/verify?token=551209&uid=8812 — the link works for "
     "24 hours.", None, "plain", "utf-8"),
    ("en_welcome_discount", "ASOS <hello@asos.com>", "Welcome! Here is your code",
     "Use the code below to get 10% off your first order: WELCOME10. Valid until 30.04.2026.", None, "plain",
     "utf-8"),
    ("ru_client_code", "Мосэнергосбыт <info@mosenergosbyt.ru>", "Квитанция за февраль",
     "Ваш код плательщика: 55123-041. Сумма к оплате: 2 311,54 руб. Оплатить до 25.03.2026.", None, "plain",
     "utf-8"),
    ("en_invitation_code", "Arc <hello@arc.net>", "You're invited to the beta",
     "Your invitation code for the beta: 7KQ2M9. Share it with one friend.", None, "plain", "utf-8"),
    ("ru_pin_card", "Сбербанк <noreply@sberbank.ru>", "Карта готова",
     "Ваша карта № 4276 **** 1234 готова. PIN-код придёт в SMS на номер +7 916 ***-**-12.", None, "plain",
     "utf-8"),
    ("en_code_review", "GitLab <gitlab@mg.gitlab.com>", "Code review requested: !4821",
     "Anna requested your code review on merge request !4821 (12 files, 340 lines).", None, "plain", "utf-8"),
    ("ru_error_code", "1С-Битрикс <noreply@bitrix24.ru>", "Ошибка синхронизации",
     "Синхронизация не выполнена. Код ошибки: 80070005. Повторите попытку через 15 минут.", None, "plain",
     "utf-8"),
    # ---------------------------------------------------------------- found by probing the detector
    ("en_airline_pnr", "Aeroflot <noreply@aeroflot.ru>", "Your booking is confirmed",
     "Thank you for choosing Aeroflot. Your flight confirmation code is K7Q2PZ. Check in online 24 hours before "
     "departure. Flight SU 1234 Moscow - Sochi, 14.04.2026 07:15.", None, "plain", "utf-8"),
    ("en_code_then_total", "Shop <noreply@shop.example>", "Confirm your purchase",
     "Your verification code is below.\n\n550917\n\nOrder total: 1234 RUB. Items: 3.", "550917", "plain",
     "utf-8"),
    ("ru_hotel_code", "Островок <noreply@ostrovok.ru>", "Бронирование подтверждено",
     "Ваше бронирование в отеле «Космос» подтверждено. Код бронирования: 4821937. Заезд 12.05.2026 с 14:00.",
     None, "plain", "utf-8"),
]


def build(name: str, sender: str, subject: str, body: str, kind: str, charset: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "anna@example.org"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 3, 2, 9, 0, n % 60, tzinfo=UTC))
    msg["Message-ID"] = f"<{name}.{n}@corpus.example>"
    if kind == "html":
        if n % 3 == 0:  # multipart/alternative: the text version a mail program makes of the HTML
            msg.set_content(html.unescape(re.sub(r"<[^>]+>", " ", body)), charset="utf-8")
            msg.add_alternative(body, subtype="html", charset=charset)
        else:
            msg.set_content(body, subtype="html", charset=charset, cte="base64" if n % 2 else "quoted-printable")
    else:
        msg.set_content(body, charset=charset, cte="base64" if n % 4 == 1 else "quoted-printable" if n % 4 == 2 else "8bit")
    return msg.as_bytes()


def main() -> None:
    for old in HERE.glob("*.eml"):
        old.unlink()
    manifest = {}
    for n, (name, sender, subject, body, code, kind, charset) in enumerate(LETTERS):
        (HERE / f"{name}.eml").write_bytes(build(name, sender, subject, body, kind, charset, n))
        manifest[f"{name}.eml"] = code
    (HERE / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(manifest)} letters, {sum(1 for c in manifest.values() if c)} with a code")


if __name__ == "__main__":
    main()
