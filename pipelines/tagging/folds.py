"""Deterministic splits of gold records by group (company, brand, source): a held-out set of whole groups and
grouped cross-validation folds, so that no group is ever in training and test data at once."""
from __future__ import annotations

import hashlib
from collections import Counter


def group_hash(group: str) -> str:
    return hashlib.sha256(group.encode("utf-8")).hexdigest()


def held_out_groups(groups: list[str], share: float) -> set[str]:
    """Whole groups, taken in sha256 order of their names until they hold at least `share` of the records."""
    sizes = Counter(groups)
    chosen: set[str] = set()
    total = 0
    for group in sorted(sizes, key=group_hash):
        if total >= share * len(groups):
            break
        chosen.add(group)
        total += sizes[group]
    return chosen


def grouped_folds(groups: list[str], k: int) -> list[int]:
    """Per record its fold in 0..k-1; groups are dealt largest first to the fold holding fewest records (ties by
    sha256 of the name), so folds are near equal in size and a group never spans two folds."""
    if k < 2:
        raise ValueError("grouped cross-validation needs at least 2 folds")
    sizes = Counter(groups)
    if len(sizes) < k:
        raise ValueError(f"{len(sizes)} groups cannot fill {k} folds")
    fill = [0] * k
    fold_of: dict[str, int] = {}
    for group in sorted(sizes, key=lambda g: (-sizes[g], group_hash(g))):
        fold = min(range(k), key=lambda f: (fill[f], f))
        fold_of[group] = fold
        fill[fold] += sizes[group]
    return [fold_of[g] for g in groups]
