"""Thresholds and settings of the quality checks: package defaults < playbook `quality:` < command line.

    >>> load_settings({"quarantine_share": 0.1}, ["unmapped_touchpoint_share=0.2"])   # doctest: +SKIP
"""
from __future__ import annotations

from datetime import datetime, timezone
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.pii import DEFAULT_PHONE_REGIONS

DEFAULTS_FILE = "thresholds.yaml"


class QualitySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unmapped_touchpoint_share: float = Field(ge=0, le=1)
    untagged_event_share: float = Field(ge=0, le=1)
    quarantine_share: float = Field(ge=0, le=1)
    feedback_linked_share: float = Field(ge=0, le=1)
    window_start: datetime | None = None
    window_end: datetime | None = None
    batch_rows: int = Field(gt=0)
    row_checks_max_rows: int = Field(ge=0)
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS  # the unmasked-PII scan's, from the playbook

    @field_validator("window_start", "window_end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Naive window bounds are UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def default_settings() -> dict:
    """The package defaults from thresholds.yaml."""
    return yaml.safe_load((resources.files("pipelines.quality") / DEFAULTS_FILE).read_text(encoding="utf-8"))


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`; raises ValueError on an item without `=`."""
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--threshold {item!r} is not NAME=VALUE")
        pairs[name.strip()] = value.strip()
    return pairs


def load_settings(playbook_quality: dict | None = None, overrides: list[str] = (),
                  phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> QualitySettings:
    """Defaults, then a playbook's `quality:` section, then `NAME=VALUE` overrides; ValueError if invalid.
    `phone_regions` (the playbook's, defaults included) are the national formats the unmasked-PII check knows."""
    return QualitySettings.model_validate(default_settings() | (playbook_quality or {}) | parse_assignments(list(overrides))
                                          | {"phone_regions": phone_regions})
