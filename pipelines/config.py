"""Settings of one `motpipe run`, validated once and shipped to the Beam workers."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PSEUDONYMIZE_KEY_ENV = "MOTPIPE_PSEUDONYMIZE_KEY"  # read by the CLI


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
    run_id: str | None = None  # default: derived from the window, the inputs and the settings (pipeline.prepare)
    start: date | None = None  # first and last day (local dates) of the window; both or neither
    end: date | None = None
    lookback_days: int = Field(default=3, ge=0)  # a windowed run also rebuilds this many days before `start`
    buckets: int | None = Field(default=None, ge=1, le=4096)  # hash buckets of the shuffles; None: by input size
    batch_rows: int = Field(default=50_000, ge=1)  # input rows per Arrow batch
    part_bytes: int = Field(default=64 << 20, ge=1)  # local uncompressed JSONL files are read in parts of this size
    row_group_rows: int = Field(default=65_536, ge=1)  # rows per Parquet row group (a writer holds one in memory)
    # Beam's filesystem options of the run (S3 endpoint, credentials: storage.filesystem_options), for the
    # workers; never dumped, so they reach neither the run id nor the run summary
    filesystem_options: dict = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as UTC or Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _window(self) -> "RunConfig":
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end of the window (or --date for one day)")
        if self.start is not None and self.end < self.start:
            raise ValueError(f"the window ends ({self.end}) before it starts ({self.start})")
        return self

    @property
    def window_dates(self) -> list[str] | None:
        """The `dt` partitions a windowed run rebuilds: start - lookback_days .. end; None without a window."""
        if self.start is None:
            return None
        first = self.start - timedelta(days=self.lookback_days)
        return [(first + timedelta(days=i)).isoformat() for i in range((self.end - first).days + 1)]

    @property
    def fallback_date(self) -> str:
        """Partition of quarantined rows whose own timestamp is unreadable: the window's end, else today."""
        return (self.end or datetime.now(self.tz).date()).isoformat()

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
