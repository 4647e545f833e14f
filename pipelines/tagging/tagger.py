"""The Tagger: a playbook compiled once (per Beam worker) and applied to Arrow batches."""
from __future__ import annotations

import pyarrow as pa

from pipelines.contract import MOT_STEPS
from pipelines.playbook import Playbook
from pipelines.tagging.lexicon import Lexicon
from pipelines.tagging.rules import tag, wait_bucket
from pipelines.tagging.types import MomentTags
from schemas.tables import EVIDENCE, PZB_TAG


def _clean_text(value: str | None) -> str | None:
    return value if value and value.strip() else None


class Tagger:
    """A playbook compiled for tagging; build once per worker and reuse across batches."""

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.lexicon = Lexicon(playbook)
        self._seen: dict[tuple, MomentTags] = {}  # (touchpoint, text, wait bucket) -> tags

    def tag_moment(self, touchpoint: str | None, text: str | None, wait_s: float | None) -> MomentTags:
        """Tags of one touchpoint event."""
        return self._moment(touchpoint, _clean_text(text), wait_bucket(wait_s, self.playbook))

    def tag_comment(self, text: str | None) -> MomentTags:
        """PZB tags and polarity of a feedback comment (no MOT step, no ABC facet)."""
        return tag(self.lexicon, None, _clean_text(text), None, "comment", moment=False)

    def _moment(self, touchpoint: str | None, text: str | None, bucket: str | None) -> MomentTags:
        # remembered across batches (stock phrases and rows without text repeat); bounded, cleared when full
        key = (touchpoint, text, bucket)
        cached = self._seen.get(key)
        if cached is None:
            if len(self._seen) >= 65_536:
                self._seen.clear()
            cached = self._seen[key] = tag(self.lexicon, touchpoint, text, bucket, "text", moment=True)
        return cached

    def tag_events(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns for an events batch (reads touchpoint, text, wait_s; a missing column counts as null)."""
        n = table.num_rows
        touchpoints, texts, waits = (table.column(c).to_pylist() if c in table.column_names else [None] * n
                                     for c in ("touchpoint", "text", "wait_s"))
        keys = [(tp, _clean_text(tx), wait_bucket(w, self.playbook)) for tp, tx, w in zip(touchpoints, texts, waits)]
        unique, index = _dedupe(keys)
        tags = [self._moment(*key) for key in unique]
        take = pa.array(index, pa.int32())
        steps = [t.mot_step for t in tags]
        return {
            "mot_step": pa.array(steps, pa.int8()).take(take),
            "mot_step_name": pa.array([MOT_STEPS[s][0] if s else None for s in steps], pa.string()).take(take),
            "mot_step_source": pa.array([t.mot_step_source for t in tags], pa.string()).take(take),
            "abc_facet": pa.array([t.abc_facet for t in tags], pa.string()).take(take),
            **_common_columns(tags, take),
        }

    def tag_feedback(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns (pzb_tags, polarity, evidence) for a feedback batch (reads comment)."""
        comments = table.column("comment").to_pylist() if "comment" in table.column_names else [None] * table.num_rows
        unique, index = _dedupe([_clean_text(c) for c in comments])
        tags = [self.tag_comment(c) for c in unique]
        return _common_columns(tags, pa.array(index, pa.int32()))


def _dedupe(keys: list) -> tuple[list, list[int]]:
    """Distinct keys in first-seen order and, per row, the index of its key."""
    positions: dict = {}
    index = [positions.setdefault(k, len(positions)) for k in keys]
    return list(positions), index


def _common_columns(tags: list[MomentTags], take: pa.Array) -> dict[str, pa.Array]:
    return {
        "pzb_tags": pa.array([t.pzb_tags for t in tags], pa.list_(PZB_TAG)).take(take),
        "polarity": pa.array([t.polarity for t in tags], pa.string()).take(take),
        "evidence": pa.array([t.evidence for t in tags], pa.list_(EVIDENCE)).take(take),
    }
