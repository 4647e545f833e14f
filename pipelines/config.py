"""Settings of one `motpipe run`, validated once and shipped to the Beam workers."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

PSEUDONYMIZE_KEY_ENV = "MOTPIPE_PSEUDONYMIZE_KEY"  # read by the CLI


def new_run_id(now: datetime | None = None) -> str:
    """`20261123T101500Z-3f9a1c`: sortable by start time, unique across concurrent runs."""
    now = now or datetime.now(timezone.utc)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    touchpoints: list[str] = Field(min_length=1)
    feedback: list[str] = Field(default_factory=list)
    out: str
    restricted_out: str | None = None  # unmasked quarantine for replay; default <out>/_restricted
    playbook: str = "bank_branch"
    gap_minutes: float = Field(default=30.0, gt=0)
    link_window_days: float = Field(default=7.0, ge=0)
    timezone: str = "UTC"
    pseudonymize_key: str | None = None
    run_id: str = Field(default_factory=new_run_id)
    buckets: int = Field(default=16, ge=1, le=4096)  # hash buckets for the dedup and stitching shuffles
    batch_rows: int = Field(default=50_000, ge=1)  # input rows per Arrow batch
    max_rows_per_file: int = Field(default=1_000_000, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Asia/Shanghai)") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def restricted_dir(self) -> str:
        return self.restricted_out or f"{self.out.rstrip('/')}/_restricted"

    @property
    def key_bytes(self) -> bytes | None:
        """The key of the customer_id pseudonymisation (None: ids are kept as given)."""
        return self.pseudonymize_key.encode("utf-8") if self.pseudonymize_key else None
