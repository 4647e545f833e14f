"""Language handling: per-text language detection, Chinese word segmentation (jieba), English
tokens and inflections (lemminflect). Everything here is linear in the text length."""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import NamedTuple

LANGS = ("zh", "en")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\uff21-\uff3a\uff41-\uff5a]")
EN_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_jieba_lock = threading.Lock()
_PIECE = re.compile(r"[^，。！？；：、,!?;:\s]+|[，。！？；：、,!?;:\s]+")  # clauses and the breaks between them


def detect(text: str) -> tuple[bool, bool]:
    """(has Chinese, has English): CJK ideographs mean zh, Latin letters mean en; both is mixed text."""
    return _CJK.search(text) is not None, _LATIN.search(text) is not None


def language(text: str | None) -> str | None:
    """'zh', 'en', 'mixed' or None (no letters of either script)."""
    if not text:
        return None
    zh, en = detect(text)
    return "mixed" if zh and en else "zh" if zh else "en" if en else None


def fold_en(text: str) -> str:
    """Lower-case, full-width ASCII to ASCII, curly apostrophes to ', without changing offsets."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two (İ): keep those as they are
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    if any("\uff01" <= c <= "\uff5e" for c in lowered):
        lowered = "".join(chr(ord(c) - 0xFEE0) if "\uff01" <= c <= "\uff5e" else c for c in lowered).lower()
    return lowered.replace("\u2019", "'").replace("\u2018", "'").replace("\uff07", "'")


class Token(NamedTuple):
    text: str
    start: int
    end: int


def en_tokens(folded: str) -> list[Token]:
    return [Token(m.group(), m.start(), m.end()) for m in EN_TOKEN.finditer(folded)]


def en_key(phrase: str) -> str:
    """A cue or modifier as the space-joined tokens it must match ("Wi-Fi" -> "wi fi")."""
    return " ".join(t.text for t in en_tokens(fold_en(phrase.strip())))


@lru_cache(maxsize=None)
def inflections(word: str) -> tuple[str, ...]:
    """Noun and verb inflections of a base form (delay -> delays, delayed, delaying). A word that is
    not its own lemma ("missing", "stuck") and adjectives ("late" -/-> "later") are not expanded."""
    import lemminflect

    forms: set[str] = set()
    lemmas = lemminflect.getAllLemmas(word)
    for upos in ("NOUN", "VERB"):
        if word in lemmas.get(upos, ()):
            for values in lemminflect.getAllInflections(word, upos=upos).values():
                forms.update(v.lower() for v in values)
    forms.discard(word)
    return tuple(sorted(f for f in forms if EN_TOKEN.fullmatch(f)))


def en_variants(key: str) -> list[str]:
    """Variants of a token key with one word inflected at a time."""
    words = key.split(" ")
    out = []
    for i, word in enumerate(words):
        if len(word) > 2 and word.isalpha():
            out += [" ".join(words[:i] + [form] + words[i + 1:]) for form in inflections(word)]
    return out


@lru_cache(maxsize=1)
def _base_dictionary():
    """jieba's default dictionary, loaded once per process (about half a second)."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    logging.getLogger("jieba").setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    with _jieba_lock:
        tokenizer.initialize()
    return tokenizer.FREQ, tokenizer.total


class Segmenter:
    """A private jieba tokenizer with the playbook's Chinese cues added as words."""

    def __init__(self, words: list[str]):
        import jieba

        freq, total = _base_dictionary()
        self.tokenizer = jieba.Tokenizer()
        self.tokenizer.FREQ, self.tokenizer.total = dict(freq), total
        self.tokenizer.initialized = True
        self._cache: dict[str, tuple[str, ...]] = {}
        for word in sorted(set(words)):
            if len(word) > 1 and word not in freq:
                self.tokenizer.add_word(word, freq=3)

    def bounds(self, text: str) -> list[Token]:
        """Words of `text` with their offsets (jieba, HMM for unknown words). Clauses are cut one by one
        and remembered (stock phrases repeat across rows); jieba itself never joins words across them."""
        tokens = []
        cache = self._cache
        for m in _PIECE.finditer(text):
            piece, pos = m.group(), m.start()
            words = cache.get(piece)
            if words is None:
                if len(cache) >= 100_000:
                    cache.clear()
                words = cache[piece] = tuple(self.tokenizer.cut(piece, HMM=True))
            for word in words:
                tokens.append(Token(word, pos, pos + len(word)))
                pos += len(word)
        return tokens
