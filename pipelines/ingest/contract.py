"""Input contract v1 and the shared vocabulary of motpipe (MOT steps, PZB dimensions, error kinds).

Everything that names a field, a code or a category lives here, so that validation, tagging,
the sample generator and the table schemas agree by construction.
"""
from __future__ import annotations

from enum import Enum

CONTRACT_VERSION = "1"

# --- touchpoint events -------------------------------------------------------------------
EVENT_ID_FIELD = "event_id"
EVENT_REQUIRED = ("event_id", "occurred_at", "customer_id", "channel", "touchpoint")
EVENT_OPTIONAL = ("visit_id", "staff_id", "location_id", "duration_s", "wait_s", "text", "outcome", "attributes",
                  "identifiers")
EVENT_FIELDS = EVENT_REQUIRED + EVENT_OPTIONAL

DEFAULT_CHANNELS = (
    "branch", "store", "phone", "app", "web", "chat", "email", "kiosk", "airport", "onboard", "other",
)
OUTCOMES = ("resolved", "unresolved", "escalated", "abandoned")

# --- post-visit feedback -----------------------------------------------------------------
FEEDBACK_ID_FIELD = "feedback_id"
FEEDBACK_REQUIRED = ("feedback_id", "submitted_at", "customer_id")
FEEDBACK_OPTIONAL = ("visit_id", "touchpoint", "channel", "csat", "nps", "ces", "comment", "ratings", "identifiers")
IDENTIFIER_TYPE_PATTERN = r"[a-z][a-z0-9_]{0,39}"  # identifier types: lower-case names (customer_id is the row's own)
FEEDBACK_FIELDS = FEEDBACK_REQUIRED + FEEDBACK_OPTIONAL
# at least one of these must be present on a feedback row
FEEDBACK_SIGNALS = ("csat", "nps", "ces", "ratings", "comment")
SCORE_RANGES = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
RATING_RANGE = (1, 7)

# --- MOT five-step behaviour model ------------------------------------------------------
MOT_STEPS = {
    1: ("set_the_tone", "奠定基调"),
    2: ("diagnose", "诊断问题"),
    3: ("resolve", "解决问题"),
    4: ("review", "总结回顾"),
    5: ("follow_up", "完善跟进"),
}

# --- PZB / SERVQUAL ------------------------------------------------------------------------
# in PZB's order of importance
DIMENSIONS = ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
POLARITIES = ("positive", "negative", "neutral")
ABC_FACETS = ("appearance", "behaviour", "communication")
# SERVQUAL 22-item questionnaire: Q1-Q4 tangibles, Q5-Q9 reliability, Q10-Q13 responsiveness,
# Q14-Q17 assurance, Q18-Q22 empathy.
SERVQUAL_ITEMS = {
    **{f"Q{i}": "tangibles" for i in range(1, 5)},
    **{f"Q{i}": "reliability" for i in range(5, 10)},
    **{f"Q{i}": "responsiveness" for i in range(10, 14)},
    **{f"Q{i}": "assurance" for i in range(14, 18)},
    **{f"Q{i}": "empathy" for i in range(18, 23)},
}


class ErrorKind(str, Enum):
    """Why a row went to quarantine. Stored as the string value in `quarantine.error_kind`."""

    UNPARSEABLE_LINE = "unparseable_line"
    MISSING_REQUIRED_FIELD = "missing_required_field"
    WRONG_TYPE = "wrong_type"
    BAD_TIMESTAMP = "bad_timestamp"
    OUT_OF_RANGE = "out_of_range"
    UNKNOWN_CHANNEL = "unknown_channel"
    UNKNOWN_OUTCOME = "unknown_outcome"
    NO_FEEDBACK_SIGNAL = "no_feedback_signal"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    UNMAPPED_VALUE = "unmapped_value"  # a source code that the source file's value map does not name


DATASETS = ("events", "feedback")
