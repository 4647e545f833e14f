"""Settings of one `motpipe run`, validated once and shipped to the Beam workers."""
from __future__ import annotations

import hashlib
import os
import re
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipelines.ingest.sources.spec import Source, known_timezone

PSEUDONYMIZE_KEY_ENV = "MOTPIPE_PSEUDONYMIZE_KEY"  # read by the CLI
UNDATED = "__HIVE_DEFAULT_PARTITION__"  # the `dt` partition of rows without a readable date (Hive's null partition)
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a run id names files and directories: no separator, no `..`
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(9998, 12, 31)  # window days (a day's partition must stay a 4-digit year)


def safe_run_id(value: str) -> str:
    """`value` if it can name a run's files and directories (it is joined to paths), else ValueError.

    >>> safe_run_id("2026-10-01-3f9a1c2b7d10")
    '2026-10-01-3f9a1c2b7d10'
    """
    if not RUN_ID.fullmatch(value) or ".." in value:
        raise ValueError(f"run id {value!r} must be 1-128 letters, digits, '.', '_' or '-', start with a letter or "
                         "digit and hold no '..' (it names the run's files)")
    return value
IDENTITY_KEY_ENV = "MOTPIPE_IDENTITY_KEY"
IDENTIFIER_KEY_FILE = ("_keys", "identifiers.key")  # under the restricted directory: the identifier hash key (hex)


def restricted_dir(out: str, restricted_out: str | None) -> str:
    """Where the restricted tables of output `out` go: `OUT/_restricted`, or with `restricted_out` its own
    subdirectory `RESTRICTED/<out's name>-<12 hex of out's absolute path>`, so that runs of different outputs
    sharing one restricted location never replace each other's rows (or staging)."""
    if restricted_out is None:
        return f"{out.rstrip('/')}/_restricted"
    out = out.rstrip("/") if "://" in out else os.path.abspath(out)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", out.rsplit("/", 1)[-1]).lstrip(".") or "out"
    return f"{restricted_out.rstrip('/')}/{name}-{hashlib.sha256(out.encode('utf-8')).hexdigest()[:12]}"


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    touchpoints: list[str] = Field(default_factory=list)
    feedback: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)  # native exports described by source files
    out: str
    restricted_out: str | None = None  # unmasked quarantine for replay; default <out>/_restricted
    playbook: str = "bank_branch"
    gap_minutes: float = Field(default=30.0, gt=0)
    link_window_days: float = Field(default=7.0, ge=0)
    timezone: str = "UTC"
    pseudonymize_key: str | None = None
    # hex; set by pipeline.run from the output's key file when there is no pseudonymize_key; secret: never dumped
    identifier_key: str | None = Field(default=None, exclude=True, repr=False)
    identity_key: str | None = None  # key of the identity graph's hashes; default: pseudonymize_key, else the output's
    run_id: str | None = None  # default: derived from the window, the inputs and the settings (pipeline.prepare)
    allow_unlocked: bool = False  # run on an output that cannot be locked (gs://, azfs://, hdfs://): lock.py
    start: date | None = None  # first and last day (local dates) of the window; both or neither
    end: date | None = None
    lookback_days: int = Field(default=3, ge=0)  # a windowed run also rebuilds this many days before `start`
    buckets: int | None = Field(default=None, ge=1, le=4096)  # hash buckets of the shuffles; None: by input size
    batch_rows: int = Field(default=50_000, ge=1)  # input rows per Arrow batch
    part_bytes: int = Field(default=64 << 20, ge=1)  # local uncompressed JSONL files are read in parts of at most this size (pipeline.part_size)
    row_group_rows: int = Field(default=65_536, ge=1)  # rows per Parquet row group (a writer holds one in memory)
    # Beam's filesystem options of the run (S3 endpoint, credentials: storage.filesystem_options), for the
    # workers; never dumped, so they reach neither the run id nor the run summary
    filesystem_options: dict = Field(default_factory=dict, exclude=True, repr=False)

    _timezone = field_validator("timezone")(lambda cls, v: known_timezone(v))

    @field_validator("run_id")
    @classmethod
    def _safe_run_id(cls, value: str | None) -> str | None:
        return None if value is None else safe_run_id(value)

    @field_validator("start", "end")
    @classmethod
    def _representable_day(cls, value: date | None) -> date | None:
        if value is not None and not FIRST_DATE <= value <= LAST_DATE:
            raise ValueError(f"{value} is outside the supported days {FIRST_DATE} .. {LAST_DATE}")
        return value

    @model_validator(mode="after")
    def _some_events(self) -> "RunConfig":
        if not self.touchpoints and not any(s.dataset == "events" for s in self.sources):
            raise ValueError("give touchpoint inputs (--touchpoints) or an events source (--source)")
        return self

    @model_validator(mode="after")
    def _window(self) -> "RunConfig":
        if (self.start is None) != (self.end is None):
            raise ValueError("give both start and end of the window (or --date for one day)")
        if self.start is not None and self.end < self.start:
            raise ValueError(f"the window ends ({self.end}) before it starts ({self.start})")
        if self.start is not None and (self.start - FIRST_DATE).days < self.lookback_days:
            raise ValueError(f"{self.lookback_days} lookback days before {self.start} reach before {FIRST_DATE}")
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
        """Partition of quarantined rows whose own timestamp is unreadable: the undated one (output.UNDATED, read
        as a null `dt`), whatever the run's window or day, so a rerun replaces them instead of adding copies."""
        return UNDATED

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def restricted_dir(self) -> str:
        return restricted_dir(self.out, self.restricted_out)

    @property
    def configured_identity_key(self) -> bytes | None:
        """The identity key given with the run: `identity_key`, else `pseudonymize_key` (None: the output's own)."""
        key = self.identity_key or self.pseudonymize_key
        return key.encode("utf-8") if key else None

    @property
    def identity_key_bytes(self) -> bytes:
        """The key of the identity graph's hashes (docs/identity.md): the configured one, else the output's secret
        identifier key (`pipeline.with_identifier_key`), never a key anyone could know."""
        if self.configured_identity_key:
            return self.configured_identity_key
        if self.identifier_key:
            return bytes.fromhex(self.identifier_key)
        raise ValueError("no identity key: set identity_key or pseudonymize_key, or load the output's identifier key "
                         "(pipeline.with_identifier_key)")

    @property
    def key_bytes(self) -> bytes | None:
        """The key of the customer_id pseudonymisation (None: ids are kept as given)."""
        return self.pseudonymize_key.encode("utf-8") if self.pseudonymize_key else None

    @property
    def identifier_key_bytes(self) -> bytes | None:
        """The key of the hash that replaces identifiers holding PII: the pseudonymisation key, else the output's."""
        return self.key_bytes or (bytes.fromhex(self.identifier_key) if self.identifier_key else None)
