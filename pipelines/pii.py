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
  digit, and one whose nearest preceding cue within 24 characters, in the same field or clause, is an
  identifier word (order, case, ticket, tracking, ref, account, invoice, flight, 订单, 单号, 运单, 工单, 编号,
  账号 ...). Digits inside links are not cards or phones (a cue such as ``?phone=`` still counts).
  In identifier values (``strict``), a phone number glued to a code counts too.

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
_FIELD_BREAK = re.compile('[",;，；。]')
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
    followed by ``-`` + a letter or digit, or whose nearest cue before it (within _CUE_GAP characters, in the same
    field or clause: no ``" , ;`` between) is an id word. A weak phone cue (number, 号码, contact, 联系) right after
    an id word ("order number") counts as that id."""
    before = work[start - 1] if start else ""
    if before == "#" or (before in "-_/" and start >= 2 and _ALNUM.match(work[start - 2])):
        return True
    if end + 1 < len(work) and work[end] in "-_/" and _ALNUM.match(work[end + 1]):
        return True
    cues = list(_CUE_WORDS.finditer(work, max(0, start - 2 * _CUE_GAP), start))
    if not cues or cues[-1].end() < start - _CUE_GAP:
        return False
    last = cues[-1]
    if _FIELD_BREAK.search(work, last.end(), start):  # another field or clause: `"customer_id": "c8", "text": "..."`
        return False
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


def find_pii(text: str, phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS, strict: bool = False) -> list[PiiSpan]:
    """PII spans in `text`, sorted and non-overlapping (see the module docstring). `strict`: for values that are
    identifiers themselves, a number is a phone number even where it is glued to a code or follows an id word."""
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
                if strict or not _identifier_context(work, m.start, m.end):
                    claim("phone", m.start, m.end)
    for m in list(_CUED_NUMBER.finditer(work)) if _SEVEN_DIGITS.search(work) else ():
        start, end = m.span("number")
        number = m.group("number").rstrip(" -./(")
        end = start + len(number)
        digits = sum(c.isdigit() for c in number)
        if (7 <= digits <= 15 and not _DATE_LIKE.search(number) and not (end < len(work) and _ALNUM.match(work[end]))
                and (strict or not _identifier_context(work, start, end))):
            claim("phone", start, end)
    return sorted(spans, key=lambda s: s.start)


def mask_pii(text: str | None, phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> tuple[str | None, int]:
    """`text` with every PII span replaced by its token, and the number of spans replaced."""
    if not text:
        return text, 0
    spans = find_pii(text, phone_regions)
    return (_masked(text, spans), len(spans)) if spans else (text, 0)


def _masked(text: str, spans: list[PiiSpan]) -> str:
    parts, pos = [], 0
    for s in spans:
        parts += [text[pos:s.start], TOKENS[s.kind]]
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


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


# --- identifiers and quarantined records ------------------------------------------------------------
HASHED_ID = "(?:c|p)_[0-9a-f]{24}|v-[0-9a-f]{16}"  # values motpipe makes (pseudonyms, stitched visit ids): not PII
JSON_ESCAPE = "\\\\u[0-9a-fA-F]{4}"  # a JSON \uXXXX escape, as a pattern for Python re and RE2
_HASHED_ID = re.compile(HASHED_ID)
_JSON_ESCAPES = re.compile(f"(?:{JSON_ESCAPE})+")
_SURROGATES = re.compile("[\ud800-\udfff]")
_CUSTOMER_FIELD = re.compile(r'("customer_id"\s*:\s*)("(?:[^"\\]|\\.)*")')


def pseudonymize(value: str, key: bytes, prefix: str = "c_") -> str:
    """`prefix` + the first 24 hex digits of HMAC-SHA256(key, value)."""
    return prefix + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:24]


def pseudonymize_column(values: pa.Array | pa.ChunkedArray, key: bytes) -> pa.Array:
    """`pseudonymize` of every non-null value (each distinct value hashed once); nulls stay null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = values.cast(pa.string()).dictionary_encode()
    hashed = pa.array([pseudonymize(v, key) for v in encoded.dictionary.to_pylist()], pa.string())
    return hashed.take(encoded.indices)


def valid_text(text: str) -> str:
    """`text` with surrogate pairs joined and lone surrogates (from ``\\ud800`` escapes) replaced by U+FFFD."""
    if not _SURROGATES.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def decode_escapes(text: str) -> str:
    """`text` with its JSON ``\\uXXXX`` escapes written out as the characters they stand for."""
    if "\\u" not in text:
        return text
    return _JSON_ESCAPES.sub(lambda m: valid_text(m.group().encode("ascii").decode("unicode_escape")), text)


@dataclass(frozen=True)
class Redaction:
    """How one run masks: the phone regions (defaults + the playbook's), the key that pseudonymises every
    customer_id (``--pseudonymize-key``, or None), and the key of the hash that replaces identifiers in which PII
    is found (the same key, or the output's own identifier key)."""

    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
    customer_key: bytes | None = None
    identifier_key: bytes | None = None

    def text(self, value: str | None) -> str | None:
        return mask_pii(value, self.phone_regions)[0]

    def identifier(self, value: str | None) -> str | None:
        """An identifier in which PII is found, replaced whole by ``"p_"`` + its keyed hash (equal ids stay equal
        in every table and run, distinct ids distinct, so joins keep working); other values as they are. Without
        an identifier key (outside a run) the PII spans are masked in place instead."""
        if not value or _HASHED_ID.fullmatch(value) or not find_pii(value, self.phone_regions, strict=True):
            return value
        if self.identifier_key:
            return pseudonymize(value, self.identifier_key, "p_")
        return _masked(value, find_pii(value, self.phone_regions, strict=True))

    def identifiers(self, values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, int]:
        """`identifier` of every value (only PREFILTER candidates are looked at) and how many were replaced."""
        values = _strings(values)
        candidate = _candidates(values)
        rows = pc.indices_nonzero(candidate)
        if len(rows) == 0:
            return values, 0
        before = values.take(rows).to_pylist()
        after = [self.identifier(v) for v in before]
        replaced = sum(a != b for a, b in zip(after, before))
        return pc.replace_with_mask(values, candidate, pa.array(after, values.type)), replaced

    def customer_ids(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Every customer_id pseudonymised with the customer key; without one, treated as an identifier."""
        return pseudonymize_column(values, self.customer_key) if self.customer_key else self.identifiers(values)[0]

    def _field(self, name: str | None, value, identifier_fields: frozenset[str]):
        if isinstance(value, str):
            if name == "customer_id" and self.customer_key:
                return pseudonymize(value, self.customer_key)
            return self.identifier(value) if name in identifier_fields else self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self._field(k, v, identifier_fields) for k, v in value.items()}
        if isinstance(value, list):
            return [self._field(None, v, identifier_fields) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and find_pii(str(value), self.phone_regions):
            return self.text(str(value))
        return value

    def record(self, raw: str | None, identifier_fields: frozenset[str]) -> str | None:
        """The analyst-facing copy of a quarantined raw record. A JSON object is decoded, each field masked (a
        customer_id pseudonymised with the customer key, `identifier_fields` as identifiers, any other string as
        text, numbers that are PII as their token) and written as JSON again, non-ASCII characters written out.
        Any other line gets its ``\\uXXXX`` escapes decoded, a ``"customer_id": "..."`` pseudonymised (with the
        customer key) and its text masked."""
        if not raw:
            return raw
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict):
            return valid_text(json.dumps(self._field(None, record, identifier_fields), ensure_ascii=False))
        text = decode_escapes(raw)
        if self.customer_key:
            text = _CUSTOMER_FIELD.sub(self._pseudonymized_field, text)
        return valid_text(self.text(text))

    def _pseudonymized_field(self, m: re.Match) -> str:
        try:
            value = json.loads(m.group(2))
        except ValueError:
            return m.group(1) + '"[CUSTOMER_ID]"'
        return m.group(1) + json.dumps(pseudonymize(str(value), self.customer_key))

    def records(self, values: pa.Array | pa.ChunkedArray, identifier_fields: frozenset[str]) -> pa.Array:
        """`record` of every value of a column of raw records."""
        values = _strings(values)
        return pa.array([self.record(v, identifier_fields) for v in values.to_pylist()], values.type)
