"""The result type of the tagger."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

V = TypeVar("V")


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


class RecentCache(Generic[V]):
    """The values of the `size` keys used last (an LRU): `get(key, compute)` returns the remembered value or
    computes, remembers and returns it, dropping the key used longest ago when full. Values are never None. Safe
    to share between threads (a key computed by two at once is remembered once)."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
                return value
        value = compute()
        with self._lock:
            value = self._values.setdefault(key, value)
            if len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self):
        return iter(list(self._values))
