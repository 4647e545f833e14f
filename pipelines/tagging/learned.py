"""The learned layer beside the rules: the package's models joined with the rules' tags of one text.

Dimensions (`with_dimension_model`): tags the rules are sure of (a polar cue, an aspect with an opinion word, a
signal, a touchpoint) stay; a dimension the rules missed is added when the model's probability reaches the
playbook's threshold, with the polarity the model scores highest; a weak rule tag (a bare mention, neutral) is
dropped when the model scores its dimension below `veto_below`. A model tag's evidence rows carry the rule
`model:dimensions:<lang>:p=<probability>:<feature>` and the span of each top feature in the text.
"""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipelines.ingest.contract import DIMENSIONS
from pipelines.playbook import ModelLang, Playbook
from pipelines.tagging.lang import detect
from pipelines.tagging.linear import LinearTextModel
from pipelines.tagging.types import MomentTags

MODELS_DIR = Path(__file__).parent / "models"
TOP_FEATURES = 3


def model_dir(task: str, lang: str) -> Path:
    return MODELS_DIR / f"{task}-{lang}"


@lru_cache(maxsize=None)
def _load(directory: Path) -> LinearTextModel:
    return LinearTextModel.load(directory)


def load_models(playbook: Playbook, task: str) -> dict[str, tuple[LinearTextModel, ModelLang]]:
    """lang -> (model, settings) for the languages the playbook enables and the package has a model for;
    each model directory is read once per process."""
    settings = getattr(playbook.model, task)
    if not settings.enabled:
        return {}
    out = {}
    for lang in ("zh", "en"):
        lang_settings = getattr(settings, lang)
        directory = model_dir(task, lang)
        if lang_settings.enabled and (directory / "model.json").is_file():
            out[lang] = (_load(directory), lang_settings)
    return out


def rule_features(tags: MomentTags) -> list[tuple[str, int | None, int | None]]:
    """The rules' text hits as model features: `rule:<tag>` at the evidence span (touchpoint and wait
    evidence are left out, so a model trained on plain text sees the same features on events)."""
    return [(f"rule:{e['tag']}", e["start"], e["end"]) for e in tags.evidence if e["start"] is not None]


def _weak(evidence: list[dict], dim: str) -> bool:
    """True when the rules' only text evidence for `dim` is a bare mention (a neutral cue, no opinion word)."""
    rows = [e for e in evidence if e["tag"].split(":")[0] == dim]
    return bool(rows) and all(e["tag"].endswith(":neutral") and e["rule"].startswith("cue:") and "+op:" not in e["rule"]
                              for e in rows)


def with_dimension_model(tags: MomentTags, text: str | None, text_field: str,
                         models: dict[str, tuple[LinearTextModel, ModelLang]]) -> MomentTags:
    """The rules' tags of a text joined with the dimension models of its languages (see the module docstring)."""
    if not text or not models:
        return tags
    has = dict(zip(("zh", "en"), detect(text)))
    pzb = [dict(t) for t in tags.pzb_tags]
    evidence = list(tags.evidence)
    features = rule_features(tags)
    for lang, (model, settings) in models.items():
        if not has[lang]:
            continue
        proba = 1.0 / (1.0 + np.exp(-model.decision(text, features)))
        score = dict(zip(model.labels, proba.tolist()))
        for dim in DIMENSIONS:
            if dim not in score:
                continue
            # a touchpoint's default dimension (neutral, no text) leaves the text to the model
            ruled = any(e["tag"].split(":")[0] == dim and (e["start"] is not None or not e["tag"].endswith(":neutral"))
                        for e in evidence)
            if ruled and settings.veto_below is not None and score[dim] < settings.veto_below and _weak(evidence, dim):
                pzb = [t for t in pzb if t["dimension"] != dim]
                evidence = [e for e in evidence if e["tag"].split(":")[0] != dim]
            elif not ruled and score[dim] >= settings.threshold_of(dim):
                polarity = max(("negative", "positive", "neutral"), key=lambda p: score.get(f"{dim}:{p}", -1.0))
                tag = f"{dim}:{polarity}"
                if polarity != "neutral":
                    pzb = [t for t in pzb if t["dimension"] != dim]
                if {"dimension": dim, "polarity": polarity} not in pzb:
                    pzb.append({"dimension": dim, "polarity": polarity})
                shown = model.explain(text, features, top=TOP_FEATURES, labels=[dim])[dim]["features"]
                rule = f"model:dimensions:{lang}:p={score[dim]:.3f}"
                evidence += [{"tag": tag, "rule": f"{rule}:{f['feature']}", "field": text_field, "span": f["span"],
                              "start": f["start"], "end": f["end"]} for f in shown] or [
                    {"tag": tag, "rule": rule, "field": text_field, "span": None, "start": None, "end": None}]
    if pzb == tags.pzb_tags and len(evidence) == len(tags.evidence):
        return tags
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    pzb.sort(key=lambda t: (order[t["dimension"]], ("positive", "negative", "neutral").index(t["polarity"])))
    polar = {t["polarity"] for t in pzb} - {"neutral"}
    polarity = tags.polarity if tags.polarity in polar else (
        "negative" if "negative" in polar else "positive" if polar else "neutral")
    return replace(tags, pzb_tags=pzb, polarity=polarity, evidence=evidence)
