"""The learned layer beside the rules: the package's models joined with the rules' tags of one text.

Dimensions (`with_dimension_model`): tags the rules are sure of (a polar cue, an aspect with an opinion word, a
signal, a touchpoint) stay; a dimension the rules missed is added when the model's probability reaches the
playbook's threshold, with the rules' polarity of the text if it has one, else the one the model scores highest; a weak rule tag (a bare mention, neutral) is
dropped when the model scores its dimension below `veto_below`. A model tag's evidence rows carry the rule
`model:dimensions:<lang>:p=<probability>:<feature>` and the span of each top feature in the text.

MOT steps (`with_mot_model`, staff speech only): a step found by a cue the rules are sure of (more than one
English word, more than two Chinese characters) stays; a step found only by weak cues (one word, e.g. `hi`,
`refund`) is dropped when the model scores it below `veto_below`; a step the rules missed is added when the
model's probability reaches the playbook's threshold for `mot_step=<n>`. The primary step stays the rules' one
while it is performed; otherwise it is the performed step the model scores highest (`mot_step_source` is
`model` when that step has no cue).
Evidence rows: `model:mot_steps:<lang>:p=<probability>:<feature>`.
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


def model_dir(playbook: Playbook, task: str, lang: str) -> Path:
    return Path(playbook.model.models or MODELS_DIR) / f"{task}-{lang}"


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
        directory = model_dir(playbook, task, lang)
        if lang_settings.enabled and (directory / "model.json").is_file():
            out[lang] = (_load(directory), lang_settings)
    return out


def rule_features(tags: MomentTags, lang: str) -> list[tuple[str, int | None, int | None]]:
    """The rules' text hits as features of the `lang` model: `rule:<tag>` at the evidence span, for the cues of
    that language and the text signals (touchpoint and wait evidence are left out, so a model trained on plain
    text sees the same features on events)."""
    return [(f"rule:{e['tag']}", e["start"], e["end"]) for e in tags.evidence if e["start"] is not None
            and (e["rule"].startswith(f"cue:{lang}:") or not e["rule"].startswith(("cue:", "model:")))]


def _weak(evidence: list[dict], dim: str, lang: str) -> bool:
    """True when the rules' only evidence for `dim` is a bare mention (a neutral cue, no opinion word) in `lang`:
    a model judges the cues of its own language only."""
    rows = [e for e in evidence if e["tag"].split(":")[0] == dim]
    return bool(rows) and all(e["tag"].endswith(":neutral") and e["rule"].startswith(f"cue:{lang}:")
                              and "+op:" not in e["rule"] for e in rows)


def with_dimension_model(tags: MomentTags, text: str | None, text_field: str,
                         models: dict[str, tuple[LinearTextModel, ModelLang]]) -> MomentTags:
    """The rules' tags of a text joined with the dimension models of its languages (see the module docstring)."""
    if not text or not models:
        return tags
    has = dict(zip(("zh", "en"), detect(text)))
    pzb = [dict(t) for t in tags.pzb_tags]
    evidence = list(tags.evidence)
    for lang, (model, settings) in models.items():
        if not has[lang]:
            continue
        features = rule_features(tags, lang)
        proba = 1.0 / (1.0 + np.exp(-model.decision(text, features)))
        score = dict(zip(model.labels, proba.tolist()))
        for dim in DIMENSIONS:
            if dim not in score:
                continue
            # a touchpoint's default dimension (neutral, no text) leaves the text to the model
            ruled = any(e["tag"].split(":")[0] == dim and (e["start"] is not None or not e["tag"].endswith(":neutral"))
                        for e in evidence)
            veto, threshold = settings.veto_of(dim), settings.threshold_of(dim)
            if ruled and veto is not None and score[dim] < veto and _weak(evidence, dim, lang):
                pzb = [t for t in pzb if t["dimension"] != dim]
                evidence = [e for e in evidence if e["tag"].split(":")[0] != dim]
            elif not ruled and threshold < 1 and score[dim] >= threshold:
                # the rules' polarity of the text (opinion words, negation, contrast) when it has one
                polarity = tags.polarity if tags.polarity != "neutral" else max(
                    ("negative", "positive", "neutral"), key=lambda p: score.get(f"{dim}:{p}", -1.0))
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


def weak_step_cue(rule: str) -> bool:
    """A MOT-step cue the model may veto: one English word, or at most two Chinese characters."""
    _, lang, cue = rule.split(":", 2)
    return len(cue) <= 2 if lang == "zh" else " " not in cue.strip()


def with_mot_model(tags: MomentTags, text: str | None, text_field: str,
                   models: dict[str, tuple[LinearTextModel, ModelLang]]) -> MomentTags:
    """The rules' MOT steps of a staff text joined with the step models of its languages (module docstring);
    the caller leaves out touchpoint steps and customer speech."""
    if not text or not models or tags.mot_step_source == "touchpoint":
        return tags
    has = dict(zip(("zh", "en"), detect(text)))
    score: dict[int, tuple[float, str, LinearTextModel, ModelLang]] = {}
    for lang, (model, settings) in models.items():
        if has[lang]:
            proba = 1.0 / (1.0 + np.exp(-model.decision(text, rule_features(tags, lang))))
            for label, p in zip(model.labels, proba.tolist()):
                step = int(label.split("=")[1])
                if step not in score or p > score[step][0]:
                    score[step] = (p, lang, model, settings)
    if not score:
        return tags
    ruled: dict[int, list[dict]] = {}
    for e in tags.evidence:
        if e["tag"].startswith("mot_step="):
            ruled.setdefault(int(e["tag"].split("=")[1]), []).append(e)
    evidence = [e for e in tags.evidence if not e["tag"].startswith("mot_step=")]
    steps: dict[int, list[dict]] = {}
    for step in sorted(set(ruled) | set(score)):
        p, lang, model, settings = score.get(step, (None, None, None, None))
        label = f"mot_step={step}"
        if step in ruled:
            vetoed = (p is not None and settings.veto_below is not None and p < settings.veto_below
                      and all(weak_step_cue(e["rule"]) for e in ruled[step]))
            if not vetoed:
                steps[step] = ruled[step]
        elif p >= settings.threshold_of(label):
            shown = model.explain(text, rule_features(tags, lang), top=TOP_FEATURES, labels=[label])[label]["features"]
            rule = f"model:mot_steps:{lang}:p={p:.3f}"
            steps[step] = [{"tag": label, "rule": f"{rule}:{f['feature']}", "field": text_field, "span": f["span"],
                            "start": f["start"], "end": f["end"]} for f in shown] or [
                {"tag": label, "rule": rule, "field": text_field, "span": None, "start": None, "end": None}]
    if steps.keys() == ruled.keys():
        return tags
    if tags.mot_step in steps:
        primary = tags.mot_step
    else:  # the rules found nothing, or their primary step was vetoed
        primary = max(steps, key=lambda s: (score.get(s, (0.0,))[0], -s), default=None)
    source = None if primary is None else "text" if primary in ruled else "model"
    rows = [e for s in sorted(steps) for e in steps[s]]
    return replace(tags, mot_step=primary, mot_step_source=source, mot_steps=sorted(steps), evidence=rows + evidence)
