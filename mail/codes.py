"""One-time login and confirmation codes in a new letter (pure functions, no I/O).

`find_code(subject, text)` returns the code a person would type (``"483920"``, ``"K7Q-2PZ"``)
or None. Precision comes before recall: a code is only taken when it sits right next to a
word that says it is one (code, passcode, OTP, verification, код, подтверждения, пароль для
входа, одноразовый пароль, ...) and nothing around it says it is something else:

* the keyword is not a promo / discount / coupon / postal / zip / country / product / order /
  tracking / error / booking code (промокод, код купона, код заказа, код отслеживания, ...),
  and the sentence around it speaks of no discount, sale or percent;
* the candidate is not part of a longer number (phones ``8 800 555 35 35``, card numbers),
  not a date or time (``12.03.2024``, ``10:30``), not a decimal or a price (``1 299,00 ₽``,
  ``$1299``, ``4500 руб``), not a year (1900-2099), not behind ``№`` / ``#`` / "order" /
  "заказ" / "invoice" / "счёт" / "tracking" / "трек" / "phone" / "тел";
* letters and digits mixed (``K7Q2PZ``) only follow a specific keyword (verification code,
  код подтверждения, пароль для входа, OTP, ...) with nothing but ``:`` / "is" between;
* two different candidates (a list of backup codes, say) give no answer at all.

The subject is looked at first, then the first `MAX_TEXT` characters of the text.
`code_in_message` applies the same to a whole RFC 822 message (the corpus test and the
benchmark); the importer calls `find_code` with the text it already decoded for the snippet.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import re

from mail import mime
from mail.html2text import html_to_text

MAX_TEXT = 4000  # characters of the letter's text looked at
CODE_MAX = 16
MAX_KEYWORDS = 30  # keyword places looked at per part
_AFTER_GAP = 60  # characters allowed between a keyword and a code after it
_BEFORE_GAP = 32  # ... and between a code and a keyword after it ("123456 is your code")

_STRONG = (
    r"(?:verification|confirmation|security|login|log[- ]in|sign[- ]?in|access|authentication|auth|"
    r"one[- ]time|single[- ]use|2fa|two[- ]factor|2-step|temporary|activation|validation|otp)"
    r"\s+(?:pass)?code"
    r"|(?:guard|steam\s+guard)\s+code|код\s+steam\s+guard|passcode|\botp\b|one[- ]time\s+pass(?:word|code)"
    r"|код(?:а|у|ом)?\s+(?:подтверждени\w*|для\s+входа|входа|доступа|авторизации|"
    r"верификации|активации|безопасности|проверки)"
    r"|(?:одноразов\w*|проверочн\w*|секретн\w*)\s+(?:код\w{0,2}|парол\w{0,2})"
    r"|парол\w{0,2}\s+для\s+входа|код\s+из\s+(?:письма|смс|sms)"
)
_WEAK = r"\bcode\b|\bкод(?:а|у|ом|ы)?\b|\bverif(?:y|ication)\b|\bподтвержд\w*"
_KEYWORD = re.compile(rf"(?P<strong>{_STRONG})|(?P<weak>{_WEAK})", re.IGNORECASE)

# a keyword that names some other kind of code (checked on the words right around it)
_OTHER_BEFORE = re.compile(
    r"(?:recovery|backup|резервн\w*|promo|promotional|discount|coupon|voucher|gift|referral|invite|invitation|postal|zip|post|"
    r"country|area|dial(?:l?ing)?|product|item|order|tracking|track|bar|qr|source|swift|bic|sort|"
    r"tax|error|status|booking|reservation|reference|ref|pickup|pick-up|access-point|штрих|"
    r"промо|region|sms-?)[\s-]*$",
    re.IGNORECASE,
)
_OTHER_AFTER = re.compile(
    r"^\s*(?:купона|скидки|на\s+скидку|товара|заказа|отслеживания|ошибки|бронирования|"
    r"для\s+получения|получения|региона|страны|подразделения|города|продукта|акции|"
    r"приглашения|сертификата|клиента|абонента|плательщика|участника|посылки|отправления|of\s+conduct|review|snippet|"
    r"for\s+(?:\d+%|a\s+discount|discount|free)|\d+\s*%)",
    re.IGNORECASE,
)
# the sentence speaks of a sale: no code is a login code there
_SALE = re.compile(
    r"\d\s*%|скидк|discount|\bsale\b|распродаж|\bpromo|промо|купон|coupon|\boff\b|cashback|кешбэк|кэшбэк"
    # travel: an airline's or a hotel's "confirmation code" is a booking reference
    r"|\bflights?\b|\bрейс|booking|reservation|бронир|\bбронь|\bброни\b|\btickets?\b|\bбилет|\bhotel|\bотел|"
    r"itinerary|boarding|посадочн",
    re.IGNORECASE,
)
_CANDIDATE = re.compile(
    r"(?<![\w.,:/#№+$€£₽\\=?&%-])"
    r"(?P<code>[0-9]{3}[ -][0-9]{3}|[0-9]{4}[ -][0-9]{4}|[0-9]{4,8}"
    r"|(?=[A-Za-z0-9-]*[0-9])(?=[A-Za-z0-9-]*[A-Za-z])[A-Za-z0-9]{2,5}-[A-Za-z0-9]{2,5}"
    r"|(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{5,10})"
    r"(?![\w@/\\=&%]|[.,:][0-9]|-\w)"
)
_LEFT_OTHER = re.compile(
    r"(?:№|#|\bno\.?|\bnr\.?|\bnum(?:ber)?|номер\w*|\border\w*|заказ\w*|invoice\w*|сч[её]т\w*|"
    r"tracking|трек\w*|ticket|тикет\w*|договор\w*|contract|account|acct|карт\w*|card|\btel\.?|"
    r"тел\.?|phone|телефон\w*|инн|кпп|огрн|бик|рейс\w*|flight|\bid|\bид|посылк\w*|отправлени\w*|"
    r"артикул\w*|sku|ref\w*|reference|case|обращени\w*|квитанци\w*|receipt|доставк\w*|"
    r"rub|usd|eur|руб\.?|р\.|\$|€|£|₽|total|итого|сумм\w*|amount|balance|баланс\w*|price|цен\w*|"
    r"стоимост\w*"
    r"|(?:card|карт\w*|номер\w*|number|\bno\.?)\s+[\w*]+)"  # "card ending 4417", "номер операции: 12345"
    r"[\s:.\-*№#]*$",
    re.IGNORECASE,
)
_RIGHT_OTHER = re.compile(
    r"^\s*(?:руб|р\.|₽|\$|€|£|usd|eur|rub|%|шт|kg|кг|km|км|years?\b|г\.|г\b|года?\b|гг|mb|gb|"
    r"мб|гб|tb|px|ms|мс|sec|сек|мин|min|h\b|ч\b|items?|товар|bonus|бонус|балл|points?|₸|грн|"
    r"[-–]\s*\d|x\s*\d|×)",
    re.IGNORECASE,
)
_ADJACENT_NUMBER_LEFT = re.compile(r"(?:\d[\s\-)]?|\(\s*)$")
_ADJACENT_NUMBER_RIGHT = re.compile(r"^(?:[\s\-(]?\d)")
_STRICT_GAP = re.compile(
    r"^[\s:\-—–=]*(?:(?:is|это|равен|будет)\b[\s:\-—–]*)?[\"«“']?$", re.IGNORECASE
)
_BEFORE_GAP_OK = re.compile(
    r"^[\"»”']?[\s\-—–:,]*(?:is|это|—|-|–)?[\s\-—–:]*(?:your|the|ваш|твой|ваш\s+\w+|your\s+[\w\- ]{0,20})?\s*$",
    re.IGNORECASE,
)
_LONE_DIGIT = re.compile(r"(?<![^\W\d_])\d")  # a digit not glued to letters (gamer42 is a name)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_ENDS_WITH_IS = re.compile(r"(?:\b(?:is|это)|[—:–-])\s*$", re.IGNORECASE)
_LONG_GAP = 140
_ALTERNATIVE = re.compile(
    r"\s*(?:,|;|/|\bor\b|\band\b|\bили\b|\bи\b)\s*(?P<code>[0-9]{3}[ -][0-9]{3}|[0-9]{4,8}|(?=[A-Za-z-]*[0-9])[A-Za-z0-9-]{5,11})\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u2007\u202f]+")
_DIGIT = re.compile(r"\d")


def _is_year(code: str) -> bool:  # years are only taken right after "code:" / "код:"
    return len(code) == 4 and code.isdigit() and 1900 <= int(code) <= 2099


def _other_kind(text: str, start: int, end: int) -> bool:
    """The keyword at text[start:end] names another kind of code, or the sentence is a sale."""
    if _OTHER_BEFORE.search(text[max(0, start - 24) : start]):
        return True
    if _OTHER_AFTER.search(text[end : end + 40]):
        return True
    left = max(text.rfind(". ", 0, start), text.rfind("\n", 0, start), start - 120)
    right_dot = text.find(". ", end)
    right = min(x for x in (right_dot if right_dot >= 0 else len(text), end + 120, len(text)))
    return bool(_SALE.search(text[max(0, left) : right]))


def _candidate_ok(text: str, start: int, end: int, code: str) -> bool:
    if _LEFT_OTHER.search(text[max(0, start - 24) : start]):
        return False
    if _RIGHT_OTHER.search(text[end : end + 12]):
        return False
    if _ADJACENT_NUMBER_LEFT.search(text[max(0, start - 2) : start]):
        return False
    return not _ADJACENT_NUMBER_RIGHT.search(text[end : end + 2])


def _alnum(code: str) -> bool:
    return not code.replace("-", "").replace(" ", "").isdigit()


def _alone_on_line(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : len(text) if line_end < 0 else line_end]
    return line.strip(" *\t\"'«»“”") == text[start:end]


def _gap_vouches(text: str, gap: str, cand: re.Match[str], strong: bool) -> bool:
    """Does the text between a keyword and the candidate after it say "this is the code"?"""
    code = cand.group("code")
    strict = bool(_STRICT_GAP.match(gap))
    if _is_year(code) and not strict:
        return False
    if _alnum(code):
        return strong and (strict or (_alone_on_line(text, cand.start(), cand.end()) and len(gap) <= _LONG_GAP))
    if strict:
        return True
    if len(gap) <= 25 and not _LONE_DIGIT.search(gap) and not _SENTENCE_END.search(gap):
        return True
    if _alone_on_line(text, cand.start(), cand.end()) and len(gap) <= _LONG_GAP and "\n" in gap:
        return not _LONE_DIGIT.search(gap) or strong
    # "your one-time passcode for ... of USD 49.99 with card ending 4417 is 640218": one
    # sentence, the numbers in between are something else, and it ends with "is"
    return (
        strong
        and len(gap) <= _LONG_GAP
        and "\n" not in gap
        and not _SENTENCE_END.search(gap)
        and bool(_ENDS_WITH_IS.search(gap))
    )


def _codes_near(text: str) -> set[str]:
    found: set[str] = set()
    for n, key in enumerate(_KEYWORD.finditer(text)):
        if n >= MAX_KEYWORDS:
            break  # a letter that says "code" this often is no code letter; bounded time
        strong = key.group("strong") is not None
        if _other_kind(text, key.start(), key.end()):
            continue
        after = None
        for cand in _CANDIDATE.finditer(text, key.end(), min(len(text), key.end() + _LONG_GAP + 20)):
            gap = text[key.end() : cand.start()]
            if len(gap) > _LONG_GAP:
                break
            ok = _candidate_ok(text, cand.start(), cand.end(), cand.group("code"))
            if ok and _gap_vouches(text, gap, cand, strong):
                after = cand.group("code")
                second = _ALTERNATIVE.match(text, cand.end())
                if second and second.group("code") != after:
                    found.add(second.group("code"))  # "111111 or 222222": two, so no answer
            if ok and not _alnum(cand.group("code")):
                break  # the first plausible number decides; other things (gamer42, 49.99) are looked past
        if after is not None:
            found.add(after)
            continue
        # before it: "483920 is your verification code", "483920 — ваш код"
        window_start = max(0, key.start() - _BEFORE_GAP - 12)
        before = None
        for cand in _CANDIDATE.finditer(text, window_start, key.start()):
            before = cand
        if before is None:
            continue
        gap = text[before.end() : key.start()]
        code = before.group("code")
        if (
            len(gap) <= _BEFORE_GAP
            and not _DIGIT.search(gap)
            and _BEFORE_GAP_OK.match(gap)
            and _candidate_ok(text, before.start(), before.end(), code)
            and (not _alnum(code) or strong)
            and not (_is_year(code) and not strong)
        ):
            found.add(code)
    return found


def _normal(code: str) -> str:
    """What the user pastes: digit groups joined ("483 920" -> "483920"), dashes between
    letters kept ("K7Q-2PZ")."""
    if code.replace(" ", "").replace("-", "").isdigit():
        return code.replace(" ", "").replace("-", "")
    return code.replace(" ", "")


def find_code(subject: str, text: str) -> str | None:
    """The one-time code of a letter, or None (see the module doc)."""
    for part in (subject or "", (text or "")[:MAX_TEXT]):
        part = _SPACES.sub(" ", part)
        codes = {_normal(c) for c in _codes_near(part)}
        if len(codes) == 1:
            code = codes.pop()
            return code if len(code) <= CODE_MAX else None
        if len(codes) > 1:
            return None  # several: a list of backup codes, or a letter we don't understand
    return None


def message_text(message: email.message.Message, limit: int = MAX_TEXT) -> str:
    """The first readable text of a parsed message (text/plain before text/html)."""
    best: email.message.Message | None = None
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            best = part
            break
        if ctype == "text/html" and best is None:
            best = part
    if best is None:
        return ""
    raw = best.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    text = mime.decode_text(raw[: 4 * limit], best.get_content_charset())
    if best.get_content_subtype() == "html":
        text = html_to_text(text, limit=limit, links=False)
    return text[:limit]


def code_in_message(data: bytes) -> str | None:
    """`find_code` on a whole RFC 822 message."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    subject = mime.header_text(message.get("Subject"))
    return find_code(subject, message_text(message))
