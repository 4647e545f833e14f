"""A readable linear text model: binary n-gram features, one logistic regression per label.

API (labels are any strings, e.g. "assurance", "assurance:negative" or "mot_step=2"):

    model = LinearTextModel(settings=Settings(c=1.0, seed=0)).fit(texts, label_sets, extras=None)
    model.save(directory)                     # weights.npz (plain float32 arrays) + model.json (labels,
                                              # vocabulary, settings); same data -> same bytes, no pickle
    model = LinearTextModel.load(directory)   # numpy + json only: no network, no scikit-learn
    model.predict_proba(texts, extras=None)   # float array [len(texts), len(model.labels)]
    model.explain(text, extra=None, top=3)    # per label: score and the features that contributed most,
                                              # each {feature, span, start, end, weight}

Features of a text (`featurize`), each with the character span where it occurs:

* `w:<word>` and `w:<word> <word>`: English tokens of the folded text (lang.EN_TOKEN) and jieba words of the
  Chinese parts (jieba's own dictionary, so a playbook's cues do not change the features);
* `c:<chars>`: character n-grams inside English words (`char_en`, e.g. 3-5) and of Chinese runs (`char_zh`);
* extras given by the caller, `(name, start, end)` with start/end None when the feature has no span: the rule
  hits (`rule:assurance:negative`) and the event context (`ctx:touchpoint=teller`, `ctx:direction=outbound`).

A text is the set of its distinct features in the vocabulary, each worth 1/sqrt(count) (unit length), so a
label's score is `sigmoid(intercept + sum(weight[f]) / sqrt(count))` and `explain` shows exactly those terms.
scikit-learn (LogisticRegression, liblinear, fixed seed) is imported only by `fit`.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from pipelines.tagging.lang import EN_TOKEN, Segmenter, fold_en
from pipelines.tagging.types import RecentCache

FORMAT = "motpipe-linear-text-model/1"
TEXT_IDS_ENTRIES = 8_192  # texts whose vocabulary ids a model remembers (a few hundred bytes each)
_NO_IDS = np.zeros(0, dtype=np.int32)
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


class Feature(NamedTuple):
    name: str
    start: int | None
    end: int | None


Extra = Sequence[tuple[str, int | None, int | None]]


@dataclass(frozen=True)
class Settings:
    """Featurizer and fit settings; all of them are saved with the model."""

    word_ngrams: int = 2           # word unigrams .. n-grams
    char_en: tuple[int, int] = (3, 5)  # character n-grams inside English words (0, 0: none)
    char_zh: tuple[int, int] = (1, 2)  # character n-grams of Chinese runs
    min_df: int = 2                # a feature must occur in this many training texts
    c: float = 1.0                 # inverse L2 regularisation strength
    class_weight: str | None = "balanced"
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> "Settings":
        values = dict(values)
        for key in ("char_en", "char_zh"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@lru_cache(maxsize=1)
def _segmenter() -> Segmenter:
    """jieba with its default dictionary only, shared by every model of the process."""
    return Segmenter([])


def _grams(chars: str, low: int, high: int) -> tuple[tuple[str, int, int], ...]:
    """Character n-grams (low..high) of `chars` as (name, start, end) within it, by n, then position."""
    if not high:
        return ()
    return tuple(("c:" + chars[i:i + n], i, i + n) for n in range(low, min(high, len(chars)) + 1)
                 for i in range(len(chars) - n + 1))


_word_grams_cached = lru_cache(maxsize=200_000)(_grams)  # English words repeat: their n-grams are kept


def _words(text: str) -> tuple[list, list, list]:
    """(English words, all words in text order, Chinese runs) as (word, start, end) / (run, start)."""
    en = [(m.group(), m.start(), m.end()) for m in EN_TOKEN.finditer(fold_en(text))]
    if not _CJK_RUN.search(text):
        return en, en, []
    zh = [(t.text, t.start, t.end) for t in _segmenter().bounds(text) if _CJK_RUN.search(t.text)]
    return en, sorted(en + zh, key=lambda w: w[1]), [(m.group(), m.start()) for m in _CJK_RUN.finditer(text)]


def _word_ngrams(words: list, n_max: int):
    for n in range(1, n_max + 1):
        for i in range(len(words) - n + 1):
            yield "w:" + " ".join(w[0] for w in words[i:i + n]), words[i][1], words[i + n - 1][2]


def featurize(text: str | None, settings: Settings, extra: Extra | None = None) -> list[Feature]:
    """Every feature occurrence of a text: character n-grams, then word n-grams, then the extras."""
    features: list[Feature] = []
    if text:
        en, words, runs = _words(text)
        for word, start, _ in en:
            features += [Feature(name, start + a, start + b) for name, a, b in _word_grams_cached(word, *settings.char_en)]
        for chars, at in runs:
            features += [Feature(name, at + a, at + b) for name, a, b in _grams(chars, *settings.char_zh)]
        features += [Feature(*f) for f in _word_ngrams(words, settings.word_ngrams)]
    features += [Feature(*e) for e in extra or ()]
    return features


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class LinearTextModel:
    """One-vs-rest linear model over `featurize`; see the module docstring."""

    settings: Settings = field(default_factory=Settings)
    labels: list[str] = field(default_factory=list)
    vocabulary: dict[str, int] = field(default_factory=dict)
    weights: np.ndarray | None = None      # [n_features, n_labels] float32
    intercepts: np.ndarray | None = None   # [n_labels] float32
    _word_ids: dict = field(default_factory=dict, repr=False, compare=False)
    _text_ids: RecentCache = field(default_factory=lambda: RecentCache(TEXT_IDS_ENTRIES), repr=False, compare=False)

    # --- fit (scikit-learn) --------------------------------------------------------------------
    def fit(self, texts: Sequence[str | None], label_sets: Sequence[Iterable[str]],
            extras: Sequence[Extra | None] | None = None, labels: Sequence[str] | None = None) -> "LinearTextModel":
        """Fit one L2 logistic regression per label (`labels`, default: every label seen, sorted)."""
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import LogisticRegression

        if len(texts) != len(label_sets) or (extras is not None and len(extras) != len(texts)):
            raise ValueError("texts, label_sets and extras must have the same length")
        golds = [set(s) for s in label_sets]
        self.labels = sorted(set(labels) if labels is not None else set().union(*golds))
        names = [sorted({f.name for f in featurize(t, self.settings, extras[i] if extras else None)})
                 for i, t in enumerate(texts)]
        df: dict[str, int] = {}
        for row in names:
            for name in row:
                df[name] = df.get(name, 0) + 1
        self.vocabulary = {name: i for i, name in enumerate(sorted(n for n, k in df.items() if k >= self.settings.min_df))}
        self._word_ids = {}
        x = self._matrix(names)
        matrix = csr_matrix((x[2], (x[0], x[1])), shape=(len(texts), len(self.vocabulary)), dtype=np.float64)
        weights = np.zeros((len(self.vocabulary), len(self.labels)), dtype=np.float64)
        intercepts = np.zeros(len(self.labels), dtype=np.float64)
        for j, label in enumerate(self.labels):
            y = np.array([label in g for g in golds], dtype=np.int8)
            if y.min() == y.max():  # a label that is always or never there: a constant score
                intercepts[j] = 20.0 if y[0] else -20.0
                continue
            clf = LogisticRegression(C=self.settings.c, solver="liblinear", class_weight=self.settings.class_weight,
                                     random_state=self.settings.seed, max_iter=1000)
            clf.fit(matrix, y)
            weights[:, j], intercepts[j] = clf.coef_[0], clf.intercept_[0]
        self.weights, self.intercepts = weights.astype(np.float32), intercepts.astype(np.float32)
        return self

    def _matrix(self, names: list[list[str]]) -> tuple[list[int], list[int], list[float]]:
        rows, cols, values = [], [], []
        for r, row in enumerate(names):
            ids = sorted({self.vocabulary[n] for n in row if n in self.vocabulary})
            if ids:
                value = 1.0 / math.sqrt(len(ids))
                rows += [r] * len(ids)
                cols += ids
                values += [value] * len(ids)
        return rows, cols, values

    # --- save / load (numpy + json) ------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write `weights.npz` and `model.json` into `directory`; the bytes depend only on the model."""
        if self.weights is None:
            raise ValueError("the model is not fitted")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_npz(directory / "weights.npz", {"weights": self.weights, "intercepts": self.intercepts})
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        meta = {"format": FORMAT, "labels": self.labels, "settings": asdict(self.settings), "vocabulary": vocab,
                "weights_sha256": hashlib.sha256((directory / "weights.npz").read_bytes()).hexdigest()}
        (directory / "model.json").write_text(json.dumps(meta, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "LinearTextModel":
        directory = Path(directory)
        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{directory}: not a {FORMAT} model (format {meta.get('format')!r})")
        with np.load(directory / "weights.npz", allow_pickle=False) as arrays:
            weights, intercepts = arrays["weights"], arrays["intercepts"]
        if weights.shape != (len(meta["vocabulary"]), len(meta["labels"])):
            raise ValueError(f"{directory}: weights {weights.shape} do not match the vocabulary and labels")
        return cls(Settings.from_dict(meta["settings"]), list(meta["labels"]),
                   {name: i for i, name in enumerate(meta["vocabulary"])}, weights, intercepts)

    # --- predict (numpy) -----------------------------------------------------------------------
    def _terms(self, text: str | None, extra: Extra | None) -> tuple[np.ndarray, dict[int, Feature], float]:
        """Vocabulary ids of a text (sorted), the first occurrence of each, and the value of each feature."""
        first: dict[int, Feature] = {}
        for f in featurize(text, self.settings, extra):
            i = self.vocabulary.get(f.name)
            if i is not None and i not in first:
                first[i] = f
        ids = np.array(sorted(first), dtype=np.int64)
        return ids, first, (1.0 / math.sqrt(len(ids)) if len(ids) else 0.0)

    def _ids(self, text: str | None, extra: Extra | None) -> np.ndarray:
        """The vocabulary ids of `featurize(text, extra)` (what `_terms` finds, without spans), sorted; a text's
        own ids are remembered for its next extras (the rules' features differ by touchpoint, the text's do not),
        an English word's n-gram ids are kept per model."""
        ids = self._text_ids.get(text, lambda: self._own_ids(text)) if text else _NO_IDS
        vocab = self.vocabulary
        extra_ids = [vocab[e[0]] for e in extra or () if e[0] in vocab]
        return np.union1d(ids, extra_ids) if extra_ids else ids

    def _own_ids(self, text: str) -> np.ndarray:
        vocab, found, cache = self.vocabulary, set(), self._word_ids
        en, words, runs = _words(text)
        for word, _, _ in en:
            ids = cache.get(word)
            if ids is None:
                if len(cache) >= 200_000:
                    cache.clear()
                ids = cache[word] = tuple(vocab[g[0]] for g in _word_grams_cached(word, *self.settings.char_en)
                                          if g[0] in vocab)
            found.update(ids)
        for chars, _ in runs:
            found.update(vocab[g[0]] for g in _grams(chars, *self.settings.char_zh) if g[0] in vocab)
        found.update(vocab[g[0]] for g in _word_ngrams(words, self.settings.word_ngrams) if g[0] in vocab)
        return np.array(sorted(found), dtype=np.int32)

    def decision(self, text: str | None, extra: Extra | None = None) -> np.ndarray:
        ids = self._ids(text, extra)
        value = 1.0 / math.sqrt(len(ids)) if len(ids) else 0.0
        return self.intercepts + self.weights[ids].sum(axis=0) * value

    def predict_proba(self, texts: Sequence[str | None], extras: Sequence[Extra | None] | None = None) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return _sigmoid(np.stack([self.decision(t, extras[i] if extras else None) for i, t in enumerate(texts)]))

    def explain(self, text: str | None, extra: Extra | None = None, top: int = 3,
                labels: Sequence[str] | None = None) -> dict[str, dict]:
        """Per label: `score` (probability) and `features`, the `top` features with the largest positive
        contributions (`weight` = weight / sqrt(count), the term added to the decision)."""
        ids, first, value = self._terms(text, extra)
        decision = self.intercepts + self.weights[ids].sum(axis=0) * value
        out = {}
        for label in labels if labels is not None else self.labels:
            j = self.labels.index(label)
            contrib = self.weights[ids, j] * value
            order = sorted((k for k in range(len(ids)) if contrib[k] > 0), key=lambda k: (-contrib[k], int(ids[k])))
            out[label] = {"score": float(_sigmoid(decision[j])),
                          "features": [_shown(text, first[int(ids[k])], contrib[k]) for k in order[:top]]}
        return out


def _shown(text: str | None, feature: Feature, weight: float) -> dict:
    span = text[feature.start:feature.end] if text and feature.start is not None else None
    return {"feature": feature.name, "span": span, "start": feature.start, "end": feature.end,
            "weight": round(float(weight), 4)}

def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez without timestamps: each array as .npy in a zip whose entries carry a fixed date."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
