import json
import re

import pyarrow as pa
import pytest

from pipelines.pii import (DEFAULT_PHONE_REGIONS, PREFILTER, PiiSpan, Redaction, decode_escapes, find_pii, mask_column,
                           mask_pii, pseudonymize, pseudonymize_column)

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS)) % 11]


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def luhn_digit(body: str) -> str:
    return next(d for d in "0123456789" if luhn_ok(body + d))


def make_id(area: str = "110105", birth: str = "19880315", seq: str = "123") -> str:
    first17 = area + birth + seq
    return first17 + id_check(first17)


def make_card(body: str) -> str:
    return body + luhn_digit(body)


def group(number: str, sep: str = " ", size: int = 4) -> str:
    return sep.join(number[i:i + size] for i in range(0, len(number), size))


ID18 = make_id()
ID18_X = next(i for i in (make_id(seq=f"{s:03d}") for s in range(1000)) if i.endswith("X"))
ID15 = "110105880315123"
CARD16 = make_card("622202123456789")
CARD19 = make_card("621700987654321012")


def test_helpers_are_consistent():
    assert len(ID18) == 18 and len(ID18_X) == 18 and ID18_X.endswith("X")
    assert len(CARD16) == 16 and luhn_ok(CARD16) and len(CARD19) == 19 and luhn_ok(CARD19)
    assert not luhn_ok(CARD16[:-1] + str((int(CARD16[-1]) + 1) % 10))
    # well-known published examples
    assert id_check("11010519491231002") == "X" and luhn_ok("4111111111111111")


# --- each kind, zh and en ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("邮箱zhang.san@example.com谢谢", "邮箱[EMAIL]谢谢"),
    ("我的邮箱是 li_si-88@mail.qq.com，请回复", "我的邮箱是 [EMAIL]，请回复"),
    ("Please email john.doe+mot@mail.example.co.uk.", "Please email [EMAIL]."),
    ("QQ邮箱13812345678@qq.com", "QQ邮箱[EMAIL]"),
    ("cc: a@b.io, c.d@e-f.org", "cc: [EMAIL], [EMAIL]"),
    ("联系zhang@qq.com13812345678", "联系[EMAIL][PHONE]"),
])
def test_email(text, expected):
    assert mask_pii(text) == (expected, expected.count("["))


def test_email_lookalikes_kept():
    for text in ("@客服小王 谢谢", "user@localhost", "邮箱 zhang@", "price@10.5"):
        assert mask_pii(text) == (text, 0)


@pytest.mark.parametrize("text, expected", [
    (f"身份证号{ID18}，请核对", "身份证号[CN_ID]，请核对"),
    (f"身份证{ID18_X}办理", "身份证[CN_ID]办理"),
    (f"身份证{ID18_X.lower()}办理", "身份证[CN_ID]办理"),
    (f"旧身份证{ID15}", "旧身份证[CN_ID]"),
    (f"My ID number is {ID18}.", "My ID number is [CN_ID]."),
    ("ID 11010519491231002X ok", "ID [CN_ID] ok"),
])
def test_cn_id(text, expected):
    assert mask_pii(text) == (expected, 1)


def test_cn_id_reported_as_cn_id_not_card():
    luhn_valid_id = next(i for i in (make_id(seq=f"{n:03d}") for n in range(1000)) if i[-1] != "X" and luhn_ok(i))
    assert find_pii(luhn_valid_id) == [PiiSpan("cn_id", 0, 18)]
    assert find_pii(ID18) == [PiiSpan("cn_id", 0, 18)]


def test_cn_id_bad_checksum():
    first17 = ID18[:17]
    wrong = [c for c in "0123456789X" if c != id_check(first17)]
    failing_luhn = next(c for c in wrong if c == "X" or not luhn_ok(first17 + c))
    passing_luhn = next(c for c in wrong if c != "X" and luhn_ok(first17 + c))
    # fails both checks: left alone
    assert mask_pii(f"身份证{first17}{failing_luhn}。") == (f"身份证{first17}{failing_luhn}。", 0)
    # decision: a bad ID checksum that passes Luhn is a 18-digit card number and is masked as one
    assert find_pii(first17 + passing_luhn) == [PiiSpan("card", 0, 18)]


def test_cn_id_bad_date_or_longer_run_kept():
    feb_30 = make_id(birth="19880230")
    year_1850 = make_id(birth="18500101")
    month_13 = "110105881315123"  # 15-digit form
    for number in (feb_30, year_1850, month_13):
        assert not luhn_ok(number)  # so it cannot come back as a card either
        assert mask_pii(f"证件{number}") == (f"证件{number}", 0)
    assert mask_pii("1" + ID18 + "2") == ("1" + ID18 + "2", 0)  # 20-digit run


@pytest.mark.parametrize("text, expected", [
    (f"卡号{CARD16}", "卡号[CARD]"),
    (f"银行卡 {group(CARD19)} 被吞了", "银行卡 [CARD] 被吞了"),
    (f"card {group(CARD16, '-')} was declined", "card [CARD] was declined"),
    ("Test card 4111 1111 1111 1111, thanks", "Test card [CARD], thanks"),
    (f"卡号{CARD19} 电话13812345678", "卡号[CARD] 电话[PHONE]"),
])
def test_card(text, expected):
    assert mask_pii(text) == (expected, expected.count("["))


def test_card_luhn_failure_and_longer_run_kept():
    bad = CARD16[:-1] + str((int(CARD16[-1]) + 1) % 10)
    assert mask_pii(f"卡号{bad}") == (f"卡号{bad}", 0)
    assert mask_pii(f"card {group(bad)}") == (f"card {group(bad)}", 0)
    assert mask_pii("9" + CARD19 + "9") == ("9" + CARD19 + "9", 0)  # 21-digit run


@pytest.mark.parametrize("text, expected", [
    ("请拨打13812345678联系我", "请拨打[PHONE]联系我"),
    ("手机：138-1234-5678。", "手机：[PHONE]。"),
    ("电话+86 138 1234 5678", "电话[PHONE]"),
    ("电话0086 138 1234 5678谢谢", "电话[PHONE]谢谢"),
    ("号码8613812345678", "号码[PHONE]"),
    ("座机010-12345678转分机", "座机[PHONE]转分机"),
    ("call (021) 6123 4567 today", "call [PHONE] today"),
    ("London office +44 20 7946 0958.", "London office [PHONE]."),
    ("SF: +1 (415) 555-2671", "SF: [PHONE]"),
    ("Tel13812345678", "Tel[PHONE]"),
    ("手机１３８１２３４５６７８", "手机[PHONE]"),
])
def test_phone(text, expected):
    assert mask_pii(text) == (expected, 1)


def test_phone_spans():
    text = "请拨打13812345678联系我"
    assert find_pii(text) == [PiiSpan("phone", 3, 14)]
    assert text[3:14] == "13812345678"


def test_hotlines_masked_too():
    # decision (issue 16): a number's type cannot tell a business line from a personal one, so all are masked
    assert mask_pii("投诉请拨打400-820-8820") == ("投诉请拨打[PHONE]", 1)
    assert mask_pii("call 800-222-2377 or 0344 556 5650") == ("call [PHONE] or [PHONE]", 2)


# --- issue 16: internationalised e-mail addresses (c) ------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("用户@例子.公司", "[EMAIL]"),
    ("jöhn@exämple.de", "[EMAIL]"),
    ("write to jöhn@example.de today", "write to [EMAIL] today"),
    ("mail 用户@例子.公司 thanks", "mail [EMAIL] thanks"),
    ("Ελένη@παράδειγμα.ελ", "[EMAIL]"),
    # decision: the CJK run glued to a CJK address cannot be told apart from it, so it is masked with it
    ("请发到用户@例子.公司", "[EMAIL]"),
    ("联系zhang@qq.com或用户@例子.公司", "联系[EMAIL][EMAIL]"),
])
def test_international_email(text, expected):
    assert mask_pii(text) == (expected, expected.count("["))


# --- issue 16: phone numbers in national formats and after cues (e) -----------------------------------
@pytest.mark.parametrize("text, expected", [
    ("My phone number is 8106028994", "My phone number is [PHONE]"),
    ("call me tomorrow afternoon 3:00 pm (706)614-7640", "call me tomorrow afternoon 3:00 pm [PHONE]"),
    ("you can reach the desk at 850.266.3576 anytime", "you can reach the desk at [PHONE] anytime"),
    ("my number 08070635658", "my number [PHONE]"),
    ("pls call 0062395415777", "pls call [PHONE]"),
    ("Please contact us on 0344 556 5650.", "Please contact us on [PHONE]."),
    ("Customer Care 800-222-2377", "Customer Care [PHONE]"),
    ("US line 1-800-222-2377", "US line [PHONE]"),
    ("Delhi office 011 4155 6677", "Delhi office [PHONE]"),
    ("电话 66778899", "电话 [PHONE]"),
    ("联系方式：021-6688 1234", "联系方式：[PHONE]"),
    ("tel 7654321", "tel [PHONE]"),
    ("https://example.com/callback?phone=13812345678", "https://example.com/callback?phone=[PHONE]"),
])
def test_phone_national_and_cued(text, expected):
    assert mask_pii(text) == (expected, 1)


@pytest.mark.parametrize("text", [
    "Your case id PP-006-234-348-863",
    "order number 8106028994",
    "order #8106028994",
    "ticket 8106028994 is closed",
    "reference 0344 556 5650",
    "订单号码13812345678",
    "tracking number 9400 1000 0000 0000 0000 00",
    "call me on 2024-05-01 at 10:30",
    "phone bill was $1,234,567.00",
    "see https://web.archive.org/web/20191213044137/https://support.apple.com/kb",
    "https://shop.example/s?qid=1585671141&sr=1-1&_ga=2.255752072.1014027261.1584376133",
    "call 12345678901234567890",
    "Tokyo desk 03-3123-4567 today",  # not a default region
])
def test_identifiers_dates_links_and_other_regions_kept(text):
    assert mask_pii(text) == (text, 0)


def test_playbook_phone_regions():
    text = "Tokyo desk 03-3123-4567 today"
    assert mask_pii(text, (*DEFAULT_PHONE_REGIONS, "JP")) == ("Tokyo desk [PHONE] today", 1)
    masked, counts = mask_column(pa.array([text]), (*DEFAULT_PHONE_REGIONS, "JP"))
    assert masked.to_pylist() == ["Tokyo desk [PHONE] today"] and counts.to_pylist() == [1]


def test_prefilter_passes_every_text_with_pii():
    texts = ["tel 7654321", "用户@例子.公司", "My phone number is 8106028994", "电话 66778899"]
    assert all(re.search(PREFILTER, t) for t in texts)
    assert not re.search(PREFILTER, "ticket 12345 at 10:30")


# --- false positives ----------------------------------------------------------------------------------
ORDER_NO = "2024050112345678"


@pytest.mark.parametrize("text", [
    "10:30到店，10:45办完",
    "预约日期2024-05-01",
    "2024-05-01 10:30 到 2024-05-07 18:00",
    "2024-05-01 2024-05-07",
    "消费¥1,280.00，押金3000元",
    "paid $1,280.00 on 2024/05/01",
    "第3号窗口，等了25分钟，人均300元",
    "取号A023，前面还有12人",
    "航班CA1234延误",
    "flight CA1234 gate 12",
    f"订单号{ORDER_NO}",
    f"order #{group(ORDER_NO)}",
    "客服热线95588",
    "",
    "没有任何数字的文本",
])
def test_no_false_positives(text):
    assert not luhn_ok(ORDER_NO)
    assert mask_pii(text) == (text, 0)
    assert find_pii(text) == []


# --- mixed --------------------------------------------------------------------------------------------
def test_mixed_zh():
    text = (f"客户张先生，手机138-1234-5678，邮箱zhang.san@example.com，身份证{ID18}，"
            f"卡号{group(CARD19)}，10:30到店，消费¥1,280.00，取号A023")
    expected = ("客户张先生，手机[PHONE]，邮箱[EMAIL]，身份证[CN_ID]，卡号[CARD]，10:30到店，"
                "消费¥1,280.00，取号A023")
    assert mask_pii(text) == (expected, 4)
    spans = find_pii(text)
    assert [s.kind for s in spans] == ["phone", "email", "cn_id", "card"]
    assert [text[s.start:s.end] for s in spans] == [
        "138-1234-5678", "zhang.san@example.com", ID18, group(CARD19)]


def test_mixed_en():
    text = (f"Flight CA1234 on 2024-05-01 at 10:30. Reach me on +44 20 7946 0958 or john@example.com; "
            f"card {CARD16} was charged $1,280.00 twice")
    expected = ("Flight CA1234 on 2024-05-01 at 10:30. Reach me on [PHONE] or [EMAIL]; "
                "card [CARD] was charged $1,280.00 twice")
    assert mask_pii(text) == (expected, 3)


def test_spans_sorted_and_disjoint():
    text = f"{CARD16} a@b.cn 13812345678 {ID18} 010-12345678"
    spans = find_pii(text)
    assert [s.kind for s in spans] == ["card", "email", "phone", "cn_id", "phone"]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))


def test_none_and_empty():
    assert mask_pii(None) == (None, 0)
    assert mask_pii("") == ("", 0)
    assert find_pii("") == []


# --- columns ------------------------------------------------------------------------------------------
def test_mask_column():
    values = pa.array(["call 13812345678", None, "", "no pii here", "a@b.co 或 c@d.cn", "10:30"])
    masked, counts = mask_column(values)
    assert masked.to_pylist() == ["call [PHONE]", None, "", "no pii here", "[EMAIL] 或 [EMAIL]", "10:30"]
    assert counts.type == pa.int32()
    assert counts.to_pylist() == [1, 0, 0, 0, 2, 0]


def test_mask_column_chunked_large_string_and_empty():
    values = pa.chunked_array([pa.array(["x", None], pa.large_string()),
                               pa.array([f"卡{CARD16}"], pa.large_string())])
    masked, counts = mask_column(values)
    assert isinstance(masked, pa.Array) and masked.type == pa.large_string()
    assert masked.to_pylist() == ["x", None, "卡[CARD]"]
    assert counts.to_pylist() == [0, 0, 1]
    masked, counts = mask_column(pa.array([None, None], pa.string()))
    assert masked.to_pylist() == [None, None] and counts.to_pylist() == [0, 0]
    masked, counts = mask_column(pa.array([], pa.string()))
    assert len(masked) == 0 and len(counts) == 0 and counts.type == pa.int32()


def test_pseudonymize():
    a = pseudonymize("cust-001", b"key-1")
    assert a == pseudonymize("cust-001", b"key-1")
    assert re.fullmatch(r"c_[0-9a-f]{24}", a)
    assert a != pseudonymize("cust-001", b"key-2")
    assert a != pseudonymize("cust-002", b"key-1")


def test_pseudonymize_column():
    values = pa.chunked_array([pa.array(["u1", None]), pa.array(["u2", "u1"])])
    out = pseudonymize_column(values, b"k")
    assert out.type == pa.string()
    assert out.to_pylist() == [pseudonymize("u1", b"k"), None, pseudonymize("u2", b"k"), pseudonymize("u1", b"k")]


def test_playbook_adds_phone_regions(tmp_path):
    from pipelines.playbook import load_playbook

    path = tmp_path / "jp.yaml"
    path.write_text("name: jp\nversion: '1'\nextends: bank_branch\npii:\n  phone_regions: [jp]\n", encoding="utf-8")
    assert load_playbook(str(path)).phone_regions == (*DEFAULT_PHONE_REGIONS, "JP")
    assert load_playbook("bank_branch").phone_regions == DEFAULT_PHONE_REGIONS
    path.write_text("name: x\nversion: '1'\npii:\n  phone_regions: [XX]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown phone regions"):
        load_playbook(str(path))



def test_the_dutch_permit_office_example_masks_dutch_national_numbers():
    from pathlib import Path

    from pipelines.playbook import load_playbook

    example = Path(__file__).resolve().parents[1] / "examples" / "playbooks" / "permit_office.yaml"
    regions = load_playbook(str(example)).phone_regions
    assert mask_pii("bel 020 123 4567 of 06 12345678", regions)[0] == "bel [PHONE] of [PHONE]"
    assert mask_pii("bel 020 123 4567", DEFAULT_PHONE_REGIONS)[0] == "bel 020 123 4567"

# --- issue 16: identifiers (a) and quarantined records (b, d) -----------------------------------------
IDS = frozenset({"event_id", "customer_id", "visit_id"})
FULL_WIDTH_MOBILE = "".join(chr(0xFF10 + int(d)) for d in "13706290800")
ESCAPED_MOBILE = "".join(f"\\u{ord(c):04x}" for c in FULL_WIDTH_MOBILE)


def test_identifier_holding_pii_becomes_its_keyed_hash():
    keyed = Redaction(identifier_key=b"k")
    for value in ("cust-13812345678", "e-13812345678", "visit ann@example.com", "PP-006-234-348-863"):
        assert keyed.identifier(value) == pseudonymize(value, b"k", "p_")  # glued codes count inside identifiers
    assert keyed.identifier("u13812345678") != keyed.identifier("u13912345678")  # a token would merge them
    for value in ("e-0001", "V-77", None, "", "v-1381234567800abc", pseudonymize("13812345678", b"k")):
        assert keyed.identifier(value) == value  # no PII, or motpipe's own hashes
    assert Redaction().identifier("u13812345678") == "u[PHONE]"  # no key (outside a run): masked in place


def test_identifiers_column_and_customer_ids():
    values = pa.chunked_array([pa.array(["e1", None]), pa.array(["e-13812345678", "e-13812345678"])])
    masked, replaced = Redaction(identifier_key=b"k").identifiers(values)
    hashed = pseudonymize("e-13812345678", b"k", "p_")
    assert masked.to_pylist() == ["e1", None, hashed, hashed] and replaced == 2
    customers = pa.array(["c1", "13812345678"])
    assert Redaction(identifier_key=b"k").customer_ids(customers).to_pylist() == [
        "c1", pseudonymize("13812345678", b"k", "p_")]
    assert Redaction(customer_key=b"s", identifier_key=b"s").customer_ids(customers).to_pylist() == [
        pseudonymize("c1", b"s"), pseudonymize("13812345678", b"s")]


def test_json_record_is_decoded_masked_and_pseudonymised():
    raw = ('{"event_id": "q1", "customer_id": "c9", "text": "\\u5f20\\u4e09 ' + ESCAPED_MOBILE + '", '
           '"wait_s": 13812345678, "ok": true, "attributes": {"agent": "a@b.co", "n": [1, "tel 7654321"]}}')
    masked = Redaction(customer_key=b"s", identifier_key=b"s").record(raw, IDS)
    assert "\\u" not in masked
    assert json.loads(masked) == {"event_id": "q1", "customer_id": pseudonymize("c9", b"s"), "text": "张三 [PHONE]",
                                  "wait_s": "[PHONE]", "ok": True,
                                  "attributes": {"agent": "[EMAIL]", "n": [1, "tel [PHONE]"]}}
    assert json.loads(Redaction().record(raw, IDS))["customer_id"] == "c9"  # no key: customer ids as given


def test_unparseable_record_is_decoded_masked_and_pseudonymised():
    raw = '{"event_id": "q2", "customer_id": "c8", "text": "\\u5f20\\u4e09' + ESCAPED_MOBILE
    assert Redaction(customer_key=b"s").record(raw, IDS) == (
        '{"event_id": "q2", "customer_id": "' + pseudonymize("c8", b"s") + '", "text": "张三[PHONE]')
    assert Redaction().record(raw, IDS) == '{"event_id": "q2", "customer_id": "c8", "text": "张三[PHONE]'
    assert Redaction().record('{"text": "\\ud800 call 13812345678"}', IDS) == '{"text": "\ufffd call [PHONE]"}'
    assert Redaction().record("not json \\ud83d\\ude00 \\ud800", IDS) == "not json \U0001f600 \ufffd"
    assert decode_escapes("a\\u0041\\u4e09") == "aA三" and decode_escapes("plain") == "plain"
    assert Redaction().record(None, IDS) is None
