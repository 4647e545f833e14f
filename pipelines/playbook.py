"""Playbooks: versioned YAML files that drive tagging (touchpoint -> MOT step map, zh/en text cues).

A playbook may `extends:` another one (usually `base`, the shared zh/en cue lexicon); lists of
cues are concatenated, maps are merged key by key, the child wins on scalars.

    >>> load_playbook("bank_branch").touchpoints["greeting"].mot_step
    1
"""
from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Literal

import phonenumbers
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.pii import DEFAULT_PHONE_REGIONS
from pipelines.identity.settings import IdentitySettings

Dimension = Literal["reliability", "responsiveness", "assurance", "empathy", "tangibles"]
Facet = Literal["appearance", "behaviour", "communication"]
Polarity = Literal["positive", "negative", "neutral"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LangCues(_Strict):
    """Cue phrases per language; English cues match case-insensitively on word boundaries."""

    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)


class PolarityCues(_Strict):
    positive: LangCues = Field(default_factory=LangCues)
    negative: LangCues = Field(default_factory=LangCues)
    neutral: LangCues = Field(default_factory=LangCues)


class TouchpointRule(_Strict):
    mot_step: int | None = Field(default=None, ge=1, le=5)
    label: str | None = None
    dimensions: list[Dimension] = Field(default_factory=list)  # default PZB dimensions (neutral polarity)
    abc: Facet | None = None  # first-impression facet this touchpoint exercises
    mot_point: int | None = Field(default=None, ge=1)  # position in a playbook's ordered list of MOT points
    speech: Literal["staff", "customer"] | None = None  # whose words the text is (default: mot_text.customer_touchpoints)


class Cues(_Strict):
    mot_step: dict[int, LangCues] = Field(default_factory=dict)
    pzb: dict[Dimension, PolarityCues] = Field(default_factory=dict)
    abc: dict[Facet, LangCues] = Field(default_factory=dict)


class Negation(_Strict):
    """Negators flip the polarity of a PZB cue they precede within the window."""

    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)
    window_zh: int = Field(default=3, ge=0)  # characters before the cue
    window_en: int = Field(default=3, ge=0)  # words before the cue


class Thresholds(_Strict):
    long_wait_s: float = Field(default=600.0, gt=0)  # wait_s above this tags responsiveness negative
    short_wait_s: float | None = Field(default=None, gt=0)  # wait_s at or below this tags it positive


class PiiSettings(_Strict):
    phone_regions: list[str] = Field(default_factory=list)  # whose national formats are masked, besides the defaults

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        unknown = [r for r in regions if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone regions {unknown} (use ISO 3166 codes such as JP, DE, NG)")
        return [r.upper() for r in regions]


class ModelLang(_Strict):
    """How the learned layer of one task and language joins the rules (docs/tagging.md, "Rules + model")."""

    enabled: bool = True
    threshold: float = Field(default=0.5, ge=0, le=1)  # a label the rules missed is added at this probability (1: never)
    thresholds: dict[str, float] = Field(default_factory=dict)  # per label (e.g. a dimension), overrides `threshold`
    veto_below: float | None = Field(default=None, ge=0, le=1)  # a weak rule tag goes when the model scores it below
    vetoes: dict[str, float] = Field(default_factory=dict)  # per label, overrides `veto_below`

    def threshold_of(self, label: str) -> float:
        return self.thresholds.get(label, self.threshold)

    def veto_of(self, label: str) -> float | None:
        return self.vetoes.get(label, self.veto_below)


class ModelTask(_Strict):
    enabled: bool = False
    zh: ModelLang = Field(default_factory=ModelLang)
    en: ModelLang = Field(default_factory=ModelLang)


class ModelSettings(_Strict):
    """The learned layer per task; models are read from `<models>/<task>-<lang>/` (default: the package's
    pipelines/tagging/models; a relative folder is relative to the playbook file)."""

    models: str | None = None
    dimensions: ModelTask = Field(default_factory=ModelTask)
    mot_steps: ModelTask = Field(default_factory=ModelTask)  # labels mot_step=1..5 (thresholds per label)


DUE_HOURS = {"high": 4.0, "medium": 24.0, "low": 72.0}  # follow-up service level per case priority


class FollowUp(_Strict):
    """When a visit becomes a follow-up case and how soon it is due (the follow_up_cases mart)."""

    low_csat: float = Field(default=2, allow_inf_nan=False)  # a linked csat at or below this is a low score (1-5)
    low_nps: float = Field(default=6, allow_inf_nan=False)  # nps at or below: a detractor (0-10)
    high_ces: float = Field(default=5, allow_inf_nan=False)  # ces at or above: high effort (1-7)
    due_hours: dict[Literal["high", "medium", "low"], float] = Field(default_factory=lambda: dict(DUE_HOURS))

    @field_validator("due_hours")
    @classmethod
    def _every_priority(cls, hours: dict[str, float]) -> dict[str, float]:
        """A priority not named keeps its default; every value is a positive, finite number of hours."""
        if not all(0 < h < float("inf") for h in hours.values()):
            raise ValueError("due_hours must be positive, finite numbers of hours")
        return {**DUE_HOURS, **hours}

    def as_settings(self) -> dict[str, float]:
        """The flat map the SQL reads as getvariable('motpipe_follow_up')."""
        return {"low_csat": self.low_csat, "low_nps": self.low_nps, "high_ces": self.high_ces,
                **{f"due_hours_{p}": h for p, h in self.due_hours.items()}}


class Attribution(_Strict):
    """Settings of the moment attribution models (the moment_attribution mart)."""

    half_life_s: float = Field(default=1800.0, gt=0, allow_inf_nan=False)  # time decay: a moment this long before the end weighs half


VIEW_ONLY_SETTINGS = {"follow_up", "attribution"}  # read by `motpipe views` only: they change no pipeline output


class MotText(_Strict):
    """How MOT steps are read from the words of an event whose touchpoint gives no step (docs/tagging.md)."""

    # touchpoints whose text is the customer's own speech: the five steps describe staff behaviour, so these
    # words give no MOT step (a touchpoint's mot_step still applies; its `speech:` overrides this list)
    customer_touchpoints: list[str] = Field(default_factory=list)

    def customer_speech(self, touchpoint: str | None, rule: TouchpointRule | None) -> bool:
        if rule is not None and rule.speech is not None:
            return rule.speech == "customer"
        return touchpoint in self.customer_touchpoints


class Playbook(_Strict):
    name: str
    version: str
    description: str = ""
    extends: str | None = None
    channels: list[str] = Field(default_factory=list)  # accepted in addition to DEFAULT_CHANNELS
    touchpoints: dict[str, TouchpointRule] = Field(default_factory=dict)
    cues: Cues = Field(default_factory=Cues)
    negation: Negation = Field(default_factory=Negation)
    contrast: LangCues = Field(default_factory=LangCues)  # 但是 / but: end negation and pairing scope
    intensifiers: LangCues = Field(default_factory=LangCues)  # 很 / very: transparent for negation windows
    opinion: PolarityCues = Field(default_factory=PolarityCues)  # general opinion words that polarise an aspect
    thresholds: Thresholds = Field(default_factory=Thresholds)
    model: ModelSettings = Field(default_factory=ModelSettings)
    mot_text: MotText = Field(default_factory=MotText)
    quality: dict[str, float | int | str | None] = Field(default_factory=dict)  # pipelines.quality settings
    pii: PiiSettings = Field(default_factory=PiiSettings)
    follow_up: FollowUp = Field(default_factory=FollowUp)
    attribution: Attribution = Field(default_factory=Attribution)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)  # identifier types and guards (docs/identity.md)

    @property
    def ref(self) -> str:
        """`name@version`, stored on every tagged row."""
        return f"{self.name}@{self.version}"

    @property
    def phone_regions(self) -> tuple[str, ...]:
        """The default phone regions, then the playbook's own."""
        return tuple(dict.fromkeys((*DEFAULT_PHONE_REGIONS, *self.pii.phone_regions)))

    @property
    def allowed_channels(self) -> frozenset[str]:
        return frozenset(DEFAULT_CHANNELS) | frozenset(self.channels)


def _merge(parent: object, child: object) -> object:
    if isinstance(parent, dict) and isinstance(child, dict):
        merged = dict(parent)
        for key, value in child.items():
            merged[key] = _merge(parent[key], value) if key in parent else value
        return merged
    if isinstance(parent, list) and isinstance(child, list):
        return parent + [item for item in child if item not in parent]
    return child


def builtin_dir() -> Path:
    return Path(str(resources.files("pipelines") / "playbooks"))


def _resolve(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"playbook file not found: {name_or_path}")
        return path
    builtin = builtin_dir() / f"{name_or_path}.yaml"
    if not builtin.is_file():
        known = ", ".join(sorted(p.stem for p in builtin_dir().glob("*.yaml")))
        raise ValueError(f"unknown playbook {name_or_path!r}; built-in playbooks: {known}")
    return builtin


def read_yaml(path: Path):
    """A YAML (or JSON) file's data, {} when empty; ValueError when it is not YAML or uses a tag that safe loading
    refuses (e.g. `!!python/object`, which is never executed). Each file is parsed once per process while its
    modification time and size stay the same (every Beam worker loads the playbook); callers get their own copy."""
    stat = path.stat()
    return copy.deepcopy(_parse_yaml(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=256)
def _parse_yaml(path: str, mtime_ns: int, size: int):
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"{path} is not a valid playbook: {problem}{where}") from None


def read_lexicon(directory: Path) -> dict:
    """A lexicon folder as playbook keys: `<lang>/<dimension>.yaml` ({positive, negative, neutral: [cue]}),
    `<lang>/mot_steps.yaml` ({step: [cue]}), `<lang>/abc.yaml` ({facet: [cue]}) and `<lang>/modifiers.yaml`
    ({negators, contrast, intensifiers: [word], opinion: {polarity: [word]}}); every file is optional."""
    if not directory.is_dir():
        raise FileNotFoundError(f"lexicon folder not found: {directory}")
    out: dict = {"cues": {"mot_step": {}, "pzb": {}, "abc": {}}, "negation": {}, "contrast": {}, "intensifiers": {},
                 "opinion": {}}
    for lang_dir in sorted(d for d in directory.iterdir() if d.is_dir()):
        lang = lang_dir.name
        for file in sorted(lang_dir.glob("*.yaml")):
            data = read_yaml(file)
            if not isinstance(data, dict):
                raise ValueError(f"lexicon file {file} must be a mapping")
            if file.stem == "mot_steps":
                for step, cues in data.items():
                    out["cues"]["mot_step"].setdefault(int(step), {})[lang] = cues
            elif file.stem == "abc":
                for facet, cues in data.items():
                    out["cues"]["abc"].setdefault(facet, {})[lang] = cues
            elif file.stem == "modifiers":
                for key, target in (("negators", "negation"), ("contrast", "contrast"), ("intensifiers", "intensifiers")):
                    if key in data:
                        out[target][lang] = data[key]
                for pol, cues in (data.get("opinion") or {}).items():
                    out["opinion"].setdefault(pol, {})[lang] = cues
            else:  # a PZB dimension
                for pol, cues in data.items():
                    out["cues"]["pzb"].setdefault(file.stem, {}).setdefault(pol, {})[lang] = cues
    return out


def _load_raw(name_or_path: str, seen: tuple[str, ...] = ()) -> dict:
    path = _resolve(name_or_path)
    if str(path) in seen:
        raise ValueError(f"playbook extends itself in a cycle: {' -> '.join(seen + (str(path),))}")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ValueError(f"playbook {path} must be a mapping")
    if raw.get("lexicon"):
        raw = _merge(read_lexicon(path.parent / raw["lexicon"]), {k: v for k, v in raw.items() if k != "lexicon"})
    if isinstance(raw.get("model"), dict) and raw["model"].get("models"):  # relative to the playbook file
        raw["model"] = {**raw["model"], "models": str(path.parent / raw["model"]["models"])}
    parent = raw.get("extends")
    if not parent:
        return raw
    # a relative `extends` is looked up next to the child first, then among the built-ins
    sibling = path.parent / f"{parent}.yaml"
    parent_raw = _load_raw(str(sibling) if sibling.is_file() else parent, seen + (str(path),))
    merged = _merge({k: v for k, v in parent_raw.items() if k not in ("name", "version", "description")}, raw)
    return merged


def load_playbook(name_or_path: str) -> Playbook:
    """Load a built-in playbook by name or a YAML/JSON file by path, with `extends` resolved."""
    return Playbook.model_validate(_load_raw(name_or_path))


def list_playbooks() -> list[Playbook]:
    """The built-in playbooks (the `base` lexicon excluded), sorted by name."""
    return [load_playbook(p.stem) for p in sorted(builtin_dir().glob("*.yaml")) if p.stem != "base"]
