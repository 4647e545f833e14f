"""Mask PII in free text (Chinese and English) and pseudonymise identifiers with a keyed hash.

    >>> mask_pii("请拨打13812345678联系我")
    ('请拨打[PHONE]联系我', 1)

Detected, in this order (a later detector never sees text an earlier one claimed):

* ``email`` -> ``[EMAIL]``: ``local@domain.tld`` with a dotted domain. Local part and domain in Latin
  (accented letters included), Greek or Cyrillic letters, digits and ``. _ % + -``, found inside CJK
  text without spaces around it (``邮箱zhang@qq.com谢谢``); then internationalised addresses with CJK
  (or any other) letters (``用户@例子.公司``), whose local part and top-level domain run to the next
  space or punctuation, so CJK text glued to such an address is masked with it.
* ``cn_id`` -> ``[CN_ID]``: resident ID numbers, 18 characters (17 digits + digit/X/x) with a
  birth date 1900-2100 and a valid ISO 7064 MOD 11-2 check character, or the old 15-digit form
  with a valid (19)YYMMDD date. Written as one unbroken run, not part of a longer digit run.
* ``card`` -> ``[CARD]``: 13-19 digits, ungrouped or grouped by single spaces/hyphens, first digit
  1-9, not preceded by ``+`` nor part of a longer digit run, not ``86`` + a mobile number (a
  phone), passing the Luhn check. So an 18-digit number whose ID check fails but that passes Luhn
  is masked as a card.
* ``phone`` -> ``[PHONE]``: whatever ``phonenumbers.PhoneNumberMatcher`` (leniency VALID) accepts
  for each of the phone regions in turn (``DEFAULT_PHONE_REGIONS``: CN, US (with Canada: the same
  plan), GB, IN, plus those a playbook adds under ``pii.phone_regions``): national formats of those
  regions with any usual separators, and every number with ``+`` or an international prefix.
  Hotlines (toll-free, shared-cost) are masked too. Digits glued to Latin letters
  (``Tel13812345678``) count. Then any run of 7-15 digits (separators allowed) that follows a phone
  cue (phone, call, tel, mobile, cell, whatsapp, fax, contact, number, 电话, 手机, 联系方式, 致电,
  拨打, 座机 ...) within 24 characters without a digit or a sentence end, and is not a date.
  Kept as identifiers, whatever the matcher says: a number glued to a letter code by ``-``/``_``/``/``
  or preceded by ``#`` (``PP-006-234-348-863``, ``#4455667788``), one followed by ``-`` + a letter or
  digit, and one whose nearest preceding cue within 24 characters is an identifier word (order,
  case, ticket, tracking, ref, account, invoice, flight, 订单, 单号, 运单, 工单, 编号, 账号 ...).

Not detected on purpose: names, addresses, licence plates, account logins, 8-digit landlines
without area code and without a cue, national formats of regions not configured (unless a cue
precedes them), IDs or cards broken up by other characters. Times, dates, amounts, short numbers,
order numbers failing Luhn, ticket numbers (``A023``) and flight numbers (``CA1234``) are left
alone. Full-width digits (``１３８…``) are read as ASCII digits.

Cost: texts without ``@``, without 10 digits (7 after a ``+``; short separators allowed between
them) and without a phone cue before 7 digits skip every detector; ``mask_column`` applies the same
pre-filter (``PREFILTER``, valid in Python ``re`` and RE2) in Arrow and only touches candidate rows.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import Leniency, PhoneNumberMatcher

TOKENS = {"email": "[EMAIL]", "cn_id": "[CN_ID]", "card": "[CARD]", "phone": "[PHONE]"}
DEFAULT_PHONE_REGIONS = ("CN", "US", "GB", "IN")

# Digit runs that may hold a number worth checking: 10+ digits, or 7+ after a plus sign (short
# international numbers), at most 2 separator characters between digits. The same patterns work
# in Python `re` and Arrow's / DuckDB's RE2 (literal characters only, no \d, \s or \u escapes).
_SEPARATORS = " \t\u00a0\u3000\\-.()（）－/"
_RUN = "[0-9０-９](?:[" + _SEPARATORS + "]{0,2}[0-9０-９]){%d,}"
_NUMBER_HINT = "[+＋][ (]{0,2}" + _RUN % 6 + "|" + _RUN % 9
# Phone cues: a cue, then at most 24 characters without a digit or sentence end, then 7+ digits.
_PHONE_CUES = ("phone", "tel", "call", "ring", "dial", "mobile", "cell", "whatsapp", "fax", "sms", "text me",
               "contact", "reach me", "reach us", "number", "hotline", "电话", "手机", "联系方式", "联系", "致电",
               "拨打", "座机", "来电", "回电", "热线", "號碼", "電話", "号码")
_ID_CUES = ("order", "case", "ticket", "tracking", "track", "ref", "reference", "confirmation", "booking",
            "reservation", "invoice", "receipt", "account", "acct", "flight", "claim", "serial", "model", "sku",
            "part", "item", "product", "member", "membership", "policy", "transaction", "txn", "parcel",
            "package", "shipment", "waybill", "imei", "loan", "id", "pnr", "isbn", "zip", "postal", "postcode",
            "version", "build",
            "订单", "单号", "运单", "快递", "工单", "编号", "账号", "帐号", "卡号", "航班", "票号", "流水", "交易",
            "会员", "保单", "合同", "发票", "序列号", "型号", "货号", "邮编", "排队", "排在")
_CUE_GAP = 24
_FILLER = "[^0-9０-９!?。！？\n]{0,%d}" % _CUE_GAP  # between a cue and its number: no digit, no sentence end


def _alternatives(words) -> str:
    return "(?i:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_CUED_RUN = "(?:^|[^A-Za-z])" + _alternatives(_PHONE_CUES) + _FILLER + "[+＋(（]?" + _RUN % 6
PREFILTER = "@|＠|" + _NUMBER_HINT + "|" + _CUED_RUN
_NUMBERS = re.compile(_NUMBER_HINT)
_SEVEN_DIGITS = re.compile(_RUN % 6)
_TO_ASCII = str.maketrans("０１２３４５６７８９＠", "0123456789@")
_LETTERS_OUT = str.maketrans(dict.fromkeys(map(ord, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), "\0"))

_LATIN = "A-Za-z0-9\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff"  # Latin with accents, Greek, Cyrillic
_LATIN_LETTERS = "A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff"
_EMAIL = re.compile(f"(?<![{_LATIN}_%+-])[{_LATIN}_%+-]+(?:\\.[{_LATIN}_%+-]+)*@"
                    f"(?:[{_LATIN}](?:[{_LATIN}-]{{0,61}}[{_LATIN}])?\\.)+[{_LATIN_LETTERS}]{{2,63}}")
_EMAIL_INTERNATIONAL = re.compile(r"(?<![\w%+.-])[\w%+-]+(?:\.[\w%+-]+)*@(?:[\w-]+\.)+[^\W\d_]{2,63}")
_ID18 = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")
_ID15 = re.compile(r"(?<![0-9])[1-9][0-9]{14}(?![0-9])")
_DIGITS = re.compile(r"[0-9]+")
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*")
_CN_MOBILE_86 = re.compile(r"861[3-9][0-9]{9}")  # 86 + mobile: a phone, not a 13-digit card
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CUED_NUMBER = re.compile("(?<![A-Za-z])" + _alternatives(_PHONE_CUES) + _FILLER.replace("}", "}?")
                          + "(?P<number>[+(]?[0-9](?:[" + _SEPARATORS + "]{0,2}[0-9])*)")
_CUE_WORDS = re.compile("(?<![A-Za-z])(?:(?P<phone>" + _alternatives(_PHONE_CUES) + ")|(?P<id>"
                        + _alternatives(_ID_CUES) + "))")
_URL = re.compile(r"(?i:https?://|www\.)[^\s<>\"'，。、）]+")  # digits in links are not cards or phones (except after a cue)
_WEAK_PHONE_CUES = {"number", "号码", "號碼", "contact", "联系"}
_ID_PHRASE_GAP = 3  # "order number", "订单号码": an id word this close before a weak phone cue names an id
_DATE_LIKE = re.compile(r"(?:19|20)[0-9]{2}[-./ ][0-9]{1,2}[-./ ][0-9]{1,2}|[0-9]{1,2}[-./ ][0-9]{1,2}[-./ ](?:19|20)[0-9]{2}")
_ALNUM = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # "email", "cn_id", "card" or "phone"
    start: int
    end: int


def _valid_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _valid_id18(s: str) -> bool:
    year = int(s[6:10])
    if not (1900 <= year <= 2100 and _valid_date(year, int(s[10:12]), int(s[12:14]))):
        return False
    return id_check_char(s[:17]) == s[17].upper()


def _valid_id15(s: str) -> bool:
    return _valid_date(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))


def id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of an 18-character Chinese resident ID number."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def luhn_check_digit(body: str) -> str:
    """The digit that makes `body` + it pass the Luhn check (bank card numbers)."""
    total = 0
    for i, d in enumerate(reversed(body)):
        n = int(d) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str(-total % 10)


def _luhn(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == digits[-1]


def _cards(text: str):
    """(start, end) of card numbers: in each run of digit groups (single space or hyphen between
    groups), the leftmost-longest sequence of whole groups with 13-19 digits that passes Luhn.
    Several groups need one separator kind and at least 3 digits each, so dates never join up."""
    for run in _DIGIT_RUN.finditer(text):
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(text, run.start(), run.end())]
        i = 0
        while i < len(groups):
            found, (start, _) = None, groups[i]
            if text[start] != "0" and (start == 0 or text[start - 1] != "+"):
                digits = ""
                for j in range(i, len(groups)):
                    if j > i and (groups[j][1] - groups[j][0] < 3 or groups[i][1] - groups[i][0] < 3
                                  or text[groups[j][0] - 1] != text[groups[i][1]]):
                        break
                    digits += text[groups[j][0]:groups[j][1]]
                    if len(digits) > 19:
                        break
                    if len(digits) >= 13 and _luhn(digits) and not _CN_MOBILE_86.fullmatch(digits):
                        found = j
            if found is None:
                i += 1
            else:
                yield start, groups[found][1]
                i = found + 1


def _identifier_context(work: str, start: int, end: int) -> bool:
    """Whether the number at work[start:end] belongs to an identifier: glued to a code by ``- _ /`` or after ``#``,
    followed by ``-`` + a letter or digit, or whose nearest cue before it (within _CUE_GAP characters) is an id
    word. A weak phone cue (number, 号码, contact, 联系) right after an id word ("order number") counts as that id."""
    before = work[start - 1] if start else ""
    if before == "#" or (before in "-_/" and start >= 2 and _ALNUM.match(work[start - 2])):
        return True
    if end + 1 < len(work) and work[end] in "-_/" and _ALNUM.match(work[end + 1]):
        return True
    cues = list(_CUE_WORDS.finditer(work, max(0, start - 2 * _CUE_GAP), start))
    if not cues or cues[-1].end() < start - _CUE_GAP:
        return False
    last = cues[-1]
    if last.group("id"):
        return True
    previous = cues[-2] if len(cues) > 1 else None
    return (last.group().lower() in _WEAK_PHONE_CUES and previous is not None and previous.group("id") is not None
            and last.start() - previous.end() <= _ID_PHRASE_GAP)


def _worth_matching(work: str) -> bool:
    """Whether a digit run long enough for a phone number remains once a leading date is taken off each run."""
    for m in _NUMBERS.finditer(work):
        run = m.group()
        date = _DATE_LIKE.match(run)
        if date is None or sum(c.isdigit() for c in run[date.end():]) >= 7:
            return True
    return False


def find_pii(text: str, phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> list[PiiSpan]:
    """PII spans in `text`, sorted and non-overlapping (see the module docstring)."""
    if not text:
        return []
    work = text.translate(_TO_ASCII)
    has_at, has_number = "@" in work, _NUMBERS.search(work) is not None
    if not (has_at or has_number or (_SEVEN_DIGITS.search(work) and _CUED_NUMBER.search(work))):
        return []
    spans: list[PiiSpan] = []
    numbers = work  # `work` with links blanked: what the card and phone detectors read

    def claim(kind: str, start: int, end: int) -> None:
        nonlocal work, numbers
        spans.append(PiiSpan(kind, start, end))
        work = work[:start] + "\0" * (end - start) + work[end:]
        numbers = numbers[:start] + "\0" * (end - start) + numbers[end:]

    if has_at:
        for pattern in (_EMAIL, _EMAIL_INTERNATIONAL) if not work.isascii() else (_EMAIL,):
            for m in list(pattern.finditer(work)):
                claim("email", m.start(), m.end())
        has_number = _NUMBERS.search(work) is not None
    if has_number:
        for pattern, valid in ((_ID18, _valid_id18), (_ID15, _valid_id15)):
            for m in list(pattern.finditer(work)):
                if valid(m.group()):
                    claim("cn_id", m.start(), m.end())
        if "/" in work:
            numbers = _URL.sub(lambda m: "\0" * len(m.group()), work)
        for start, end in list(_cards(numbers)):
            claim("card", start, end)
        for region in phone_regions:  # the matcher is the expensive part: only while a long digit run is left
            if not _worth_matching(numbers):
                break
            for m in list(PhoneNumberMatcher(numbers.translate(_LETTERS_OUT), region, leniency=Leniency.VALID)):
                if not _identifier_context(work, m.start, m.end):
                    claim("phone", m.start, m.end)
    for m in list(_CUED_NUMBER.finditer(work)) if _SEVEN_DIGITS.search(work) else ():
        start, end = m.span("number")
        number = m.group("number").rstrip(" -./(")
        end = start + len(number)
        digits = sum(c.isdigit() for c in number)
        if (7 <= digits <= 15 and not _DATE_LIKE.search(number) and not (end < len(work) and _ALNUM.match(work[end]))
                and not _identifier_context(work, start, end)):
            claim("phone", start, end)
    return sorted(spans, key=lambda s: s.start)


def mask_pii(text: str | None, phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> tuple[str | None, int]:
    """`text` with every PII span replaced by its token, and the number of spans replaced."""
    if not text:
        return text, 0
    spans = find_pii(text, phone_regions)
    if not spans:
        return text, 0
    parts, pos = [], 0
    for s in spans:
        parts += [text[pos:s.start], TOKENS[s.kind]]
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts), len(spans)


def _strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.cast(pa.string()) if pa.types.is_null(values.type) else values


def _candidates(values: pa.Array) -> pa.Array:
    """Rows whose text PREFILTER matches (the only ones any detector can find something in)."""
    return pc.fill_null(pc.match_substring_regex(values, PREFILTER), False)


def mask_column(values: pa.Array | pa.ChunkedArray,
                phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> tuple[pa.Array, pa.Array]:
    """Masked string array (same type, nulls kept) and int32 span counts (0 for null/empty)."""
    values = _strings(values)
    counts = np.zeros(len(values), dtype=np.int32)
    candidate = _candidates(values)
    rows = pc.indices_nonzero(candidate)
    if len(rows) == 0:
        return values, pa.array(counts)
    masked = [mask_pii(t, phone_regions) for t in values.take(rows).to_pylist()]
    counts[rows.to_numpy()] = [n for _, n in masked]
    replaced = pa.array([t for t, _ in masked], values.type)
    return pc.replace_with_mask(values, candidate, replaced), pa.array(counts)


def pseudonymize(value: str, key: bytes) -> str:
    """``"c_"`` + the first 24 hex digits of HMAC-SHA256(key, value)."""
    return "c_" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def pseudonymize_column(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """`pseudonymize` of every non-null value (each distinct value hashed once); nulls stay null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = values.cast(pa.string()).dictionary_encode()
    hashed = pa.array([pseudonymize(v, key) for v in encoded.dictionary.to_pylist()], pa.string())
    return hashed.take(encoded.indices)
