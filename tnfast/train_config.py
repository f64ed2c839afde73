"""Training settings of `tnfast train`: defaults, profiles, a TOML file, command-line overrides.

A run's configuration is three things: the profile name, the model (:class:`ModelConfig`) and
the schedule (:class:`TrainConfig`). They resolve in this order, each overriding the last: the
profile's values, the ``--config`` TOML file, ``--set section.key=value`` options, ``--seed``.
The resolved result is written to the run directory as ``config.toml``, which ``--config``
reads back, so any run can be repeated from its own directory::

    profile = "quick"
    [model]
    gat_heads = 2
    [train]
    steps = 150
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from .errors import InputError
from .model.config import PROFILES as MODEL_PROFILES
from .model.config import ModelConfig, is_number

PRECISIONS = ("auto", "fp32", "bf16")
MEMBER_VALID = ("split", "folds")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    pretrain_steps: int = 100  # reconstruction only: the encoder learns the networks first (none without networks)
    steps: int = 2000  # joint steps at most (early stopping usually ends sooner)
    batch_size: int = 64  # (gene, type) samples per joint step; the encoder runs full-graph once per step
    lr: float = 1e-3
    lr_final: float = 1.0  # the joint steps' learning rate decays to lr x lr_final on a cosine (1 = constant)
    weight_decay: float = 1e-4
    clip_norm: float = 1.0  # gradient norm clipping (0 = off)
    recon_weight: float = 0.5  # weight of the reconstruction loss in joint steps
    guess_weight: float = 0.3  # auxiliary loss on FunDNN's first guess of the target
    drop_available: float = 0.5  # fraction of usable measurements hidden per sample (most genes have none)
    eval_every: int = 25  # steps between validation, checkpoint and metrics.jsonl record
    patience: int = 6  # evaluations without a better valid PearsonΔ before stopping
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    # members: models trained one after another, each as a run with seed seed + k would be
    # (the run's network embedding shared); predictions are their mean. On small data what one
    # training learns depends on its seed as much as on the data, and the mean keeps what they share.
    ensemble: int = 1
    # where a member validates: "split", the bundle's valid genes (every member); "folds", its own
    # fold of the genes with a train or valid signature, dealt at random into ``ensemble`` folds
    # (member k validates on fold k and trains on the others: all measured genes train the mean)
    member_valid: str = "split"

    def __post_init__(self) -> None:
        for name in ("pretrain_steps", "steps", "batch_size", "eval_every", "patience", "ensemble"):
            v = getattr(self, name)
            low = 0 if name in ("pretrain_steps", "steps") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"train config: {name} must be an integer >= {low}, got {v!r}")
        for name in ("lr", "weight_decay", "clip_norm", "recon_weight", "guess_weight"):
            v = getattr(self, name)
            if not is_number(v) or not 0 <= v < math.inf:
                raise ValueError(f"train config: {name} must be a finite number >= 0, got {v!r}")
        if not is_number(self.lr_final) or not 0 <= self.lr_final <= 1:
            raise ValueError(f"train config: lr_final must be a number in [0, 1], got {self.lr_final!r}")
        if not is_number(self.drop_available) or not 0.0 <= self.drop_available <= 1.0:
            raise ValueError(f"train config: drop_available must be in [0, 1], got {self.drop_available!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train config: precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.member_valid not in MEMBER_VALID:
            raise ValueError(f"train config: member_valid must be one of {', '.join(MEMBER_VALID)}, "
                             f"got {self.member_valid!r}")
        if self.member_valid == "folds" and self.ensemble < 2:
            raise ValueError("train config: member_valid = \"folds\" needs ensemble >= 2 (one fold per member; "
                             "member_valid = \"split\" trains one model)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"train config: seed must be an integer >= 0, got {self.seed!r}")


# quick: the full-scale synthetic default on 2 CPU cores in at most 15 minutes. Its encoder pass
# costs the same whatever the batch, so big batches buy the most learning per second: measured
# there, 25 joint steps reached valid PearsonΔ 0.26 at batch 256 and lr 2e-3 vs 0.16 at batch 64
# and lr 1e-3 (the clip at norm 1 also slowed the latter); decaying the rate to a tenth over the
# joint steps raised the test PearsonΔ of the same 140 steps from 0.342 / 0.357 / 0.330 to
# 0.364 / 0.376 / 0.350 (RNAi / CRISPR / OE). 210 joint steps: with the spectral embedding a step
# costs less than with the propagated projections, and valid PearsonΔ still rose past the 105
# steps of before (test 0.510 / 0.516 / 0.454 at 105, 0.517 / 0.522 / 0.458 at 210; 6 min 5 s and
# 10 min 50 s on the idle machine, 2026-12-01). full: the paper-scale model, for a GPU.
TRAIN_PROFILES: dict[str, TrainConfig] = {
    "quick": TrainConfig(pretrain_steps=25, steps=210, batch_size=256, lr=2e-3, lr_final=0.1, clip_norm=5.0,
                         eval_every=35, patience=3),
    "full": TrainConfig(),
}
# small: on a few hundred genes one training's gene-specific part depends on its seed as much as
# on the data, and a few dozen valid genes make early stopping noisy: the mean of ten members,
# each validating on its own tenth of the measured genes and training on the rest (every measured
# gene trains the mean), validation every 5 steps, weight decay (docs/results.md: the real example).
TRAIN_PROFILES["small"] = replace(TRAIN_PROFILES["quick"], batch_size=64, lr=1e-3, weight_decay=0.01, guess_weight=1.0,
                                  steps=300, eval_every=5, patience=10, ensemble=10, member_valid="folds")

# A bundle is small when no type has this many train + valid signatures: the small profile was
# chosen on 181-302 per type (the real example), quick on 3.5-5 thousand (the synthetic default).
SMALL_DATA = 1000


def auto_profile(data: str | os.PathLike, device: str) -> tuple[str, str]:
    """The profile a run without ``--profile`` (or a config naming one) gets, and why: ``small``
    for a bundle with fewer than :data:`SMALL_DATA` measured (train + valid) signatures in every
    type, else ``full`` on CUDA and ``quick`` otherwise. Read from the signature files' split
    arrays alone; a bundle that cannot be read so gets the device's profile (loading it then
    reports what is wrong)."""
    import numpy as np

    fallback = ("full", "the default on CUDA") if device == "cuda" else ("quick", "the default on CPU")
    d = Path(data)
    try:
        types = json.loads((d / "bundle.json").read_text(encoding="utf-8"))["types"]
        measured = {}
        for t in types:
            with np.load(d / "signatures" / f"{t}.npz", allow_pickle=False) as z:
                measured[t] = int(np.isin(z["split"], ("train", "valid")).sum())
    except Exception:  # noqa: BLE001 (load_bundle says what is wrong with a damaged bundle)
        return fallback
    if measured and max(measured.values()) < SMALL_DATA:
        counts = " / ".join(f"{t} {n}" for t, n in measured.items())
        return "small", f"small data: {counts} measured signatures, under {SMALL_DATA} in every type"
    return fallback


@dataclass(frozen=True)
class RunConfig:
    profile: str
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> dict:
        return {"profile": self.profile, "model": self.model.to_dict(), "train": asdict(self.train)}

    def to_toml(self) -> str:
        # Every value is a bool, number, string or list of ints: their JSON spelling is TOML.
        lines = [f"profile = {json.dumps(self.profile)}"]
        for section, d in (("model", self.model.to_dict()), ("train", asdict(self.train))):
            lines += ["", f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in d.items()]
        return "\n".join(lines) + "\n"


def _build(profile: str, model: dict, train: dict, where: str) -> RunConfig:
    if not isinstance(profile, str) or profile not in MODEL_PROFILES:  # (profile = [1] is valid TOML)
        raise InputError(where, f"unknown profile {profile!r}; expected one of {', '.join(sorted(MODEL_PROFILES))}")
    try:
        m = MODEL_PROFILES[profile]
        m = m.from_dict({**m.to_dict(), **model}) if model else m
        t = replace(TRAIN_PROFILES[profile], **train) if train else TRAIN_PROFILES[profile]
    except (TypeError, ValueError) as e:
        raise InputError(where, str(e)) from None
    return RunConfig(profile, m, t)


def _check_keys(section: str, d: dict, where: str) -> None:
    known = {f.name for f in fields(ModelConfig if section == "model" else TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise InputError(where, f"unknown [{section}] keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def read_toml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, expected a TOML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(path, f"invalid TOML ({e})") from None
    extra = sorted(set(doc) - {"profile", "model", "train"})
    if extra:
        raise InputError(path, f"unknown top-level keys {', '.join(extra)}; expected profile, [model], [train]")
    for section in ("model", "train"):
        if not isinstance(doc.get(section, {}), dict):
            raise InputError(path, f"{section} must be a [{section}] table")
        _check_keys(section, doc.get(section, {}), str(path))
    return doc


def parse_set(items: list[str]) -> dict:
    """``["model.gat_heads=4", "train.lr=3e-4"]`` -> {"model": {...}, "train": {...}}; values in TOML syntax
    (a bare word that is not TOML is taken as a string)."""
    out: dict = {"model": {}, "train": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in out or not name:
            raise InputError("--set", f"expected model.KEY=VALUE or train.KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[section][name] = value
        _check_keys(section, {name: value}, "--set")
    return out


def resolve(profile: str | None = None, config: str | os.PathLike | None = None, sets: list[str] = (),
            seed: int | None = None, default_profile: str = "quick") -> RunConfig:
    """The run configuration from a profile, a TOML file, ``--set`` overrides and a seed (in that order)."""
    doc = read_toml(config) if config is not None else {}
    if profile is not None and "profile" in doc and doc["profile"] != profile:
        raise InputError("--profile", f"{profile!r} disagrees with profile = {doc['profile']!r} in {config}")
    name = profile or doc.get("profile") or default_profile
    model, train = dict(doc.get("model", {})), dict(doc.get("train", {}))
    _build(name, model, train, str(config or "--profile"))  # the file's own errors name the file
    over = parse_set(list(sets))
    model.update(over["model"])
    train.update(over["train"])
    if seed is not None:
        train["seed"] = seed
    return _build(name, model, train, "--set")


def from_dict(d: dict, where: str) -> RunConfig:
    """A run's saved configuration (run.json "config")."""
    try:
        return _build(d["profile"], d["model"], d["train"], where)
    except KeyError as e:
        raise InputError(where, f"config lacks {e.args[0]!r}") from None
