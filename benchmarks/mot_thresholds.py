"""Choose the MOT-step model's per-step thresholds on development data by leave-one-group-out cross-validation.

Each group (e.g. company) is scored by a model trained on the other groups; the rules are joined with that model
as the tagger joins them (learned.with_mot_model), and each step's threshold is set in turn (steps 1..5, the others
held) to the grid value with the best F1 of that step on the certain records; ties keep the lowest value.

    .venv/bin/python -m benchmarks.mot_thresholds ../shared/data/dialogues/mot_dev.jsonl --split dev \
        --group-by company --playbook chat_support

(about 7 minutes on a busy 2-vCPU machine; docs/tagging.md has the result). Never run it on held-out data.
"""
from __future__ import annotations

import argparse

from pipelines.playbook import ModelLang, load_playbook
from pipelines.tagging import Tagger
from pipelines.tagging.evaluate import gold_steps, mot_scores, read_gold, select
from pipelines.tagging.learned import with_mot_model
from pipelines.tagging.linear import Settings
from pipelines.tagging.training import TASKS, fit

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gold")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--group-by", default="company")
    parser.add_argument("--playbook", default="chat_support")
    parser.add_argument("--lang", default="en")
    args = parser.parse_args()
    task, tagger = TASKS["mot_steps"], Tagger(load_playbook(args.playbook))
    records = [r for r in select(read_gold([args.gold]), split=args.split, group_by=args.group_by)
               if task.applies(r) and r["lang"] == args.lang]
    groups = sorted({r[args.group_by] for r in records})
    models = {g: fit(task, tagger, [r for r in records if r[args.group_by] != g], Settings()) for g in groups}
    rules = [task.rule_tags(tagger, r["text"]) for r in records]
    certain = [i for i, r in enumerate(records) if not r.get("uncertain")]

    def scored(thresholds: list[float]) -> dict:
        settings = ModelLang(thresholds={f"mot_step={s}": t for s, t in zip(range(1, 6), thresholds)})
        joined = [with_mot_model(rules[i], r["text"], "text", {args.lang: (models[r[args.group_by]], settings)})
                  for i, r in enumerate(records)]
        return mot_scores([gold_steps(records[i]) for i in certain], [(joined[i].mot_step, joined[i].mot_steps)
                                                                     for i in certain])

    best = [0.5] * 5
    for step in range(1, 6):
        f1 = {t: scored(best[:step - 1] + [t] + best[step:])["mot_steps"]["per_class"][str(step)]["f1"] for t in GRID}
        best[step - 1] = min(t for t in GRID if f1[t] == max(f1.values()))
        print(f"step {step}: " + ", ".join(f"{t}: {v:.3f}" for t, v in f1.items()) + f" -> {best[step - 1]}")
    final = scored(best)
    print(f"thresholds {best}: primary in gold {final['primary_in_gold']}, steps macro-F1 "
          f"{final['mot_steps']['macro_f1']} ({len(certain)} certain records, {len(groups)} groups)")


if __name__ == "__main__":
    main()
