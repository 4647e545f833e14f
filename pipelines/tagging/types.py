"""The result type of the tagger."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MomentTags:
    """Tags of one event or comment; `evidence` rows follow schemas.tables.EVIDENCE."""

    mot_step: int | None = None
    mot_step_source: str | None = None
    abc_facet: str | None = None
    pzb_tags: list[dict] = field(default_factory=list)
    polarity: str = "neutral"
    evidence: list[dict] = field(default_factory=list)
    mot_steps: list[int] = field(default_factory=list)  # every step performed (mot_step is the primary one)
