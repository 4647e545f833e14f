"""`motpipe train-tagger`: fit the learned layer from gold JSON Lines, with a model card and honest figures.

A task says which labels a gold record carries and which features the rules add (`TASKS`); training fits one
`LinearTextModel` per language, checks that every training source may go into a model that ships
(`SOURCE_LICENCES`, `--licence`, `--allow-noncommercial`), and reports cross-validation grouped by source
(each fold leaves whole sources out, so it is also the cross-source figure) before fitting on everything.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipelines.ingest.contract import DIMENSIONS, MOT_STEPS
from pipelines.tagging.evaluate import _prf as evaluate_prf  # one definition of P/R/F1
from pipelines.playbook import ModelLang
from pipelines.tagging.learned import MODELS_DIR, rule_features, with_dimension_model, with_mot_model
from pipelines.tagging.linear import Extra, LinearTextModel, Settings
from pipelines.tagging.types import MomentTags

# source -> (licence, may a model that ships be trained on it); the sources of ../shared/data (see its READMEs)
SOURCE_LICENCES: dict[str, tuple[str, bool]] = {
    "banking77": ("CC BY 4.0 (PolyAI Banking77)", True),
    "mams-acsa": ("Apache-2.0 (MAMS, siat-nlp)", True),
    "asap": ("Apache-2.0 (ASAP, Meituan-Dianping)", True),
    "ibm-twitter-customer-care": ("Apache-2.0 (IBM twitter-customer-care-document-prediction)", True),
    "twitter_airline": ("CC BY-NC-SA 4.0: non-commercial, share-alike", False),
    "aichallenger2018": ("AI Challenger 2018: non-commercial research and teaching only", False),
}


class LicenceError(ValueError):
    """A training source whose licence does not allow the requested model."""


@dataclass(frozen=True)
class Task:
    """What a gold record means for one model: its labels, its rule features, the labels of the headline."""

    name: str
    applies: Callable[[dict], bool]
    labels: Callable[[dict], set[str]]
    headline: tuple[str, ...]                       # labels whose macro-F1 is the figure of the task
    rule_tags: Callable[[object, str | None], MomentTags]  # (tagger, text) -> the rules' tags of the text
    # (rules' tags, text, {lang: (model, settings)}) -> rules + model, as the tagger joins them; scored in the CV too
    joined: Callable[[MomentTags, str | None, dict], MomentTags] | None = None
    # (tagger, model, record, threshold) -> the headline labels of the rules + model at `threshold`, per CV fold
    combined: Callable[[object, LinearTextModel, dict, float], set[str]] | None = None


def _dimension_labels(record: dict) -> set[str]:
    return {lb["dimension"] for lb in record["labels"]} | {f"{lb['dimension']}:{lb['polarity']}" for lb in record["labels"]}


def _mot_labels(record: dict) -> set[str]:
    from pipelines.tagging.evaluate import gold_steps

    return {f"mot_step={s}" for s in gold_steps(record) or ()}


def _dimensions_combined(tagger, model: LinearTextModel, record: dict, threshold: float) -> set[str]:
    tags = with_dimension_model(tagger.tag_comment(record["text"], use_model=False), record["text"], "comment",
                                {record["lang"]: (model, ModelLang(threshold=threshold))})
    return {t["dimension"] for t in tags.pzb_tags}


TASKS: dict[str, Task] = {
    "dimensions": Task("dimensions", lambda r: "labels" in r, _dimension_labels, tuple(DIMENSIONS),
                       lambda tagger, text: tagger.tag_comment(text, use_model=False), combined=_dimensions_combined),
    # staff utterances with gold MOT steps (`mot_steps` or `mot_step`), tagged as events without a touchpoint
    "mot_steps": Task("mot_steps", lambda r: bool(_mot_labels(r)), _mot_labels,
                      tuple(f"mot_step={s}" for s in MOT_STEPS),
                      lambda tagger, text: tagger.tag_moment(None, text, None, use_model=False),
                      lambda tags, text, models: with_mot_model(tags, text, "text", models)),
}


def context_features(record: dict) -> list[tuple[str, None, None]]:
    """Event context as features when the record has it (`touchpoint`, `direction`)."""
    return [(f"ctx:{key}={record[key]}", None, None) for key in ("touchpoint", "direction") if record.get(key)]


def features_of(task: Task, tagger, record: dict) -> Extra:
    return rule_features(task.rule_tags(tagger, record["text"]), record["lang"]) + context_features(record)


def source_of(record: dict) -> str:
    return record.get("source") or "unknown"


def licences(records: list[dict], declared: dict[str, str], allow_noncommercial: bool) -> tuple[dict, bool]:
    """Per training source its licence and whether it may ship; raises LicenceError for a source that no
    licence covers, or that is non-commercial when `allow_noncommercial` is not set. `declared` (source ->
    licence text, from `--licence`) covers a user's own data and is taken as allowing a shipped model."""
    out, shippable = {}, True
    for source in sorted({source_of(r) for r in records}):
        if source in declared:
            licence, ships = declared[source], True
        elif source in SOURCE_LICENCES:
            licence, ships = SOURCE_LICENCES[source]
        else:
            raise LicenceError(f"training source {source!r} has no known licence: declare it with "
                               f"--licence {source}=<licence> if you may train on it")
        if not ships and not allow_noncommercial:
            raise LicenceError(f"training source {source!r} is {licence}: a model that ships may not be trained on "
                               "it; pass --allow-noncommercial to train a non-shippable model outside the package")
        shippable &= ships
        out[source] = {"licence": licence, "shippable": ships,
                       "records": sum(1 for r in records if source_of(r) == source)}
    return out, shippable


def _prf(gold: np.ndarray, pred: np.ndarray) -> dict:
    return evaluate_prf(int((gold & pred).sum()), int((~gold & pred).sum()), int((gold & ~pred).sum()))


def scores(gold: list[set[str]], predicted: list[set[str]], labels: tuple[str, ...]) -> dict:
    """Per-label precision/recall/F1, micro, and macro-F1 over the labels that the gold covers."""
    covered = [lb for lb in labels if any(lb in g for g in gold)]
    g = np.array([[lb in s for lb in covered] for s in gold], dtype=bool).reshape(len(gold), len(covered))
    p = np.array([[lb in s for lb in covered] for s in predicted], dtype=bool).reshape(len(gold), len(covered))
    per = {lb: _prf(g[:, j], p[:, j]) for j, lb in enumerate(covered)}
    return {"records": len(gold), "per_class": per, "micro": _prf(g.ravel(), p.ravel()),
            "macro_f1": round(sum(v["f1"] for v in per.values()) / len(per), 4) if per else None}


def fit(task: Task, tagger, records: list[dict], settings: Settings) -> LinearTextModel:
    labels = sorted({lb for r in records for lb in task.labels(r)})
    return LinearTextModel(settings).fit([r["text"] for r in records], [task.labels(r) for r in records],
                                         [features_of(task, tagger, r) for r in records], labels=labels)


def predicted_labels(task: Task, model: LinearTextModel, tagger, records: list[dict], threshold: float) -> list[set[str]]:
    proba = model.predict_proba([r["text"] for r in records], [features_of(task, tagger, r) for r in records])
    return [{lb for lb, p in zip(model.labels, row) if p >= threshold} for row in proba]


HASH_FOLDS = 5


def grouped_cv(task: Task, tagger, records: list[dict], settings: Settings, group_by: str = "source",
               threshold: float = 0.5) -> dict:
    """Leave-one-group-out: each group (source, or e.g. company) is scored by a model fitted on the other
    groups only, so this is both the grouped cross-validation and the cross-source figure. With one group
    there is nothing to leave out: then 5 folds by sha256 of the id, and the result says it is not grouped.
    Each fold is scored three ways: the model alone (at `threshold`), the rules alone, the rules + model."""
    def fold(r: dict) -> str:
        if single:
            return f"id-hash fold {int(hashlib.sha256(r['id'].encode('utf-8')).hexdigest()[:8], 16) % HASH_FOLDS + 1}"
        return str(r.get(group_by) or "unknown")

    single = len({str(r.get(group_by) or "unknown") for r in records}) < 2
    out: dict = {"group_by": group_by, "threshold": threshold, "groups": {}}
    if single:
        out["note"] = (f"one {group_by} only ({records[0].get(group_by) or 'unknown'}): {HASH_FOLDS} folds by sha256 "
                       f"of the id, NOT grouped (train and test folds share the {group_by})")
    pooled: dict[str, list] = {"gold": [], "model": [], "rules": []}
    if task.combined is not None:
        pooled["rules+model"] = []
    joined_all, test_all = [], []
    for group in sorted({fold(r) for r in records}):
        test = [r for r in records if fold(r) == group]
        train = [r for r in records if fold(r) != group]
        model = fit(task, tagger, train, settings)
        got = {"gold": [task.labels(r) for r in test], "model": predicted_labels(task, model, tagger, test, threshold),
               "rules": [_rule_labels(task, tagger, r) for r in test]}
        if task.combined is not None:
            got["rules+model"] = [task.combined(tagger, model, r, threshold) for r in test]
        out["groups"][group] = {"trained_on": len(train), **{k: scores(got["gold"], v, task.headline)
                                                             for k, v in got.items() if k != "gold"}}
        for k, v in got.items():
            pooled[k] += v
        if task.joined is not None:
            lang_settings = getattr(getattr(tagger.playbook.model, task.name), test[0]["lang"])
            joined_all += [task.joined(task.rule_tags(tagger, r["text"]), r["text"], {r["lang"]: (model, lang_settings)})
                           for r in test]
            test_all += test
    out["pooled"] = {k: scores(pooled["gold"], v, task.headline) for k, v in pooled.items() if k != "gold"}
    if task.joined is not None:
        out["pooled_rules_and_model"] = joined_figures(task, test_all, joined_all)
    return out


def joined_figures(task: Task, records: list[dict], joined: list[MomentTags]) -> dict:
    """Scores of the rules joined with the model (thresholds of the playbook): for MOT steps the primary step
    and all steps (evaluate.mot_scores), on every record and on the certain ones (`uncertain` not true)."""
    from pipelines.tagging.evaluate import gold_steps, mot_scores

    out = {}
    for name, keep in (("all", lambda r: True), ("certain", lambda r: not r.get("uncertain"))):
        pairs = [(r, t) for r, t in zip(records, joined) if keep(r)]
        out[name] = mot_scores([gold_steps(r) for r, _ in pairs], [(t.mot_step, t.mot_steps) for _, t in pairs])
        out[name].pop("mot_step_confusion")
    return out


def _rule_labels(task: Task, tagger, record: dict) -> set[str]:
    """The task's labels that the rules give the text (`assurance` from `assurance:negative`, `mot_step=2`)."""
    return {label for e in task.rule_tags(tagger, record["text"]).evidence
            for label in (e["tag"], e["tag"].split(":")[0]) if label in task.headline}


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_model(model: LinearTextModel, card: dict, directory: str | Path) -> None:
    """The model files plus `card.json` and a readable `CARD.md`; the bytes depend only on their inputs."""
    directory = Path(directory)
    model.save(directory)
    (directory / "card.json").write_text(json.dumps(card, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                         encoding="utf-8")
    (directory / "CARD.md").write_text(card_markdown(card), encoding="utf-8")


def card_markdown(card: dict) -> str:
    lines = [f"# Model card: {card['task']} ({card['lang']})", "",
             f"Trained {card['date']} by `{card['command']}` (seed {card['settings']['seed']}, playbook "
             f"{card['playbook']} for the rule features). Shippable: **{'yes' if card['shippable'] else 'NO'}**.", "",
             "| training file | sha256 | records used |", "|---|---|---:|"]
    lines += [f"| `{f['name']}` | `{f['sha256']}` | {f['records']:,} |" for f in card["training_files"]]
    lines += ["", "| source | licence | may ship | records |", "|---|---|---|---:|"]
    lines += [f"| {s} | {v['licence']} | {'yes' if v['shippable'] else 'no'} | {v['records']:,} |"
              for s, v in card["sources"].items()]
    lines += ["", f"Settings: `{json.dumps(card['settings'], sort_keys=True)}`; {card['features']:,} features, "
              f"labels {', '.join(card['labels'])}.", ""]
    cv = card["cross_validation"]
    if "groups" not in cv:
        lines += [f"Cross-validation: {cv['note']}.", ""]
    else:
        three = all("rules+model" in v for v in cv["groups"].values())
        lines += [f"Cross-validation, folds by `{cv['group_by']}`: {cv.get('note') or 'leave one group out'}. "
                  f"Headline macro-F1 on the left-out fold of the model alone (threshold {cv['threshold']}), the rules "
                  "alone" + (" and the rules + model (as the tagger joins them)." if three else "."), "",
                  "| left out | trained on | model | rules |" + (" rules + model |" if three else ""),
                  "|---|---:|---:|---:|" + ("---:|" if three else "")]
        lines += [f"| {g} | {v['trained_on']:,} | {v['model']['macro_f1']} | {v['rules']['macro_f1']} |"
                  + (f" {v['rules+model']['macro_f1']} |" if three else "") for g, v in cv["groups"].items()]
        pooled = cv["pooled"]
        lines += [f"| pooled | | {pooled['model']['macro_f1']} | {pooled['rules']['macro_f1']} |"
                  + (f" {pooled['rules+model']['macro_f1']} |" if three else ""), ""]
        for subset, res in cv.get("pooled_rules_and_model", {}).items():
            per = ", ".join(f"{k} {v['f1']}" for k, v in res["mot_steps"]["per_class"].items())
            lines += [f"Rules + model (the playbook's thresholds), left-out groups pooled, {subset} records "
                      f"({res['records']:,}): primary step one of the gold steps {res['primary_in_gold']}, steps "
                      f"macro-F1 {res['mot_steps']['macro_f1']} (per step {per}), primary-step macro-F1 "
                      f"{res['mot_step']['macro_f1']}.", ""]
    return "\n".join(lines) + "\n"


def train(task_name: str, gold_paths: list[str | Path], lang: str, tagger, settings: Settings, date: str,
          declared: dict[str, str] | None = None, allow_noncommercial: bool = False, group_by: str = "source",
          command: str = "motpipe train-tagger", cross_validate: bool = True,
          split: str = "all") -> tuple[LinearTextModel, dict]:
    """Fit the model of one task and language on the gold files; returns it with its card. `split` "dev" trains
    on the groups (`group_by`) outside each file's held-out set only (evaluate.select)."""
    from pipelines.tagging.evaluate import read_gold, select

    task = TASKS[task_name]
    files, records = [], []
    for path in gold_paths:
        recs = [r for r in select(read_gold([path]), split=split, group_by=group_by)
                if task.applies(r) and r.get("lang") == lang]
        files.append({"name": Path(path).name, "sha256": sha256(path), "records": len(recs)})
        records += recs
    if not records:
        raise ValueError(f"no {task_name} records in language {lang!r} in {', '.join(map(str, gold_paths))}")
    sources, shippable = licences(records, declared or {}, allow_noncommercial)
    cv = grouped_cv(task, tagger, records, settings, group_by) if cross_validate else {"note": "not run (--no-cv)"}
    model = fit(task, tagger, records, settings)
    card = {"task": task_name, "lang": lang, "date": date, "split": split, "command": command, "playbook": tagger.playbook.ref,
            "training_files": files, "sources": sources, "shippable": shippable, "settings": asdict(settings),
            "labels": model.labels, "features": len(model.vocabulary), "cross_validation": cv}
    return model, card


def train_and_write(task_name: str, gold_paths: list[str | Path], langs: list[str] | None, tagger, settings: Settings,
                    out: str | Path | None, date: str, declared: dict[str, str] | None = None,
                    allow_noncommercial: bool = False, group_by: str = "source", cross_validate: bool = True,
                    command: str = "motpipe train-tagger", split: str = "all") -> list[dict]:
    """`motpipe train-tagger`: one model per language into `out/<task>-<lang>/` (default: the package's models).
    A model trained with non-commercial data (`allow_noncommercial`) is never written into the package."""
    from pipelines.tagging.evaluate import read_gold

    target = Path(out) if out is not None else MODELS_DIR
    if allow_noncommercial and target.resolve() == MODELS_DIR.resolve():
        raise LicenceError("--allow-noncommercial models do not ship: give --out outside the package")
    found = sorted({r.get("lang") for r in read_gold(gold_paths) if TASKS[task_name].applies(r) and r.get("lang")})
    cards = []
    for lang in langs or found:
        model, card = train(task_name, gold_paths, lang, tagger, settings, date, declared, allow_noncommercial,
                            group_by, command, cross_validate, split)
        card["path"] = f"{task_name}-{lang}"
        write_model(model, card, target / card["path"])
        cards.append(card)
    return cards
