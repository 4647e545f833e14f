"""The Tagger: a playbook compiled once (per Beam worker) and applied to Arrow batches."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.ingest.contract import MOT_STEPS
from pipelines.playbook import Playbook
from pipelines.tagging.learned import load_models, with_dimension_model, with_mot_model
from pipelines.tagging.lexicon import Lexicon
from pipelines.tagging.rules import analyse, tag, wait_bucket
from pipelines.tagging.types import MomentTags, RecentCache
from schemas.tables import EVIDENCE, PZB_TAG


def _clean_text(value: str | None) -> str | None:
    return value if value and value.strip() else None


# Tags of distinct moments a worker keeps: ~1.8 KB each, their PZB tags and evidence rows shared (`_shared`; as
# separate dicts an entry took ~5 KB, and 65,536 of them ~400 MB per worker at 10M events). Half as many entries
# changed the peak of a 10M or 30M run by less than its run-to-run spread and made 30M 4% slower (docs/performance.md).
TAG_CACHE_ENTRIES = 65_536
# Cue analyses of distinct texts a worker keeps (~6 KB each): a text comes with several touchpoints and wait buckets
# (1M production events: 6,981 texts in 28,720 moments), and its analysis (jieba, the automatons) is most of the work
# of tagging a moment.
TEXT_CACHE_ENTRIES = 4_096
SHARED_ROWS = 65_536  # distinct PZB tag and evidence rows held for sharing (1,075 in 1M production events)


class Tagger:
    """A playbook compiled for tagging; build once per worker (`shared_tagger`) and reuse across batches."""

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.lexicon = Lexicon(playbook)
        self.dimension_models = load_models(playbook, "dimensions")  # lang -> (model, settings); read once per process
        self.mot_models = load_models(playbook, "mot_steps")
        self._seen: RecentCache[MomentTags] = RecentCache(TAG_CACHE_ENTRIES)  # (touchpoint, text, bucket) or ("comment", text)
        self._analyses: RecentCache[tuple] = RecentCache(TEXT_CACHE_ENTRIES)
        self._rows: RecentCache[dict] = RecentCache(SHARED_ROWS)  # pzb tag / evidence row values -> one dict

    def tag_moment(self, touchpoint: str | None, text: str | None, wait_s: float | None,
                   use_model: bool = True) -> MomentTags:
        """Tags of one touchpoint event; `use_model=False`: the rules alone."""
        text, bucket = _clean_text(text), wait_bucket(wait_s, self.playbook)
        if not use_model:
            return tag(self.lexicon, touchpoint, text, bucket, "text", moment=True)
        return self._moment(touchpoint, text, bucket)

    def tag_comment(self, text: str | None, use_model: bool = True) -> MomentTags:
        """PZB tags and polarity of a feedback comment (no MOT step, no ABC facet); `use_model=False`: the rules
        alone."""
        text = _clean_text(text)
        tags = tag(self.lexicon, None, text, None, "comment", moment=False)
        return with_dimension_model(tags, text, "comment", self.dimension_models) if use_model else tags

    def _moment(self, touchpoint: str | None, text: str | None, bucket: str | None) -> MomentTags:
        return self._remember((touchpoint, text, bucket), lambda: self._joined(touchpoint, text, bucket))

    def _analysis(self, text: str) -> tuple:
        return self._analyses.get(text, lambda: analyse(self.lexicon, text))

    def _joined(self, touchpoint: str | None, text: str | None, bucket: str | None) -> MomentTags:
        tags = with_dimension_model(tag(self.lexicon, touchpoint, text, bucket, "text", moment=True,
                                        analysis=self._analysis), text, "text", self.dimension_models)
        if self.mot_models and not self.playbook.mot_text.customer_speech(touchpoint, self.playbook.touchpoints.get(touchpoint)):
            tags = with_mot_model(tags, text, "text", self.mot_models)
        return tags

    def _comment(self, text: str | None) -> MomentTags:
        return self._remember(("comment", text), lambda: self.tag_comment(text))

    def _remember(self, key: tuple, compute) -> MomentTags:
        """Tags remembered across batches (stock phrases and rows without text repeat): the TAG_CACHE_ENTRIES
        used last, so one-off texts (a customer's own number) do not push out the phrases that repeat."""
        return self._seen.get(key, lambda: self._shared(compute()))

    def _shared(self, tags: MomentTags) -> MomentTags:
        """The tags with each PZB tag and evidence row replaced by an equal one already held: the moments of one
        text, or of one touchpoint, repeat the same rows, and a cached moment then costs its lists, not their rows."""
        def share(row: dict) -> dict:
            return self._rows.get(tuple(row.values()), lambda: row)

        return replace(tags, pzb_tags=[share(t) for t in tags.pzb_tags], evidence=[share(e) for e in tags.evidence])

    def tag_events(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns for an events batch (reads touchpoint, text, wait_s; a missing column counts as null).
        Each distinct (touchpoint, text, wait bucket) is tagged once."""
        (touchpoints, tp_index), (texts, text_index), (buckets, bucket_index) = (
            _distinct(_column(table, "touchpoint"), lambda v: v), _distinct(_column(table, "text"), _clean_text),
            _distinct(_column(table, "wait_s"), lambda w: wait_bucket(w, self.playbook)))
        combined = (tp_index * len(texts) + text_index) * len(buckets) + bucket_index
        codes, index = np.unique(combined, return_inverse=True)
        tp_code, rest = np.divmod(codes, len(texts) * len(buckets))
        text_code, bucket_code = np.divmod(rest, len(buckets))
        tags = [self._moment(touchpoints[a], texts[b], buckets[c]) for a, b, c in zip(tp_code, text_code, bucket_code)]
        take = pa.array(index)
        steps = [t.mot_step for t in tags]
        return {
            "mot_step": pa.array(steps, pa.int8()).take(take),
            "mot_step_name": pa.array([MOT_STEPS[s][0] if s else None for s in steps], pa.string()).take(take),
            "mot_step_source": pa.array([t.mot_step_source for t in tags], pa.string()).take(take),
            "mot_steps": pa.array([t.mot_steps for t in tags], pa.list_(pa.int8())).take(take),
            "abc_facet": pa.array([t.abc_facet for t in tags], pa.string()).take(take),
            **_common_columns(tags, take),
        }

    def tag_feedback(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns (pzb_tags, polarity, evidence) for a feedback batch (reads comment); each distinct comment
        is tagged once."""
        comments, index = _distinct(_column(table, "comment"), _clean_text)
        return _common_columns([self._comment(c) for c in comments], pa.array(index))


def _column(table: pa.Table, name: str) -> pa.Array:
    """A column as one array; all nulls if the table has none of that name."""
    return table.column(name).combine_chunks() if name in table.column_names else pa.nulls(table.num_rows)


def _distinct(values: pa.Array, normalise) -> tuple[list, np.ndarray]:
    """(distinct values after `normalise`, per row the index of its value among them); `normalise` runs once per
    distinct value of the array (null included)."""
    encoded = pc.dictionary_encode(values)
    raw = [*encoded.dictionary.to_pylist(), None]
    unique, index = _dedupe([normalise(v) for v in raw])
    return unique, np.asarray(index, dtype=np.int64)[pc.fill_null(encoded.indices, len(raw) - 1).to_numpy()]


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


_TAGGERS: RecentCache[Tagger] = RecentCache(4)


def shared_tagger(playbook: Playbook) -> Tagger:
    """The process's Tagger of a playbook with this content: a Beam worker's events and feedback steps share one
    (its lexicon, jieba dictionary copy and caches: ~1.4 s of CPU and ~40 MB to build)."""
    return _TAGGERS.get(playbook.model_dump_json(), lambda: Tagger(playbook))
