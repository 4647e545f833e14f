"""How far would a model trained on labelled tweets get on the English PZB dev set? (issue 9, docs/tagging.md)

A one-vs-rest logistic regression per dimension (plain numpy, L2, full-batch gradient descent) on binary
bag-of-words features (lower-cased words and word pairs, @handles and links removed, seen at least twice in
the training folds), optionally plus the rule tagger's own tags as features (stacking). Scored by 5-fold
cross-validation over the dev file (folds by sha256 of the id), so every tweet is predicted by a model that
never saw it; dimension-only F1 per dimension and the macro average over the dimensions the gold labels cover.

    .venv/bin/python -m benchmarks.tagging_model_cv ../shared/data/text/en_dev.jsonl --playbook airline
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re

import numpy as np

from pipelines.playbook import load_playbook
from pipelines.tagging import Tagger

FOLDS = 5


def words(text: str) -> set[str]:
    """Lower-cased words and adjacent word pairs, without @handles and links."""
    tokens = re.findall(r"[a-z']+", re.sub(r"@\w+|http\S+", " ", text.lower()))
    return set(tokens) | {f"{a} {b}" for a, b in zip(tokens, tokens[1:])}


def rule_features(tagger: Tagger, text: str) -> set[str]:
    """The rule tagger's tags of a text as features: `rule:<dimension>`, `rule:<dimension>:<polarity>`."""
    tags = tagger.tag_comment(text)
    features = {f"rule:polarity:{tags.polarity}"}
    for tag in tags.pzb_tags:
        features |= {f"rule:{tag['dimension']}", f"rule:{tag['dimension']}:{tag['polarity']}"}
    return features


def matrix(features: list[set[str]], vocabulary: dict[str, int]) -> np.ndarray:
    x = np.zeros((len(features), len(vocabulary)))
    for i, row in enumerate(features):
        x[i, [vocabulary[f] for f in row if f in vocabulary]] = 1
    return x


def fit(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 400, rate: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Weights and biases of one logistic regression per column of y."""
    weights, bias = np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])
    for _ in range(steps):
        error = 1 / (1 + np.exp(-(x @ weights + bias))) - y
        weights -= rate * (x.T @ error + l2 * weights) / len(x)
        bias -= rate * error.mean(axis=0)
    return weights, bias


def cross_validated_scores(features: list[set[str]], y: np.ndarray, folds: np.ndarray, l2: float) -> np.ndarray:
    """P(dimension) of every row from the model trained on the other folds."""
    scores = np.zeros_like(y)
    for fold in range(FOLDS):
        train, test = folds != fold, folds == fold
        counts: dict[str, int] = {}
        for row in (features[i] for i in np.flatnonzero(train)):
            for feature in row:
                counts[feature] = counts.get(feature, 0) + 1
        vocabulary = {f: i for i, f in enumerate(sorted(f for f, n in counts.items() if n >= 2))}
        weights, bias = fit(matrix([features[i] for i in np.flatnonzero(train)], vocabulary), y[train], l2)
        test_x = matrix([features[i] for i in np.flatnonzero(test)], vocabulary)
        scores[test] = 1 / (1 + np.exp(-(test_x @ weights + bias)))
    return scores


def f1_per_dimension(predicted: np.ndarray, y: np.ndarray) -> list[float]:
    gold = y > 0
    tp, fp, fn = ((predicted & gold).sum(0), (predicted & ~gold).sum(0), (~predicted & gold).sum(0))
    return [float(2 * t / (2 * t + p + n)) if t + p + n else 0.0 for t, p, n in zip(tp, fp, fn)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gold", help="gold JSON Lines (id, text, labels)")
    parser.add_argument("--playbook", default="airline")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in open(args.gold, encoding="utf-8") if line.strip()]
    dimensions = sorted({label["dimension"] for row in rows for label in row["labels"]})
    y = np.array([[any(l["dimension"] == d for l in row["labels"]) for d in dimensions] for row in rows], float)
    folds = np.array([int(hashlib.sha256(row["id"].encode()).hexdigest()[:8], 16) % FOLDS for row in rows])
    tagger = Tagger(load_playbook(args.playbook))
    plain = [words(row["text"]) for row in rows]
    variants = {"words": plain, "words + rule tags": [w | rule_features(tagger, r["text"]) for w, r in zip(plain, rows)]}
    print(f"{len(rows)} texts, dimensions {', '.join(dimensions)}, {FOLDS}-fold cross-validation")
    print("| features | L2 | threshold | " + " | ".join(dimensions) + " | macro-F1 |")
    print("|---|---:|---:|" + "---:|" * (len(dimensions) + 1))
    for name, features in variants.items():
        for l2 in (0.3, 1.0):
            scores = cross_validated_scores(features, y, folds, l2)
            for threshold in (0.2, 0.3, 0.5):
                f1 = f1_per_dimension(scores >= threshold, y)
                print(f"| {name} | {l2} | {threshold} | " + " | ".join(f"{v:.3f}" for v in f1) + f" | {np.mean(f1):.3f} |",
                      flush=True)


if __name__ == "__main__":
    main()
