"""Realistic, deterministic sample inputs for motpipe (`motpipe sample`), with a manifest of the truth.

Customers make 1-3 visits; a visit is 3-9 touchpoint events in MOT step order (1 -> 4, a step-5
follow-up a day or two later on some visits that carry a `visit_id`). Events of a visit are 1-20
minutes apart and visits of a customer more than 2 hours apart, so stitching by a 30-minute gap
recovers exactly the generated visits. Bad rows and duplicates are *extra* rows, each failing
exactly one validation check; their counts are in `manifest.json`. Naive timestamps are written as
UTC wall-clock time: the manifest holds for a run with the default `--timezone UTC`.

Two shapes (`SHAPES`): `mixed` (the default: events over JSONL, gzip JSONL and gzip CSV files, every kind of
bad row, a quarter of the duplicates conflicting) and `production` (one big uncompressed JSON Lines file per
dataset, null fields left out, integer `wait_s`/`duration_s`, a phone number or e-mail address in ~7% of the
rows, 1.5% faulty lines of three kinds and 0.5% exact duplicates, spread evenly through the file).

    >>> manifest = generate_sample(Path("/tmp/sample"), 2000)   # doctest: +SKIP
    >>> manifest = generate_sample(Path("/tmp/prod"), 2000, shape="production")   # doctest: +SKIP
"""
from __future__ import annotations

import bisect
import copy
import csv
import gzip
import io
import itertools
import json
import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path

from pipelines.ingest.contract import (
    DEFAULT_CHANNELS,
    DIMENSIONS,
    EVENT_FIELDS,
    EVENT_REQUIRED,
    FEEDBACK_FIELDS,
    FEEDBACK_REQUIRED,
    OUTCOMES,
    SERVQUAL_ITEMS,
    ErrorKind,
)
from pipelines.pii import id_check_char, luhn_check_digit
from pipelines.playbook import Playbook, load_playbook

EVENT_FILES = ("touchpoints/part-00000.jsonl.gz", "touchpoints/part-00001.jsonl", "touchpoints/part-00002.csv.gz")
EVENT_FILE_WEIGHTS = (0.4, 0.3, 0.3)
FEEDBACK_FILES = ("feedback/part-00000.jsonl.gz", "feedback/part-00001.csv")
FEEDBACK_FILE_WEIGHTS = (0.5, 0.5)
CHUNK_EVENTS = 10_000  # good events generated, shuffled and written per chunk
EVENT_COLUMNS = ("event_id", "occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id",
                 "location_id", "duration_s", "wait_s", "text", "outcome", "attributes")
assert sorted(EVENT_COLUMNS) == sorted(f for f in EVENT_FIELDS if f != "identifiers")  # CSV: identifier.<type>
RATING_KEYS = (*DIMENSIONS, *SERVQUAL_ITEMS)
RATING_COLUMNS = tuple(f"rating.{k}{m}" for k in RATING_KEYS for m in ("", ".expectation", ".perception"))
FEEDBACK_COLUMNS = tuple(f for f in FEEDBACK_FIELDS if f not in ("ratings", "identifiers")) + RATING_COLUMNS

E = ErrorKind
EVENT_BAD_KINDS = (E.UNPARSEABLE_LINE, E.MISSING_REQUIRED_FIELD, E.WRONG_TYPE, E.BAD_TIMESTAMP, E.OUT_OF_RANGE,
                   E.UNKNOWN_CHANNEL, E.UNKNOWN_OUTCOME)
FEEDBACK_BAD_KINDS = (E.UNPARSEABLE_LINE, E.MISSING_REQUIRED_FIELD, E.WRONG_TYPE, E.BAD_TIMESTAMP, E.OUT_OF_RANGE,
                      E.UNKNOWN_CHANNEL, E.NO_FEEDBACK_SIGNAL)

# The true key drivers of the generated scores: csat, nps and ces are linear in the five rated perceptions (minus
# the scale's middle, 4) with these weights, plus noise (ces falls as they rise: lower effort is better), so a
# key-driver analysis of the output should rank the dimensions in this order. Recorded in the manifest.
DRIVER_WEIGHTS = {
    "csat": {"reliability": 0.44, "responsiveness": 0.28, "assurance": 0.16, "empathy": 0.08, "tangibles": 0.04},
    "nps": {"assurance": 0.44, "reliability": 0.28, "empathy": 0.16, "responsiveness": 0.08, "tangibles": 0.04},
    "ces": {"responsiveness": 0.44, "reliability": 0.28, "tangibles": 0.16, "assurance": 0.08, "empathy": 0.04},
}


@dataclass(frozen=True)
class Shape:
    """How the generated inputs look: files, kinds of faults, numbers and PII."""

    event_files: tuple[str, ...]
    event_file_weights: tuple[float, ...]
    feedback_files: tuple[str, ...]
    feedback_file_weights: tuple[float, ...]
    event_bad_kinds: tuple[ErrorKind, ...]
    feedback_bad_kinds: tuple[ErrorKind, ...]
    bad_share: float  # default share of injected bad rows
    duplicate_share: float  # default share of injected duplicates
    conflicting_share: float  # of the duplicates, the share with the same id and other content
    pii_share: float  # of the texts and comments, the share carrying a PII string
    pii_kinds: tuple[str, ...]
    integer_seconds: bool  # wait_s and duration_s as whole seconds
    omit_nulls: bool  # JSON lines leave null fields out
    respaced_duplicates: bool  # exact JSONL duplicates written with shuffled keys and other spacing
    blank_line: bool  # one blank line in the second event file


SHAPES = {
    "mixed": Shape(EVENT_FILES, EVENT_FILE_WEIGHTS, FEEDBACK_FILES, FEEDBACK_FILE_WEIGHTS, EVENT_BAD_KINDS,
                   FEEDBACK_BAD_KINDS, bad_share=0.02, duplicate_share=0.02, conflicting_share=0.25, pii_share=0.03,
                   pii_kinds=("phone", "email", "id", "card"), integer_seconds=False, omit_nulls=False,
                   respaced_duplicates=True, blank_line=True),
    "production": Shape(("touchpoints/events.jsonl",), (1.0,), ("feedback/feedback.jsonl",), (1.0,),
                        (E.UNPARSEABLE_LINE, E.MISSING_REQUIRED_FIELD, E.BAD_TIMESTAMP),
                        (E.UNPARSEABLE_LINE, E.MISSING_REQUIRED_FIELD, E.BAD_TIMESTAMP),
                        bad_share=0.015, duplicate_share=0.005, conflicting_share=0.0, pii_share=0.12,
                        pii_kinds=("phone", "email"), integer_seconds=True, omit_nulls=True,
                        respaced_duplicates=False, blank_line=False),
}

HOUR, DAY = 3600, 86400
CST = 8 * HOUR  # the +08:00 offset of most timestamps

# channels of a visit (weighted), of its day-later follow-up, and location id prefixes per playbook
PROFILES = {
    "bank_branch": {"channels": {"branch": 70, "phone": 15, "app": 15}, "follow_up": ("phone", "app")},
    "retail_counter": {"channels": {"store": 70, "web": 15, "app": 15}, "follow_up": ("phone", "app")},
    "airline": {"channels": {"airport": 50, "app": 25, "chat": 15, "email": 10}, "follow_up": ("email", "app", "chat")},
}
AIRPORT_TOUCHPOINTS = {"check_in", "bag_drop", "security", "boarding", "arrival", "baggage_claim"}
STAFFED = {"branch", "store", "phone", "chat", "airport", "onboard", "kiosk", "other"}
LOCATION_PREFIX = {"branch": "br", "store": "st", "phone": "cc", "kiosk": "ks", "onboard": "fl"}
AIRPORTS = ("PVG-T1", "PVG-T2", "PEK-T3", "CAN-T2", "SZX-T3", "CTU-T1")
UNMAPPED_TOUCHPOINTS = ("hallway_chat", "lobby_tv", "parking_lot", "water_dispenser")
BAD_CHANNELS = ("fax", "carrier_pigeon", "telegram", "pager")
BAD_OUTCOMES = ("done", "ok", "pending", "closed")
BAD_TIMESTAMPS = ("yesterday", "2026-13-01T10:00:00", "2026-02-30 10:00", "10/01/2026 09:00", "2026-10-01T25:00:00+08:00")

STAFF_LINES = {
    1: ["您好,欢迎光临,请问您要办理什么业务?", "请问先生/小姐,我能为您做些什么?", "您好,很高兴为您服务。",
        "抱歉让您久等了,我马上帮您", "我能体谅您的心情。", "谁遇到这样的事情都会着急的。",
        "Hello, welcome! How can I help you today?", "Sorry to keep you waiting, I'll help you right away.",
        "Good morning, how can I help you today?"],
    2: ["请问您办理的是个人业务还是对公业务?", "请问您是什么时候发现这个问题的?", "您是说需要修改预留信息,对吗?",
        "请问您还有其他需要吗?", "Could you tell me your account type?", "When did you first notice the problem?",
        "So you would like to change your address, is that right?"],
    3: ["我可以马上帮您重新办理。", "我想这方案最适合您,您感觉呢?", "您有什么建议?",
        "您放心吧,3天之内我会给您一个满意的答复。", "Here is what I can do for you today.",
        "I think this option suits you best, what do you think?", "I will process this for you right now."],
    4: ["我再跟您确认一下今天办理的内容。", "还有什么可以帮您的吗?", "感谢您的耐心,祝您生活愉快。",
        "Let me summarise what we did today.", "Is there anything else I can help you with?",
        "Thank you for your patience, have a nice day."],
    5: ["我们会回访您。", "您好,这是回访电话,上次的问题解决了吗?", "您的业务已办理完成,如有疑问请随时联系我们。",
        "We'll call you back tomorrow", "Just following up on your visit last week.",
        "Your request has been completed, please let us know if anything is unclear."],
}
REMARKS = {
    "positive": ["工作人员很专业", "环境干净", "办理很快", "服务很周到", "没有让我多等", "态度很好,很耐心",
                 "not rude at all", "very professional staff", "quick and friendly service", "the place was clean",
                 "they fixed it the same day"],
    "negative": ["排队太久了", "服务不专业", "工作人员态度很差", "账单上的金额算错了", "环境有点乱", "等了半个多小时",
                 "the staff were rude", "they made a mistake on my statement", "waited far too long",
                 "nobody called me back", "not helpful at all"],
    "neutral": ["我想查一下余额", "我来换一张新卡", "I just need to update my address", "just asking about the fees"],
}
PII_TEMPLATES = {
    "phone": ("我的手机号是{}", "有问题请打我电话{}", "call me on {}", "my number is {}"),
    "email": ("我的邮箱是{}", "结果发到{}就行", "my email is {}", "please reply to {}"),
    "id": ("身份证号{}", "我的证件号码是{}", "my ID number is {}"),
    "card": ("卡号{}", "扣款的卡是{}", "card number {}", "charged to my card {}"),
}
MOBILE_PREFIXES = ("130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155",
                   "156", "157", "158", "159", "166", "176", "177", "180", "181", "182", "186", "187", "188", "189",
                   "198", "199")
EMAIL_NAMES = ("wang.fang", "li_lei", "zhangwei", "chen.jing", "liu.yang", "amy.lee", "j.smith", "huang.min")
EMAIL_DOMAINS = ("qq.com", "163.com", "gmail.com", "outlook.com", "126.com", "example.com")
ID_AREAS = ("110101", "110105", "310104", "310115", "440305", "440106", "510107", "330106", "320102", "420111")
CARD_PREFIXES = ("622202", "621700", "622848", "621483", "622588", "625965", "436742")


def _between(rng: random.Random, low: int, high: int) -> int:
    """Like rng.randint(low, high), faster."""
    return low + int(rng.random() * (high - low + 1))


# --- PII -----------------------------------------------------------------------------------------
def _pii(rng: random.Random, kind: str) -> str:
    if kind == "phone":
        return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
    if kind == "email":
        return f"{rng.choice(EMAIL_NAMES)}{rng.randrange(1000, 99999)}@{rng.choice(EMAIL_DOMAINS)}"
    if kind == "id":
        birth = date(1950, 1, 1) + timedelta(days=rng.randrange(20000))
        first17 = f"{rng.choice(ID_AREAS)}{birth:%Y%m%d}{rng.randrange(1000):03d}"
        return first17 + id_check_char(first17)
    body = rng.choice(CARD_PREFIXES) + "".join(str(rng.randrange(10)) for _ in range(rng.choice((9, 12))))
    return body + luhn_check_digit(body)


class _Sample:
    """State of one generation run: the random stream, counters and the manifest being built."""

    def __init__(self, playbook: Playbook, seed: int, start: date, days: int, shape: Shape, cross_channel_share: float = 0.0):
        self.rng = random.Random(seed)
        self.cross_channel = cross_channel_share
        self.truth: list[tuple[str, str]] = []  # (customer_id, person) of every customer id of a cross-channel person
        self.shared_device_customers: set[str] = set()
        self.pb = playbook
        self.shape = shape
        self.base = int(datetime(start.year, start.month, start.day, tzinfo=timezone.utc).timestamp()) - CST
        self.span = days * DAY
        steps: dict[int, list[str]] = {}
        for name, rule in playbook.touchpoints.items():
            steps.setdefault(rule.mot_step or 3, []).append(name)
        self.core = [tp for s in (1, 2, 3, 4) for tp in steps.get(s, [])] or ["greeting", "service", "farewell"]
        self.follow_ups = steps.get(5) or ["callback"]
        profile = PROFILES.get(playbook.name)
        default = [c for c in DEFAULT_CHANNELS if c != "other"]
        self.channels = list(profile["channels"]) if profile else default + [c for c in playbook.channels if c not in default]
        self.channel_weights = list(profile["channels"].values()) if profile else None
        self.follow_channels = profile["follow_up"] if profile else ("phone", "app", "email")
        self.unmapped = [t for t in UNMAPPED_TOUCHPOINTS if t not in playbook.touchpoints]
        self.long_wait = playbook.thresholds.long_wait_s
        self.short_wait = playbook.thresholds.short_wait_s or self.long_wait / 5
        self.airline = playbook.name == "airline"
        self.n = {"event": 0, "customer": 0, "visit": 0, "feedback": 0, "person": 0}
        self.pii: list[str] = []
        self.stats = {"visits": 0, "customers": 0, "visits_with_visit_id": 0, "naive_timestamps": 0,
                      "unmapped_touchpoint_rows": 0, "texts_with_pii": 0}
        self.fb_stats = {"with_visit_id": 0, "linkable_by_time": 0, "unlinkable": 0, "comments_with_pii": 0,
                         "naive_timestamps": 0}

    def next_id(self, kind: str, fmt: str) -> str:
        self.n[kind] += 1
        return fmt.format(self.n[kind])

    # --- text ------------------------------------------------------------------------------------
    def text(self, step: int, mood: str, pii: bool) -> tuple[str, bool]:
        """A staff utterance for the step and/or a customer remark; with `pii`, the shape's share carry a PII string."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.5:
            text = rng.choice(STAFF_LINES[step])
        elif roll < 0.8:
            text = rng.choice(REMARKS[mood])
        else:
            text = rng.choice(STAFF_LINES[step]) + " " + rng.choice(REMARKS[mood])
        if pii and rng.random() < self.shape.pii_share:
            kind = rng.choice(self.shape.pii_kinds)
            value = _pii(rng, kind)
            self.pii.append(value)
            return text + (" " if text[-1].isascii() else ",") + rng.choice(PII_TEMPLATES[kind]).format(value), True
        return text, False

    def timestamp(self, t: int, style: str) -> str:
        """ISO 8601 text of epoch second `t`: +08:00, Z, or naive (UTC wall clock, 'T' or ' ')."""
        if style == "cst":
            return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.gmtime(t + CST))
        if style == "utc":
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        return time.strftime("%Y-%m-%d %H:%M:%S" if style == "naive_space" else "%Y-%m-%dT%H:%M:%S", time.gmtime(t))

    def business_hours(self, t: int) -> int:
        """Move `t` forward into 08:00-20:00 local (+08:00) time."""
        sod = (t + CST) % DAY
        if sod < 8 * HOUR:
            return t + 8 * HOUR - sod + self.rng.randrange(2 * HOUR)
        if sod > 20 * HOUR:
            return t + DAY - sod + 8 * HOUR + self.rng.randrange(3 * HOUR)
        return t

    # --- customers and visits ------------------------------------------------------------------
    def customer(self, budget: int) -> list[dict]:
        """One customer's visits (each `{customer_id, visit_id, channel, touchpoints, end, events}`); with a
        cross-channel share, that share of them are persons whose channel systems each log their own id."""
        rng = self.rng
        if self.cross_channel and rng.random() < self.cross_channel:
            return self.person(budget)
        customer_id = self.next_id("customer", "cust-{:06d}")
        wanted = rng.choices((1, 2, 3), (5, 3, 2))[0]
        t = self.business_hours(self.base + rng.randrange(self.span))
        visits = []
        while len(visits) < wanted and budget > 0 and t < self.base + self.span:
            visit = self.visit(customer_id, t, min(rng.randint(3, 9), budget))
            budget -= len(visit["events"])
            visits.append(visit)
            t = self.business_hours(visit["end"] + rng.randint(3 * HOUR, 36 * HOUR))
        self.stats["customers"] += bool(visits)
        if self.cross_channel and visits and visits[0]["channel"] == "branch" and rng.random() < 0.1:
            visits[0]["events"][0]["identifiers"] = {"device_id": "lobby-tablet-01"}  # shared: must not link
            self.shared_device_customers.add(customer_id)
        return visits

    def person(self, budget: int) -> list[dict]:
        """One person's visits on 2-3 channels, each system with its own customer id (`<channel>-<n>`); the first
        event of each visit names the person's phone (written as that system writes it) and the system's own
        identifier (app: a device id; other channels: the account number), so all of them link by the phone."""
        rng = self.rng
        number = self.next_id("person", "{:06d}")
        phone = _pii(rng, "phone")
        formats = (f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}", phone, f"{phone[:3]}-{phone[3:7]}-{phone[7:]}")
        channels = rng.sample(self.channels, min(len(self.channels), rng.choice((2, 3))))
        t = self.business_hours(self.base + rng.randrange(self.span))
        visits = []
        for channel in channels:
            if budget <= 0 or t >= self.base + self.span:
                break
            customer_id = f"{channel}-{number}"
            visit = self.visit(customer_id, t, min(rng.randint(3, 9), budget), channel)
            own = {"device_id": f"dev-{number}"} if channel == "app" else {"account_id": f"6222-{number}"}
            visit["events"][0]["identifiers"] = {"phone": rng.choice(formats), **own}
            visit |= {"person": number, "phone": phone}
            self.truth.append((customer_id, f"person-{number}"))
            budget -= len(visit["events"])
            visits.append(visit)
            t = self.business_hours(visit["end"] + rng.randint(1 * HOUR, 30 * HOUR))
        self.stats["customers"] += len(visits)
        return visits

    def visit(self, customer_id: str, t: int, size: int, channel: str | None = None) -> dict:
        rng = self.rng
        self.stats["visits"] += 1
        visit_id = self.next_id("visit", "v-{:06d}") if rng.random() < 0.5 else None
        self.stats["visits_with_visit_id"] += visit_id is not None
        mood = rng.choices(("positive", "negative", "neutral"), (5, 3, 2))[0]
        style = rng.choices(("aware", "naive", "naive_space"), (92, 5, 3))[0]
        channel = channel or rng.choices(self.channels, self.channel_weights)[0]
        later = visit_id is not None and size >= 3 and rng.random() < 0.2  # follow-up a day or two later
        core = size - later
        picks = sorted(rng.sample(range(len(self.core)), core) if core <= len(self.core)
                       else rng.choices(range(len(self.core)), k=core))
        plan = [(self.core[i], channel) for i in picks]
        if not later and rng.random() < 0.05:  # same-session follow-up message instead of the last step
            plan[-1] = (rng.choice(self.follow_ups), channel)
        staff = f"s-{_between(rng, 0, 299):04d}" if channel in STAFFED else None
        location = self.location(channel)
        times = [t]
        for _ in plan[1:]:
            times.append(times[-1] + _between(rng, 60, 1200))
        if later:
            plan.append((rng.choice(self.follow_ups), rng.choice(self.follow_channels)))
            times.append(times[-1] + rng.randint(20 * HOUR, 50 * HOUR))
        outcome = rng.choices(OUTCOMES, (85, 7, 4, 4) if mood != "negative" else (45, 25, 15, 15))[0]
        events = []
        for position, ((touchpoint, ch), at) in enumerate(zip(plan, times)):
            if self.airline and touchpoint in AIRPORT_TOUCHPOINTS:
                ch = "airport"
            elif self.airline and touchpoint in ("inflight_service", "booking"):
                ch = "onboard" if touchpoint == "inflight_service" else "app"
            events.append(self.event(customer_id, visit_id, touchpoint, ch, at, style, mood, position == 0,
                                     staff if ch == channel else (f"s-{_between(rng, 0, 299):04d}" if ch in STAFFED else None),
                                     location if ch == channel else self.location(ch),
                                     outcome if position == len(plan) - 1 else None))
        return {"customer_id": customer_id, "visit_id": visit_id, "channel": channel, "end": times[-1], "mood": mood,
                "touchpoints": [tp for tp, _ in plan], "events": events}

    def location(self, channel: str) -> str | None:
        if channel == "airport":
            return self.rng.choice(AIRPORTS)
        if channel in LOCATION_PREFIX:
            return f"{LOCATION_PREFIX[channel]}-{_between(self.rng, 0, 39):03d}"
        return None

    def event(self, customer_id, visit_id, touchpoint, channel, at, style, mood, first, staff, location, outcome) -> dict:
        rng = self.rng
        rule = self.pb.touchpoints.get(touchpoint)
        step = rule.mot_step if rule and rule.mot_step else 3
        if self.unmapped and rng.random() < 0.02:
            touchpoint = rng.choice(self.unmapped)
        self.stats["unmapped_touchpoint_rows"] += touchpoint not in self.pb.touchpoints
        if style != "aware":
            self.stats["naive_timestamps"] += 1
            occurred = self.timestamp(at, style)
        else:
            occurred = self.timestamp(at, "cst" if rng.random() < 0.85 else "utc")
        digits = None if self.shape.integer_seconds else 1  # round(x, None) is an int
        wait = None
        if rng.random() < (0.85 if first else 0.2):
            wait = (round(self.long_wait + rng.expovariate(1 / self.long_wait), digits) if rng.random() < 0.12
                    else round(min(rng.expovariate(1 / self.short_wait), self.long_wait), digits))
        text = None
        if rng.random() < 0.6:
            text, has_pii = self.text(step, mood, pii=True)
            self.stats["texts_with_pii"] += has_pii
        if rng.random() < 0.03:
            channel = rng.choice((channel.capitalize(), f" {channel} ", channel.upper()))
        return {
            "event_id": self.next_id("event", "e-{:08d}"),
            "occurred_at": occurred,
            "customer_id": customer_id,
            "visit_id": visit_id,
            "channel": channel,
            "touchpoint": touchpoint,
            "staff_id": staff,
            "location_id": location,
            "duration_s": round(rng.uniform(20, 900), digits) if rng.random() < 0.7 else None,
            "wait_s": wait,
            "text": text,
            "outcome": outcome,
            "attributes": self.attributes(channel.strip().lower(), touchpoint) if rng.random() < 0.7 else None,
        }

    def attributes(self, channel: str, touchpoint: str) -> dict:
        rng = self.rng
        if channel == "app":
            return {"device": rng.choice(("ios", "android", "harmonyos")), "app_version": f"8.{_between(rng, 0, 5)}.{_between(rng, 0, 9)}"}
        if channel == "phone":
            return {"ivr_path": f"{_between(rng, 1, 9)}-{_between(rng, 1, 5)}", "line": "95588"}
        if channel in ("airport", "onboard"):
            return {"flight": f"MU{_between(rng, 5101, 5999)}", "cabin": rng.choice(("Y", "Y", "Y", "J"))}
        if channel in ("branch", "store", "kiosk"):
            return {"ticket": f"{rng.choice('ABCV')}{_between(rng, 0, 999):03d}", "floor": _between(rng, 1, 2)}
        return {"device": rng.choice(("desktop", "mobile")), "source": channel}

    # --- feedback --------------------------------------------------------------------------------
    def feedback(self, visit: dict | None, pii: bool = True) -> dict:
        """A feedback row about `visit` (None: a customer with no visit in the data)."""
        rng = self.rng
        if visit is None:
            customer_id = self.next_id("customer", "cust-{:06d}")
            submitted, visit_id, touchpoint, channel = self.base + rng.randrange(self.span), None, None, None
        else:
            customer_id = visit["customer_id"]
            submitted = visit["end"] + rng.randint(600, 3 * DAY)
            visit_id = visit["visit_id"] if rng.random() < 0.9 else None
            touchpoint = rng.choice(visit["touchpoints"]) if rng.random() < 0.3 else None
            channel = visit["channel"] if rng.random() < 0.5 else None
        identifiers = None
        if visit is not None and "person" in visit and rng.random() < 0.5:  # the survey system's own id, by phone
            customer_id, visit_id, identifiers = f"survey-{visit['person']}", None, {"phone": visit["phone"]}
            self.truth.append((customer_id, f"person-{visit['person']}"))
        mood = visit["mood"] if visit and rng.random() < 0.8 else rng.choices(("positive", "negative", "neutral"), (5, 3, 2))[0]
        good = {"positive": 1, "neutral": 0, "negative": -1}[mood]
        perceived = {d: max(1, min(7, round(4 + 0.6 * good + rng.gauss(0, 1.5)))) for d in DIMENSIONS}
        scores = {o: sum(w * (perceived[d] - 4) for d, w in DRIVER_WEIGHTS[o].items()) for o in DRIVER_WEIGHTS}
        style = rng.choices(("cst", "utc", "naive"), (80, 15, 5))[0]
        comment = has_pii = None
        if rng.random() < 0.7:
            comment = rng.choice(REMARKS[mood])
            if rng.random() < 0.4:
                comment += rng.choice((",", "; ")) + rng.choice(REMARKS[mood])
            if pii and rng.random() < self.shape.pii_share:
                kind = rng.choice(self.shape.pii_kinds)
                value = _pii(rng, kind)
                self.pii.append(value)
                comment += " " + rng.choice(PII_TEMPLATES[kind]).format(value)
                has_pii = True
        row = {
            "feedback_id": self.next_id("feedback", "fb-{:06d}"),
            "submitted_at": self.timestamp(submitted, style),
            "customer_id": customer_id,
            "visit_id": visit_id,
            "touchpoint": touchpoint,
            "channel": channel,
            "csat": max(1, min(5, round(3 + 1.1 * scores["csat"] + rng.gauss(0, 0.3)))) if rng.random() < 0.85 else None,
            "nps": max(0, min(10, round(6.5 + 2.2 * scores["nps"] + rng.gauss(0, 0.6)))) if rng.random() < 0.8 else None,
            "ces": max(1, min(7, round(3.5 - 1.5 * scores["ces"] + rng.gauss(0, 0.4)))) if rng.random() < 0.75 else None,
            "comment": comment,
            "ratings": self.ratings(perceived) if rng.random() < 0.6 else None,
            **({"identifiers": identifiers} if identifiers else {}),
        }
        if all(row[f] is None for f in ("csat", "nps", "ces", "comment", "ratings")):
            row["csat"] = max(1, min(5, round(3 + 1.1 * scores["csat"])))
        link = "unlinkable" if visit is None else ("with_visit_id" if visit_id else "linkable_by_time")
        row["_meta"] = {"naive_timestamps": style == "naive", "comments_with_pii": bool(has_pii), link: True}
        return row

    def ratings(self, perceived: dict[str, int]) -> dict:
        """SERVQUAL ratings of the perceptions `perceived` (1-7 per dimension), keyed by dimension (bare perception
        or an expectation/perception pair; all five dimensions (80 %) or 3-4 of them) or by item Q1..Q22 (pairs; all 22
        items (70 %) or 5 of them, each within one point of its dimension's perception)."""
        rng = self.rng

        def pair(perception: int) -> dict:
            return {"expectation": rng.randint(5, 7), "perception": perception}

        if rng.random() < 0.5:
            keys = list(DIMENSIONS) if rng.random() < 0.8 else sorted(rng.sample(DIMENSIONS, rng.randint(3, 4)), key=DIMENSIONS.index)
            bare = rng.random() < 0.5
            return {k: perceived[k] if bare else pair(perceived[k]) for k in keys}
        items = list(SERVQUAL_ITEMS) if rng.random() < 0.7 else sorted(rng.sample(list(SERVQUAL_ITEMS), 5), key=lambda q: int(q[1:]))
        return {q: pair(max(1, min(7, perceived[SERVQUAL_ITEMS[q]] + rng.choice((-1, 0, 0, 0, 1))))) for q in items}


# --- rendering -----------------------------------------------------------------------------------
def _jsonl(row: dict, variant: random.Random | None = None, omit_nulls: bool = False) -> str:
    """One JSON line (without its null fields with `omit_nulls`); with `variant`, keys shuffled and spaced so
    only a semantic comparison matches."""
    if omit_nulls:
        row = {k: v for k, v in row.items() if v is not None}
    if variant is None:
        return json.dumps(row, ensure_ascii=False, separators=(",", ":"))
    keys = list(row)
    variant.shuffle(keys)
    return " " + json.dumps({k: row[k] for k in keys}, ensure_ascii=False, separators=(", ", ": ")) + " "


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


IDENTIFIER_COLUMNS = ("identifier.phone", "identifier.device_id", "identifier.account_id")  # with --cross-channel-share


def _with_identifier_cells(row: dict) -> dict:
    return {**row, **{f"identifier.{k}": v for k, v in (row.get("identifiers") or {}).items()}}


def _event_cells(row: dict) -> list[str]:
    return [_cell(row.get(c)) for c in EVENT_COLUMNS]


def _event_identifier_cells(row: dict) -> list[str]:
    return _event_cells(row) + [_cell(_with_identifier_cells(row).get(c)) for c in IDENTIFIER_COLUMNS]


def _feedback_cells(row: dict) -> list[str]:
    flat = {}
    for key, value in (row.get("ratings") or {}).items():
        if isinstance(value, dict):
            for measure, number in value.items():
                flat[f"rating.{key}.{measure}"] = number
        else:
            flat[f"rating.{key}"] = value
    return [_cell(row.get(c)) for c in FEEDBACK_COLUMNS[: len(FEEDBACK_COLUMNS) - len(RATING_COLUMNS)]] + [
        _cell(flat.get(c)) for c in RATING_COLUMNS
    ]


def _feedback_identifier_cells(row: dict) -> list[str]:
    return _feedback_cells(row) + [_cell(_with_identifier_cells(row).get("identifier.phone"))]


# --- injected problems ---------------------------------------------------------------------------
def _bad_row(rng: random.Random, kind: ErrorKind, row: dict, dataset: str, csv_file: bool) -> dict | str | list:
    """Corrupt a fresh good-looking `row` so that it fails exactly the check `kind` (and nothing earlier).

    Returns a dict (rendered as usual), or for unparseable rows the raw line (JSONL) / cells (CSV).
    """
    events = dataset == "events"
    if kind is E.UNPARSEABLE_LINE:
        if csv_file:
            cells = _event_cells(row) if events else _feedback_cells(row)
            return cells + ["extra"] if rng.random() < 0.5 else cells[: rng.randint(2, 6)]
        line = _jsonl(row)
        return rng.choice((line[: rng.randint(5, len(line) - 2)], "[1,2]", '"just a string"', "null"))
    if kind is E.MISSING_REQUIRED_FIELD:
        field = rng.choice(EVENT_REQUIRED if events else FEEDBACK_REQUIRED)
        choice = rng.random()
        if choice < 0.4 and not csv_file:
            del row[field]
        else:
            row[field] = "  " if choice > 0.7 else (None if not csv_file else "")
        return row
    if kind is E.WRONG_TYPE:
        if csv_file:
            field, value = rng.choice((("wait_s", "abc"), ("duration_s", "n/a"), ("attributes", "ticket=A023"))
                                      if events else (("csat", "abc"), ("nps", "ten"), ("ces", "?")))
        else:
            field, value = rng.choice(
                (("customer_id", 12345), ("touchpoint", ["a"]), ("wait_s", "abc"), ("duration_s", True),
                 ("attributes", "x"), ("text", 42), ("visit_id", {"id": 1}))
                if events else (("customer_id", 12345), ("csat", "abc"), ("nps", True), ("ratings", [5, 4]),
                                ("comment", 5), ("ratings", "good")))
        row[field] = value
        return row
    if kind is E.BAD_TIMESTAMP:
        row["occurred_at" if events else "submitted_at"] = rng.choice(BAD_TIMESTAMPS)
        return row
    if kind is E.OUT_OF_RANGE:
        if events:
            row[rng.choice(("wait_s", "duration_s"))] = -round(rng.uniform(1, 300), 1)
            return row
        options = [("csat", 0), ("csat", 6), ("csat", 4.5), ("nps", 11), ("ces", 8),
                   ("ratings", {"Q3": {"expectation": 6, "perception": 8}}), ("ratings", {"empathy": 0})]
        if not csv_file:
            options.append(("ratings", {"Q23": 5}))
        field, value = rng.choice(options)
        row[field] = value
        return row
    if kind is E.UNKNOWN_CHANNEL:
        row["channel"] = rng.choice(BAD_CHANNELS)
        return row
    if kind is E.UNKNOWN_OUTCOME:
        row["outcome"] = rng.choice(BAD_OUTCOMES)
        return row
    if kind is E.NO_FEEDBACK_SIGNAL:
        row.update(csat=None, nps=None, ces=None, ratings=None, comment=rng.choice((None, "   ")))
        return row
    raise ValueError(kind)


def _conflict(rng: random.Random, row: dict, dataset: str) -> dict:
    """Same id, one different (still valid) value."""
    row = dict(row)
    if dataset == "events":
        row["wait_s"] = round((row["wait_s"] or 0) + rng.randint(5, 120), 1)
    else:
        row["csat"] = (row["csat"] or 3) % 5 + 1
    return row


# --- writing -------------------------------------------------------------------------------------
def _open(path: Path):
    if path.suffix == ".gz":
        raw = gzip.GzipFile(path, "wb", compresslevel=6, mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "w", encoding="utf-8", newline="")


class _Dataset:
    """The files of one dataset, the rows of the current chunk per file, and the counts for the manifest."""

    def __init__(self, out_dir: Path, names, weights, header, cells, dataset, shape: Shape):
        self.names, self.cells, self.dataset, self.shape = names, cells, dataset, shape
        self.cumulative = list(itertools.accumulate(weights))[:-1]
        self.is_csv = [".csv" in n for n in names]
        self.handles = []
        for name in names:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            self.handles.append(_open(out_dir / name))
        self.writers = [csv.writer(h) if c else None for h, c in zip(self.handles, self.is_csv)]
        for writer in self.writers:
            if writer:
                writer.writerow(header)
        self.pending = [[] for _ in names]  # (sort key, row dict | raw line | raw cells)
        self.pool: list[tuple[dict, int, float]] = []  # good rows usable as originals of duplicates
        self.owed = {"exact": 0, "conflicting": 0}  # duplicates waiting for an original
        self.counts = {"rows": 0, "good_rows": 0, "exact_duplicates": 0, "conflicting_duplicates": 0}
        kinds = shape.event_bad_kinds if dataset == "events" else shape.feedback_bad_kinds
        self.quarantine = {k.value: 0 for k in (*kinds, E.CONFLICTING_DUPLICATE)}

    def pick_file(self, rng: random.Random) -> int:
        return bisect.bisect(self.cumulative, rng.random())

    def add_good(self, rng: random.Random, row: dict) -> None:
        index, key = self.pick_file(rng), rng.random()
        self.pending[index].append((key, row))
        self.pool.append((row, index, key))
        self.counts["good_rows"] += 1

    def add_bad(self, rng: random.Random, kind: ErrorKind, template: dict) -> None:
        index = self.pick_file(rng)
        self.pending[index].append((rng.random(), _bad_row(rng, kind, template, self.dataset, self.is_csv[index])))
        self.quarantine[kind.value] += 1

    def add_duplicate(self, rng: random.Random, conflicting: bool) -> None:
        row, index, key = rng.choice(self.pool)
        if conflicting:  # after the original in (file name, line) order: the original wins
            new_index = rng.randrange(index, len(self.names))
            new_key = rng.uniform(key, 1.0) if new_index == index else rng.random()
            self.pending[new_index].append((new_key, _conflict(rng, row, self.dataset)))
            self.counts["conflicting_duplicates"] += 1
            self.quarantine[E.CONFLICTING_DUPLICATE.value] += 1
        else:
            new_index = self.pick_file(rng)
            respace = rng if self.shape.respaced_duplicates else None
            payload = row if self.is_csv[new_index] else _jsonl(row, respace, self.shape.omit_nulls)
            self.pending[new_index].append((rng.random(), payload))
            self.counts["exact_duplicates"] += 1

    def flush(self) -> None:
        """Write the chunk, each file's rows in shuffled order; keep a few rows for later duplicates."""
        for index, rows in enumerate(self.pending):
            rows.sort(key=itemgetter(0))
            if self.is_csv[index]:
                self.writers[index].writerows(r if isinstance(r, list) else self.cells(r) for _, r in rows)
            else:
                self.handles[index].write("".join((r if isinstance(r, str) else _jsonl(r, None, self.shape.omit_nulls))
                                                  + "\n" for _, r in rows))
            self.counts["rows"] += len(rows)
            rows.clear()
        self.pool = [(row, index, 0.0) for row, index, _ in self.pool[-50:]]  # any later line is after them

    def close(self) -> None:
        for handle in self.handles:
            handle.close()

    def manifest(self) -> dict:
        return {**self.counts, "quarantine": dict(self.quarantine)}


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _share(total: int, done: int, upto: int, of: int) -> int:
    """Rows of `total` that fall in the slice (done, upto] of `of`, so that the slices sum to `total`."""
    return total * upto // of - total * done // of


def _inject(s: _Sample, data: _Dataset, visits: list[dict], targets: dict, done: int, upto: int, of: int) -> None:
    """Add this chunk's share of bad rows (built from fresh rows of its visits) and duplicates to `data`.

    Duplicates need originals: those owed while there are none yet wait for a later chunk.
    """
    rng = s.rng
    for kind, total in targets.items():
        count = _share(total, done, upto, of)
        if kind in ("exact", "conflicting"):
            data.owed[kind] += count
            while data.owed[kind] and data.pool:
                data.add_duplicate(rng, kind == "conflicting")
                data.owed[kind] -= 1
            continue
        for _ in range(count):
            if data.dataset == "events":
                template = copy.deepcopy(rng.choice(visits)["events"][0])
                template.pop("identifiers", None)
                template["event_id"] = s.next_id("event", "e-{:08d}")
                if template["text"] is not None:  # no PII in bad rows
                    template["text"] = s.text(3, "neutral", pii=False)[0]
            else:
                template = s.feedback(rng.choice(visits), pii=False)
                del template["_meta"]
                template.pop("identifiers", None)
            data.add_bad(rng, kind, template)


def generate_sample(out_dir: Path, events: int, *, playbook: str = "bank_branch", seed: int = 7,
                    feedback_ratio: float = 0.1, bad_share: float | None = None, duplicate_share: float | None = None,
                    start: date = date(2026, 10, 1), days: int = 7, shape: str = "mixed",
                    cross_channel_share: float = 0.0) -> dict:
    """Write sample touchpoint and feedback files under `out_dir` and return (and write) the manifest.

    `events` is the exact number of data rows in the touchpoint files, bad rows and duplicates included.
    `shape` is a name in `SHAPES`; `bad_share` and `duplicate_share` default to the shape's.
    `cross_channel_share`: that share of customers are persons seen by 2-3 channel systems under their own customer
    ids, linked by identifiers (the truth in `identity_truth.csv`); then 10% of the other customers' first branch
    visits also name one shared lobby tablet, which must link nobody.
    """
    out_dir = Path(out_dir)
    form = SHAPES[shape]
    bad_share = form.bad_share if bad_share is None else bad_share
    duplicate_share = form.duplicate_share if duplicate_share is None else duplicate_share
    pb = load_playbook(playbook)
    n_bad, n_dup = round(events * bad_share), round(events * duplicate_share)
    n_good = events - n_bad - n_dup
    if n_good <= 0:
        raise ValueError(f"{events} events leave no good rows with bad_share={bad_share}, duplicate_share={duplicate_share}")
    fb_total = round(events * feedback_ratio)
    fb_bad, fb_dup = round(fb_total * bad_share), round(fb_total * duplicate_share)
    fb_good = fb_total - fb_bad - fb_dup
    if fb_good <= 0:
        fb_bad, fb_dup, fb_good = fb_total, 0, 0
    targets = {
        "events": dict(zip(form.event_bad_kinds, _split(n_bad, len(form.event_bad_kinds)))),
        "feedback": dict(zip(form.feedback_bad_kinds, _split(fb_bad, len(form.feedback_bad_kinds)))),
    }
    for dataset, dup in (("events", n_dup), ("feedback", fb_dup)):
        conflicting = int(dup * form.conflicting_share)
        targets[dataset].update({"exact": dup - conflicting, "conflicting": conflicting})

    s = _Sample(pb, seed, start, days, form, cross_channel_share)
    rng = s.rng
    if cross_channel_share:
        ev = _Dataset(out_dir, form.event_files, form.event_file_weights, EVENT_COLUMNS + IDENTIFIER_COLUMNS,
                      _event_identifier_cells, "events", form)
        fb = _Dataset(out_dir, form.feedback_files, form.feedback_file_weights, FEEDBACK_COLUMNS + IDENTIFIER_COLUMNS[:1],
                      _feedback_identifier_cells, "feedback", form)
    else:
        ev = _Dataset(out_dir, form.event_files, form.event_file_weights, EVENT_COLUMNS, _event_cells, "events", form)
        fb = _Dataset(out_dir, form.feedback_files, form.feedback_file_weights, FEEDBACK_COLUMNS, _feedback_cells,
                      "feedback", form)
    done = 0
    blank_line = form.blank_line
    try:
        while done < n_good:
            visits: list[dict] = []
            chunk = 0
            while chunk < CHUNK_EVENTS and done + chunk < n_good:
                for visit in s.customer(n_good - done - chunk):
                    visits.append(visit)
                    chunk += len(visit["events"])
                    for row in visit["events"]:
                        ev.add_good(rng, row)
            upto = done + chunk
            for _ in range(_share(fb_good, done, upto, n_good)):
                row = s.feedback(rng.choice(visits) if rng.random() >= 0.05 else None)
                for key, flag in row.pop("_meta").items():
                    s.fb_stats[key] += flag
                fb.add_good(rng, row)
            for data in (ev, fb):
                _inject(s, data, visits, targets[data.dataset], done, upto, n_good)
            ev.flush()
            if blank_line:  # a blank line is not a row: readers must skip it
                ev.handles[1].write("\n")
                blank_line = False
            fb.flush()
            done = upto
    finally:
        ev.close()
        fb.close()
    assert not any(ev.owed.values()) and not any(fb.owed.values()), (ev.owed, fb.owed)
    manifest = {
        "seed": seed,
        "shape": shape,
        "playbook": pb.name,
        "events": {**ev.manifest(), **s.stats},
        "feedback": {**fb.manifest(), **s.fb_stats},
        "pii_strings": sorted(set(s.pii)),
        "driver_weights": DRIVER_WEIGHTS,
        "files": sorted((*form.event_files, *form.feedback_files)),
    }
    if cross_channel_share:
        persons = {person for _, person in s.truth}
        manifest["identity"] = {"cross_channel_persons": len(persons), "their_customer_ids": len(set(s.truth)),
                                "shared_device_customers": len(s.shared_device_customers),
                                "truth": "identity_truth.csv"}
        with open(out_dir / "identity_truth.csv", "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows([("customer_id", "person"), *sorted(set(s.truth))])
    assert manifest["events"]["rows"] == events
    (out_dir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    return manifest

