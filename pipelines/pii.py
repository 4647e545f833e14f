"""Mask PII in free text (Chinese and English) and pseudonymise identifiers with a keyed hash.

    >>> mask_pii("请拨打13812345678联系我")
    ('请拨打[PHONE]联系我', 1)

Detected, in this order (a later detector never sees text an earlier one claimed):

* ``email`` -> ``[EMAIL]``: ``local@domain.tld`` with an ASCII local part (letters, digits,
  ``. _ % + -``) and a dotted domain; found inside CJK text without spaces around it.
* ``cn_id`` -> ``[CN_ID]``: resident ID numbers, 18 characters (17 digits + digit/X/x) with a
  birth date 1900-2100 and a valid ISO 7064 MOD 11-2 check character, or the old 15-digit form
  with a valid (19)YYMMDD date. Written as one unbroken run, not part of a longer digit run.
* ``card`` -> ``[CARD]``: 13-19 digits, ungrouped or grouped by single spaces/hyphens, first digit
  1-9, not preceded by ``+`` nor part of a longer digit run, not ``86`` + a mobile number (a
  phone), passing the Luhn check. So an 18-digit number whose ID check fails but that passes Luhn
  is masked as a card.
* ``phone`` -> ``[PHONE]``: whatever ``phonenumbers.PhoneNumberMatcher`` (region CN, leniency
  VALID) accepts: mobiles with or without +86/0086/86, landlines with area code, international
  numbers with ``+``. Digits glued to Latin letters (``Tel13812345678``) count too. Toll-free,
  shared-cost and premium-rate numbers (400/800 hotlines) are business lines and are kept.

Not detected on purpose: names, addresses, licence plates, account logins, 8-digit landlines
without area code, IDs or cards broken up by other characters. Times, dates, amounts, short
numbers, order numbers failing Luhn, ticket numbers (``A023``) and flight numbers (``CA1234``) are
left alone. Full-width digits (``１３８…``) are read as ASCII digits.

Cost: texts without ``@`` and without 10 digits (7 after a ``+``; short separators allowed between
them) skip every detector; ``mask_column`` applies the same pre-filter in Arrow and only touches candidate rows.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

import numpy as np
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import Leniency, PhoneNumberMatcher, PhoneNumberType

TOKENS = {"email": "[EMAIL]", "cn_id": "[CN_ID]", "card": "[CARD]", "phone": "[PHONE]"}

# Digit runs that may hold a number worth checking: 10+ digits, or 7+ after a plus sign (short
# international numbers), at most 2 separator characters between digits. The same pattern works
# in Python `re` and Arrow's RE2 (literal characters only, no \d, \s or \u escapes).
_RUN = "[0-9０-９](?:[ \t\u00a0\u3000\\-.()（）－/]{0,2}[0-9０-９]){%d,}"
_NUMBER_HINT = "[+＋][ (]{0,2}" + _RUN % 6 + "|" + _RUN % 9
PREFILTER = "@|" + _NUMBER_HINT
_NUMBERS = re.compile(_NUMBER_HINT)
_TO_ASCII = str.maketrans("０１２３４５６７８９", "0123456789")
_LETTERS_OUT = str.maketrans(dict.fromkeys(map(ord, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), "\0"))

_EMAIL = re.compile(r"(?<![A-Za-z0-9_%+-])[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_ID18 = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")
_ID15 = re.compile(r"(?<![0-9])[1-9][0-9]{14}(?![0-9])")
_DIGITS = re.compile(r"[0-9]+")
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*")
_CN_MOBILE_86 = re.compile(r"861[3-9][0-9]{9}")  # 86 + mobile: a phone, not a 13-digit card
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_KEPT_PHONE_TYPES = {PhoneNumberType.TOLL_FREE, PhoneNumberType.SHARED_COST, PhoneNumberType.PREMIUM_RATE}


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


def find_pii(text: str) -> list[PiiSpan]:
    """PII spans in `text`, sorted and non-overlapping (see the module docstring)."""
    if not text:
        return []
    has_at, has_digits = "@" in text, _NUMBERS.search(text) is not None
    if not (has_at or has_digits):
        return []
    work = text.translate(_TO_ASCII)
    spans: list[PiiSpan] = []

    def claim(kind: str, start: int, end: int) -> None:
        nonlocal work
        spans.append(PiiSpan(kind, start, end))
        work = work[:start] + "\0" * (end - start) + work[end:]

    if has_at:
        for m in list(_EMAIL.finditer(work)):
            claim("email", m.start(), m.end())
        has_digits = _NUMBERS.search(work) is not None
    if has_digits:
        for pattern, valid in ((_ID18, _valid_id18), (_ID15, _valid_id15)):
            for m in list(pattern.finditer(work)):
                if valid(m.group()):
                    claim("cn_id", m.start(), m.end())
        for start, end in list(_cards(work)):
            claim("card", start, end)
    if has_digits and _NUMBERS.search(work):  # the phone matcher is the expensive part
        for m in PhoneNumberMatcher(work.translate(_LETTERS_OUT), "CN", leniency=Leniency.VALID):
            if phonenumbers.number_type(m.number) not in _KEPT_PHONE_TYPES:
                claim("phone", m.start, m.end)
    return sorted(spans, key=lambda s: s.start)


def mask_pii(text: str | None) -> tuple[str | None, int]:
    """`text` with every PII span replaced by its token, and the number of spans replaced."""
    if not text:
        return text, 0
    spans = find_pii(text)
    if not spans:
        return text, 0
    parts, pos = [], 0
    for s in spans:
        parts += [text[pos:s.start], TOKENS[s.kind]]
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts), len(spans)


def mask_column(values: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Masked string array (same type, nulls kept) and int32 span counts (0 for null/empty)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_null(values.type):
        values = values.cast(pa.string())
    counts = np.zeros(len(values), dtype=np.int32)
    candidate = pc.fill_null(pc.match_substring_regex(values, PREFILTER), False)
    rows = pc.indices_nonzero(candidate)
    if len(rows) == 0:
        return values, pa.array(counts)
    masked = [mask_pii(t) for t in values.take(rows).to_pylist()]
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
