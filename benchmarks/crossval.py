"""Gene-level k-fold cross-validation of TranscriptionNet beside the baselines on one bundle.

Why: on small real data one split's scores are noise. The real example's valid split has
23-38 genes per type, so a valid PearsonΔ has a standard error of 0.05-0.06 when the
differences between models are a few hundredths. Cross-validation scores every measured gene
once. Each fold's genes are test in every type, as genes that were never measured are, so no
other-type measurement of a test gene is used. A seventh of the other genes is valid (early
stopping, the gate and shrinkage, the baselines' hyper-parameters). The rest train. (A model
whose members validate on folds of their own, ``train.member_valid = "folds"``, trains on
train and valid alike, and the baselines are then refitted on both: tnfast.evaluate.) Per fold:
``tnfast train`` with the given configuration, then ``tnfast evaluate`` on the fold's test
genes. The report pools the folds per type: per-signature scores averaged over all test
genes, and standard errors from the folds' own.

    python -m tnfast.benchmarks.crossval --data BUNDLE --out DIR [--profile NAME] [--config FILE.toml]
        [--set train.lr=3e-4 ...] [--folds 5] [--seed 0]

Without --profile (or a config naming one) the profile is `tnfast train`'s for the whole bundle
(tnfast.train_config.auto_profile: ``small`` for the real example).

A fold whose evaluation is already in DIR is not run again, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from tnfast.atomic import atomic_file
from tnfast.data.bundle import Bundle, load_bundle
from tnfast.errors import InputError
from tnfast.evaluate import evaluate, write_json
from tnfast.runs import pool_scores
from tnfast.train import resolve_device, train
from tnfast.train_config import auto_profile, resolve

PROVIDERS = ("model", "mean", "typical", "ridge", "ridge_effects", "ridge_residual", "knn", "network")


def fold_splits(bundle: Bundle, folds: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per fold, per type, the split of every signature: the fold's genes 'test' in every type,
    a seventh of the other measured genes 'valid', the rest 'train'."""
    genes = np.unique(np.concatenate([s.gene for s in bundle.signatures.values()]))
    if not 2 <= folds <= len(genes):
        raise InputError("--folds", f"expected 2..{len(genes)} (the measured genes), got {folds}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(genes)
    out = []
    for k in range(folds):
        test = order[k::folds]
        rest = np.setdiff1d(order, test)
        valid = rng.permutation(rest)[: len(rest) // 7]
        out.append({t: np.where(np.isin(s.gene, test), "test", np.where(np.isin(s.gene, valid), "valid", "train"))
                    for t, s in bundle.signatures.items()})
    return out


# pooled per provider: the means (PearsonΔ, PCC, the paper's mean |PCC|) and PearsonΔ's s.e., and the model's paired leads (over a baseline's
# PearsonΔ, over the mean's PCC; tnfast.metrics.paired_lead) with theirs
POOLED = ("pearson_delta", "pcc", "abs_pcc", "pearson_delta_se", "model_lead", "model_lead_se", "model_pcc_lead",
          "model_pcc_lead_se")


def pool(evaluations: list[dict]) -> dict:
    """Per type and provider, over the folds' evaluate summaries (tnfast.runs.pool_scores):
    PearsonΔ, PCC, mean |PCC| and the model's paired leads averaged over every test signature (fold means
    weighted by n), their s.e. from the folds' (the model predicts every gene, so a lead's genes
    are the baseline's); a lead only where every fold has it (folds evaluated before leads were
    reported have none)."""
    out: dict = {}
    for t in dict.fromkeys(t for ev in evaluations for t in ev["types"]):
        for p in PROVIDERS:
            parts = [ev["types"][t][p] for ev in evaluations if p in ev["types"].get(t, {})]
            if parts:
                out.setdefault(t, {})[p] = pool_scores(parts, POOLED)
    return out


def crossval(data: Path, out: Path, config: Path | None = None, sets: list[str] = (), folds: int = 5,
             seed: int = 0, log=print, profile: str | None = None) -> dict:
    bundle = load_bundle(data)
    cfg = resolve(profile, config, list(sets), default_profile=auto_profile(data, resolve_device("auto").type)[0])
    evaluations = []
    for k, split in enumerate(fold_splits(bundle, folds, seed)):
        fold = out / f"fold{k}"
        eval_path = fold / "eval.json"
        if not eval_path.exists():
            for t, s in bundle.signatures.items():
                s.split = split[t]
            bundle.save(fold / "bundle", overwrite=True)
            if (fold / "run").exists():  # an interrupted fold starts again
                shutil.rmtree(fold / "run")
            log(f"fold {k + 1}/{folds}: training")
            train(fold / "bundle", fold / "run", cfg)
            write_json(evaluate(fold / "run", split="test").summary, eval_path)
        evaluations.append(json.loads(eval_path.read_text()))
    report = {"data": str(data), "config": cfg.to_dict(), "folds": folds, "seed": seed, "types": pool(evaluations)}
    with atomic_file(out / "crossval.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tnfast.benchmarks.crossval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--profile")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        report = crossval(a.data, a.out, a.config, a.sets, a.folds, a.seed, profile=a.profile)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for t, provs in report["types"].items():
        print(t, "  ".join(f"{p} {m['pearson_delta']:.3f}±{m['pearson_delta_se']:.3f} (PCC {m['pcc']:.3f}, |PCC| {m['abs_pcc']:.3f}"
                           + (f", model {m['model_lead']:+.3f}±{m['model_lead_se']:.3f}" if "model_lead" in m else "")
                           + (f", model PCC {m['model_pcc_lead']:+.4f}±{m['model_pcc_lead_se']:.4f}"
                              if "model_pcc_lead" in m else "") + ")"
                           for p, m in provs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
