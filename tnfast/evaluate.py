"""`tnfast evaluate`: did the model learn anything beyond the signature all perturbations share?

Predictions come from a run (its model applied to the evaluated genes, :mod:`tnfast.predict`)
or from a preds.zarr written by `tnfast infer`. Truth is a split of the bundle (default: test
when it has signatures, else valid) or measured signatures in GCTX/TSV files (matched to the
bundle's genes by perturbed gene id and type; several signatures of one gene and type are
averaged, as the importer does).

Per type, every predictor is scored on the same genes, per signature, then averaged:

- ``pcc``, ``abs_pcc`` (the paper's mean |PCC|), ``pearson_delta`` (PCC of deviations from the
  TRAINING mean of the type; 0 for the training mean however high its PCC), ``mse``;
- ``ks_d``: the two-sample KS statistic of the pooled predicted vs measured values;
- ``top50_direction``: sign agreement on each true signature's 50 landmarks of largest |value|;
- retrieval: the rank of the true gene among all evaluated genes of the type when their
  measured signatures are ranked by Pearson similarity to the prediction, both taken as
  deviations from the training mean (so the shared pattern cannot help and a constant
  prediction gets the chance rank); median rank, top-1 and top-10 hit rates.

Predictors: ``model`` and the baselines of :mod:`tnfast.baselines` (``mean``, ``ridge``,
``ridge_effects`` where a type has an own-landmark or chromosome-arm effect, ``knn``, ``network``, ``other_type``,
``oracle``), each fitted only on the bundle's training signatures of the type
(hyper-parameters on its valid signatures) with the evaluated genes removed from both pools,
so no prediction ever sees its own signature. Bundles with a noise-free
truth (the synthetic ones) add two ceilings: ``oracle``, the truth itself, and ``oracle_inputs``
(:func:`inputs_ceiling`), a ridge on the inputs fitted to the truth of every other gene, which
says how much of the oracle the inputs can show at all. ``other_type`` is scored
only on the genes another type measured (its ``n`` says how many). Results are also broken
down by whether a gene was measured in another type and by tertiles of its total network
degree. Flags say plainly when the model is no better than the training mean on PearsonΔ, or
when a baseline matches or beats it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .arm_effect import location_codes
from .atomic import atomic_file
from .baselines import (RidgeFit, knn_baseline, landmark_effects_baseline, network_average, other_type_baseline,
                        ridge_baseline, ridge_residual_baseline, total_degree, training_mean)
from .data.bundle import TYPES, Bundle, load_bundle
from .design import DesignConfig, design_matrix
from .errors import InputError
from .metrics import (abs_pearson, ks_d, mean_se, paired_lead, pearson_delta, retrieval_ranks, retrieval_summary,
                      row_mse, row_pearson, snap_to_mean, top_k_direction)
from .own_effect import landmark_of_genes
from .runs import check_same_bundle, latest_run, read_run, runs_root
from .typical import typical_baseline

EVAL_SPLITS = ("valid", "test")
PREDICTORS = ("model", "mean", "typical", "ridge", "ridge_effects", "ridge_residual", "knn", "network", "other_type",
              "oracle_inputs", "oracle")
LABELS = {"model": "model", "mean": "training mean", "typical": "typical deviation", "ridge": "ridge",
          "ridge_effects": "ridge + landmark effects", "ridge_residual": "ridge + residual",
          "knn": "kNN", "network": "network average", "other_type": "other type",
          "oracle_inputs": "inputs ceiling", "oracle": "oracle (noise-free)"}
CEILINGS = ("oracle_inputs", "oracle")  # read the truth: bars above the model, not baselines to beat
# Order of the tables: PearsonΔ first.
METRICS = ("pearson_delta", "pcc", "abs_pcc", "mse", "ks_d", "top50_direction",
           "retrieval_median_rank", "retrieval_top1", "retrieval_top10")
PER_SIGNATURE = ("pearson_delta", "pcc", "abs_pcc", "mse", "top50_direction")
TOP_K = 50
NO_BETTER = "no better than the training mean"


@dataclass
class TypeDetail:
    """Per-signature material of one type, for plots: rows are the evaluated genes."""

    gene_ids: np.ndarray  # (n,) str
    truth: np.ndarray  # (n, L) measured signatures
    mean: np.ndarray  # (L,) training mean
    preds: dict[str, np.ndarray]  # predictor -> (n, L); NaN rows where it does not apply
    scores: dict[str, dict[str, np.ndarray]]  # predictor -> metric -> (n,); NaN where it does not apply
    degree: np.ndarray  # (n,) total degree across layers
    strata: dict[str, dict[str, np.ndarray]]  # stratification -> stratum -> (n,) bool


@dataclass
class Evaluation:
    summary: dict  # the JSON document
    details: dict[str, TypeDetail] = field(default_factory=dict)
    run_dir: Path | None = None


# --------------------------------------------------------------------------- prediction sources

class _RunPredictions:
    """The run's model, applied to genes named by id."""

    def __init__(self, run_dir: Path, bundle: Bundle | None):
        from .predict import load_predictor

        self.p = load_predictor(run_dir, bundle)
        self.types = self.p.types
        self.landmarks = self.p.bundle.landmarks
        self.where = run_dir
        self._index = self.p.bundle.gene_index()

    def __call__(self, ptype: str, gene_ids: np.ndarray) -> np.ndarray:
        return self.p.predict(ptype, _positions(self._index, gene_ids, self.where, ptype, "not in the run's bundle"))


class _StorePredictions:
    """Predictions read from a preds.zarr (the output contract of `tnfast infer`; :func:`tnfast.preds.open_preds`)."""

    def __init__(self, path: Path):
        from .preds import open_preds

        p = open_preds(path)  # complete, of this format, coordinates matching the array
        self.where = path
        self.run_id = p.attrs.get("run_id")
        self.types = p.types.tolist()
        self.landmarks = p.landmarks
        self.arr = p.predictions
        self._index = {g: i for i, g in enumerate(p.genes.tolist())}

    def __call__(self, ptype: str, gene_ids: np.ndarray) -> np.ndarray:
        idx = _positions(self._index, gene_ids, self.where, ptype, "missing from the store")
        order = np.argsort(idx, kind="stable")
        vals = np.empty((len(idx), len(self.landmarks)), np.float32)
        if len(idx):
            vals[order] = self.arr.get_orthogonal_selection((self.types.index(ptype), idx[order], slice(None)))
        bad = ~np.isfinite(vals).all(axis=1)
        if bad.any():
            raise InputError(self.where, f"NaN or infinite {ptype} predictions for gene {gene_ids[bad][0]} "
                                         f"({int(bad.sum())} genes)")
        return vals


def _positions(index: dict[str, int], gene_ids: np.ndarray, where, ptype: str, absent: str) -> np.ndarray:
    """Positions of ``gene_ids`` by ``index``; ids it lacks are one error saying they are ``absent``."""
    ids = gene_ids.tolist()  # plain str: a message shows 1060, not np.str_('1060')
    idx = np.array([index.get(g, -1) for g in ids], np.int64)
    if (idx < 0).any():
        bad = [g for g, i in zip(ids, idx.tolist()) if i < 0]
        genes_are = "gene is" if len(bad) == 1 else "genes are"
        raise InputError(where, f"{len(bad)} evaluated {ptype} {genes_are} {absent} (e.g. {bad[0]})")
    return idx


def _align(src: np.ndarray, dst: np.ndarray, where, what: str) -> np.ndarray:
    """Positions in ``src`` of each id of ``dst``; the two must hold the same ids."""
    src_ids, dst_ids = (np.asarray(a).astype(str).tolist() for a in (src, dst))  # plain str, for messages too
    pos = {x: i for i, x in enumerate(src_ids)}
    idx = np.array([pos.get(x, -1) for x in dst_ids], np.int64)
    if (idx < 0).any() or len(src) != len(dst):
        extra = sorted(set(src_ids) - set(dst_ids))
        lacking = [x for x, i in zip(dst_ids, idx.tolist()) if i < 0]
        example = f"{lacking[0]} is missing" if lacking else f"{extra[0]} is not in the bundle"
        raise InputError(where, f"{what} ids differ from the bundle's ({len(src)} vs {len(dst)}; {example})")
    return idx


# --------------------------------------------------------------------------- truth

def _truth_sets(files: Sequence[str | os.PathLike], bundle: Bundle, notes: list[str],
                gene_field: str = "pert_gene_id") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{type: (bundle gene indices, (n, L) measured signatures)} from GCTX/TSV files (a GCTX
    names each signature's gene in its column metadata field ``gene_field``)."""
    from .data.importer import read_signature_file

    index = bundle.gene_index()
    sums: dict[str, dict[int, np.ndarray]] = {}
    counts: dict[str, dict[int, int]] = {}
    total = unknown = 0
    example = None
    for f in files:
        ptype, p = parse_truth_arg(f)
        for t, genes, landmarks, values in read_signature_file(p, ptype, gene_field):
            order = _align(landmarks, bundle.landmarks, p, "landmark")
            values = np.asarray(values, np.float64)[:, order]
            for g, v in zip(genes.tolist(), values):
                total += 1
                i = index.get(g, -1)
                if i < 0:
                    unknown += 1
                    example = example or (p, g)
                    continue
                s = sums.setdefault(t, {})
                s[i] = s.get(i, 0) + v
                counts.setdefault(t, {})[i] = counts.get(t, {}).get(i, 0) + 1
    if not sums:
        p, g = example if example else (files[0], "?")
        raise InputError(p, f"none of the {total} truth signatures names a gene of the bundle (e.g. {g!r}); "
                            f"genes are matched by perturbed gene id (--gene-field)")
    if unknown:
        notes.append(f"{unknown} of {total} truth signatures name genes not in the bundle; skipped")
    out = {}
    for t in TYPES:
        if t in sums:
            genes = np.array(sorted(sums[t]), np.int64)
            vals = np.stack([sums[t][i] / counts[t][i] for i in genes.tolist()]).astype(np.float32)
            out[t] = (genes, vals)
    return out


def parse_truth_arg(arg: str | os.PathLike) -> tuple[str | None, Path]:
    """'FILE' or 'TYPE=FILE' -> (type or None, path). A TSV/CSV matrix needs its type this way."""
    from .data.importer import parse_type

    text = os.fspath(arg)
    head, sep, tail = text.partition("=")
    if sep and not Path(text).exists():
        try:
            return parse_type(head, "--truth"), Path(tail)
        except InputError:
            pass
    p = Path(text)
    if p.suffix.lower() != ".gctx":
        raise InputError(p, "a TSV/CSV truth matrix needs its type: --truth RNAi=FILE (or CRISPR=, OE=)")
    return None, p


def read_truth(files: Sequence[str | os.PathLike], bundle: Bundle,
               gene_field: str = "pert_gene_id") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Public form of the truth-file reader: {type: (bundle gene indices, signatures)}."""
    return _truth_sets(files, bundle, [], gene_field)


# --------------------------------------------------------------------------- scoring

def per_signature(pred: np.ndarray, truth: np.ndarray, mean: np.ndarray) -> dict[str, np.ndarray]:
    """The per-signature metrics of one predictor: metric -> (n,)."""
    return {"pearson_delta": pearson_delta(pred, truth, mean), "pcc": row_pearson(pred, truth),
            "abs_pcc": abs_pearson(pred, truth), "mse": row_mse(pred, truth),
            "top50_direction": top_k_direction(pred, truth, TOP_K)}


def _summary(scores: dict[str, np.ndarray], ranks: np.ndarray, pred: np.ndarray, truth: np.ndarray,
             rows: np.ndarray) -> dict:
    """Averages over ``rows`` (a bool mask over the evaluated genes) of one predictor."""
    n = int(rows.sum())
    out: dict = {"n": n}
    for k in PER_SIGNATURE:
        out[k] = float(np.mean(scores[k][rows])) if n else float("nan")
    pd = scores["pearson_delta"][rows]
    out["pearson_delta_se"] = mean_se(pd)
    out["ks_d"] = ks_d(pred[rows], truth[rows]) if n else float("nan")
    out.update(retrieval_summary(ranks[rows]))
    return {k: out[k] for k in ("n", *METRICS, "pearson_delta_se")}


def score(truth: np.ndarray, preds: dict[str, np.ndarray], mean: np.ndarray,
          strata: dict[str, dict[str, np.ndarray]] | None = None) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Score every predictor of one type against ``truth`` (n, L).

    ``preds``: predictor -> (n, L), NaN rows where it has no prediction; ``mean``: the training
    mean; ``strata``: stratification -> stratum -> (n,) bool. Returns (summary: predictor ->
    averaged metrics, plus ``strata`` and ``flags``; per-signature scores: predictor -> metric ->
    (n,) with NaN where the predictor does not apply).
    """
    truth = np.asarray(truth, np.float64)
    n = len(truth)
    summary: dict = {"n": n}
    per_sig: dict[str, dict[str, np.ndarray]] = {}
    ranks_of: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    preds = {name: snap_to_mean(pred, mean) for name, pred in preds.items()}
    for name, pred in preds.items():
        mask = np.isfinite(pred).all(axis=1)
        masks[name] = mask
        s = {k: np.full(n, np.nan) for k in PER_SIGNATURE}
        for k, v in per_signature(pred[mask], truth[mask], mean).items():
            s[k][mask] = v
        ranks = np.full(n, np.nan)
        ranks[mask] = retrieval_ranks(pred[mask], truth, center=mean, true_index=np.flatnonzero(mask))
        per_sig[name], ranks_of[name] = s, ranks
        summary[name] = _summary(s, ranks, pred, truth, mask)
    if "model" in per_sig:
        for name in per_sig:
            if name not in ("model", "mean", *CEILINGS):
                lead, se = paired_lead(per_sig["model"]["pearson_delta"], per_sig[name]["pearson_delta"])
                summary[name].update(model_lead=lead, model_lead_se=se)
        if "mean" in per_sig:  # the mean's PearsonΔ is 0 by definition; its PCC is the bar to clear
            lead, se = paired_lead(per_sig["model"]["pcc"], per_sig["mean"]["pcc"])
            summary["mean"].update(model_pcc_lead=lead, model_pcc_lead_se=se)
    summary["strata"] = {}
    for sname, groups in (strata or {}).items():
        summary["strata"][sname] = {}
        for gname, rows in groups.items():
            entry: dict = {"n": int(rows.sum())}
            for name, pred in preds.items():
                r = rows & masks[name]
                if r.any():
                    entry[name] = _summary(per_sig[name], ranks_of[name], pred, truth, r)
            summary["strata"][sname][gname] = entry
    summary["flags"] = flags(summary, per_sig)
    summary["notes"] = [f"{LABELS[name]} gives the model's own predictions" for name in preds
                        if name not in ("model", "mean") and "model" in preds
                        and np.allclose(preds[name], preds["model"], rtol=0, atol=1e-6, equal_nan=True)]
    return summary, per_sig


def flags(summary: dict, per_sig: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Plain statements where the model fails a bar: the training mean, then each baseline."""
    out = []
    m = summary.get("model")
    if m is None or not m["n"]:
        return out
    pd, se = m["pearson_delta"], m["pearson_delta_se"]
    if not pd > (2 * se if np.isfinite(se) else 0.0):
        se_txt = f" ± {se:.3f} s.e." if np.isfinite(se) else ""
        out.append(f"model is {NO_BETTER} on PearsonΔ ({pd:.3f}{se_txt}; not 2 s.e. above 0)")
    mean = summary.get("mean") or {}
    if np.isfinite(mean.get("model_pcc_lead_se", np.nan)) and not mean["model_pcc_lead"] > 2 * mean["model_pcc_lead_se"]:
        out.append(f"the model's PCC is not 2 paired s.e. above the training mean's "
                   f"({mean['model_pcc_lead']:+.4f} ± {mean['model_pcc_lead_se']:.4f})")
    for name in PREDICTORS:
        if name in ("model", "mean", *CEILINGS) or name not in summary or not summary[name]["n"]:
            continue
        b = summary[name]["pearson_delta"]
        rows = np.isfinite(per_sig[name]["pearson_delta"])
        mm = float(np.mean(per_sig["model"]["pearson_delta"][rows]))
        if np.array_equal(per_sig[name]["pearson_delta"], per_sig["model"]["pearson_delta"]):
            continue  # the baseline is the model itself (a note says so)
        same = "" if rows.all() else f" on its {int(rows.sum())} genes"
        if b >= mm - 1e-9:
            out.append(f"{LABELS[name]} matches or beats the model on PearsonΔ{same} ({b:.3f} vs {mm:.3f})")
            continue
        lead, se = summary[name]["model_lead"], summary[name]["model_lead_se"]
        if np.isfinite(se) and lead <= 2 * se:
            out.append(f"the model's lead over {LABELS[name]} on PearsonΔ{same} is within 2 paired s.e. "
                       f"({lead:+.3f} ± {se:.3f})")
    return out


# --------------------------------------------------------------------------- the command

def _find_run(run_id: str | None) -> Path | None:
    root = runs_root()
    if not run_id or not root.is_dir():
        return None
    for p in root.glob("*/run.json"):
        try:
            if json.loads(p.read_text()).get("run_id") == run_id:
                return p.parent
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
    return None


def evaluate(run: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
             split: str | None = None, truth: Sequence[str | os.PathLike] = (),
             preds: str | os.PathLike | None = None,
             progress: Callable[[str], None] = lambda msg: None, gene_field: str = "pert_gene_id") -> Evaluation:
    """Score a run's predictions (or a preds.zarr) and the baselines on a split or given signatures.

    ``run``: run directory (default: the newest, unless ``preds`` is given); ``data``: bundle
    (default: the run's); ``split``: ``valid`` or ``test`` (default: test when the bundle has
    test signatures, else valid); ``truth``: GCTX/TSV files of measured signatures instead of a
    split; ``preds``: a preds.zarr to score instead of running the model (written by ``run``,
    when given); ``gene_field``: the GCTX column metadata field of ``truth`` files naming the
    perturbed gene.
    """
    if split is not None and split not in EVAL_SPLITS:
        raise InputError("--split", f"expected one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if split is not None and truth:
        raise InputError("--split", "give either --split or --truth files, not both")
    notes: list[str] = []
    store = _StorePredictions(Path(preds)) if preds is not None else None
    run_dir = Path(run) if run is not None else None
    if run_dir is None:
        if store is None:
            run_dir = latest_run()
        else:
            run_dir = _find_run(store.run_id)
            if run_dir is None and data is None:
                raise InputError(preds, f"its run {store.run_id!r} is not under {runs_root()}; "
                                        f"pass --data BUNDLE (or --run RUN_DIR)")
    meta = read_run(run_dir) if run_dir is not None else None
    if run is not None and store is not None:
        _check_store_run(store, meta, run_dir)
    if data is None:
        data = meta["data"]
    data = Path(data)
    fit_splits = _fit_splits(meta, run_dir)
    refit = "valid" in fit_splits  # the baselines learn from the signatures the model learnt from
    if refit and split == "valid":
        _refuse_valid(run_dir)
    progress(f"loading {data}")
    bundle = load_bundle(data, truth=True)
    if not bundle.signatures:
        raise InputError(data, "has no signatures: nothing to train the baselines on")
    same_data = meta is not None and Path(meta["data"]).resolve() == data.resolve()
    if same_data:  # the run's context (its splits, training curves) must be this bundle's
        check_same_bundle(meta, bundle, run_dir / "run.json")

    # The evaluated genes and their measured signatures, per type.
    if truth:
        sets = _truth_sets(truth, bundle, notes, gene_field)
        for t in list(sets):
            if t not in bundle.signatures:
                notes.append(f"{t}: the bundle has no {t} training signatures; not evaluated")
                del sets[t]
        split_name = "truth-files"
    else:
        if split is None:
            split = "test" if any(len(s.rows("test")) for s in bundle.signatures.values()) else "valid"
        sets = {t: (s.gene[s.rows(split)].astype(np.int64), s.values[s.rows(split)])
                for t, s in bundle.signatures.items() if len(s.rows(split))}
        if not sets:
            raise InputError(data, f"no signatures in the {split} split (see `tnfast data info`)")
        split_name = split
        if split == "valid" and refit:  # (the default split of a bundle without test genes)
            _refuse_valid(run_dir)
        if split == "valid":
            notes.append("valid split: the model's and the baselines' hyper-parameters were chosen on it; "
                         "the test split is the unbiased one")

    if store is not None:
        source = store
        progress(f"reading predictions from {preds}")
    else:
        progress(f"loading the run {run_dir} and its inputs")
        source = _RunPredictions(run_dir, bundle if same_data else None)
    lm_order = _align(source.landmarks, bundle.landmarks, source.where, "landmark")
    for t in list(sets):
        if t not in source.types:
            notes.append(f"{t}: no predictions of this type in {source.where}; not evaluated")
            del sets[t]
    if not sets:
        raise InputError(source.where, "has no predictions for the evaluated types")

    # Inputs of the ridge and kNN baselines: the run's design matrix.
    x = None
    if isinstance(source, _RunPredictions) and same_data and source.p.x is not None:
        x = source.p.x
    else:
        try:
            progress("embedding the networks for the baselines")
            x = design_matrix(bundle, DesignConfig.from_run(meta))
        except InputError:
            notes.append("the bundle has neither networks nor features: no ridge or kNN baseline")
    degree = total_degree(bundle.networks, bundle.n_genes) if bundle.networks else None
    own = landmark_of_genes(bundle.genes, bundle.landmarks)
    locations = (location_codes(bundle.gene_locations, bundle.landmark_locations)
                 if bundle.gene_locations is not None else None)
    train_means = {o: training_mean(so.values[np.isin(so.split, fit_splits)]) for o, so in bundle.signatures.items()
                   if len(so.rows("train"))}

    summary: dict = {"split": split_name, "tnfast_version": __version__,
                     "source": {"predictions": os.fspath(preds) if store is not None else "run",
                                "run": os.fspath(run_dir) if run_dir is not None else None,
                                "data": os.fspath(data),
                                "truth_files": [os.fspath(f) for f in truth]},
                     "types": {}, "flags": [], "notes": notes}
    details: dict[str, TypeDetail] = {}
    # First every type's training pool and ridge, evaluated or not: the ridge + residual
    # baseline fits its correction on all types at once, as the model does.
    pools: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # type -> rows: (train, valid, fitted on)
    ridges: dict[str, tuple[np.ndarray, RidgeFit]] = {}  # type -> (predictions, the fit)
    evaluated = {t: sets[t][0] if t in sets else np.zeros(0, np.int64) for t in bundle.signatures}
    for t in TYPES:
        if t not in bundle.signatures:
            continue
        genes = evaluated[t]
        s = bundle.signatures[t]
        held = np.isin(s.gene, genes)  # evaluated genes never train or tune a baseline
        tr = np.flatnonzero((s.split == "train") & ~held)
        va = np.flatnonzero((s.split == "valid") & (~held if truth else True))
        fit = np.union1d(tr, va) if refit else tr  # tuned on valid, then fitted on train + valid
        if len(tr) < 2:
            if t in sets:
                raise InputError(data, f"{t} has {len(tr)} training signatures outside the evaluated genes; need 2")
            continue
        if t in sets:
            seen = int(np.isin(genes, s.gene[np.isin(s.split, fit_splits)]).sum()) if truth else 0
            if seen:
                notes.append(f"{t}: {seen} of the {len(genes)} evaluated genes are in the split(s) the model "
                             f"trained on ({', '.join(fit_splits)}): the model has seen them (the baselines have not)")
            progress(f"{t}: {len(genes)} genes; baselines from {len(fit)} training genes")
        pools[t] = tr, va, fit
        if x is not None:
            xv, yv = (x[s.gene[va]], s.values[va]) if len(va) else (None, None)
            pred, model = ridge_baseline(x[s.gene[tr]], s.values[tr], xv, yv, x[genes],
                                         (x[s.gene[fit]], s.values[fit]) if refit else None)
            ridges[t] = pred, RidgeFit(model, s.gene[tr], s.values[tr], s.gene[va], s.values[va])
    corrected = {}
    if refit:
        notes.append("the model trained on train and valid genes (train.member_valid = folds): the baselines "
                     "were tuned on valid, then fitted on train and valid; no ridge + residual (its "
                     "correction is fitted on valid residuals)")
    elif ridges and bundle.networks:
        graph, rank = _residual_inputs(bundle)
        corrected = ridge_residual_baseline(graph, x, {t: f for t, (_, f) in ridges.items()}, evaluated, rank)

    for t in TYPES:
        if t not in sets:
            continue
        genes, y = sets[t]
        s = bundle.signatures[t]
        tr, va, fit = pools[t]
        mean = training_mean(s.values[fit])
        gene_ids = bundle.genes[genes]
        preds_t: dict[str, np.ndarray] = {"model": source(t, gene_ids)[:, lm_order]}
        preds_t["mean"] = np.broadcast_to(mean, y.shape)
        extras: dict[str, dict] = {}
        pred_typ, typ_fit = typical_baseline(s.values[fit], len(genes))
        if pred_typ is not None:
            preds_t["typical"] = pred_typ
            extras["typical"] = {"fit": typ_fit}  # its own keys (pearson_delta: held-out training genes)
        if x is not None:
            preds_t["ridge"], ridge_fit = ridges[t]
            extras["ridge"] = {"alpha": ridge_fit.ridge.alpha}
            pred_fx, fx_fits = landmark_effects_baseline(preds_t["ridge"], genes, s.gene[fit], s.values[fit], own,
                                                         locations)
            if pred_fx is not None:
                preds_t["ridge_effects"] = pred_fx
                extras["ridge_effects"] = fx_fits
            if t in corrected:
                preds_t["ridge_residual"], choice = corrected[t]
                extras["ridge_residual"] = {"correction": choice}
            xv, yv = (x[s.gene[va]], s.values[va]) if len(va) else (None, None)
            preds_t["knn"], k = knn_baseline(x[s.gene[tr]], s.values[tr], xv, yv, x[genes],
                                             (x[s.gene[fit]], s.values[fit]) if refit else None)
            extras["knn"] = {"k": k}
        if bundle.networks:
            preds_t["network"], layers = network_average(bundle.networks, s.gene[fit], s.values[fit], genes, mean)
            extras["network"] = {"coverage": float((layers > 0).mean())}
        others = {o: (so.gene, so.values, train_means[o]) for o, so in bundle.signatures.items()
                  if o != t and o in train_means}
        if others:
            pred_o, has_o, src = other_type_baseline(t, genes, mean, others)
            if has_o.any():
                preds_t["other_type"] = pred_o
                extras["other_type"] = {"from": {o: int((src == o).sum()) for o in TYPES if (src == o).any()}}
        if t in bundle.truth:
            if x is not None:
                preds_t["oracle_inputs"], alpha = inputs_ceiling(x, bundle.truth[t], genes)
                extras["oracle_inputs"] = {"alpha": alpha}
            preds_t["oracle"] = np.asarray(bundle.truth[t][genes], np.float32)
        measured_other = np.zeros(len(genes), bool)
        for o, so in bundle.signatures.items():
            if o != t:
                measured_other |= np.isin(genes, so.gene)
        strata = {"measured_in_other_types": {"yes": measured_other, "no": ~measured_other}}
        deg = degree[genes] if degree is not None else np.zeros(len(genes), np.int64)
        if degree is not None:
            q1, q2 = np.quantile(deg, [1 / 3, 2 / 3])
            strata["degree_tertile"] = {"low": deg <= q1, "mid": (deg > q1) & (deg <= q2), "high": deg > q2}
        ts, per_sig = score(y, preds_t, mean, strata)
        for name, extra in extras.items():
            clash = set(extra) & set(ts[name])
            if clash:  # an extra must never replace a score
                raise RuntimeError(f"evaluate: {name}'s fit would replace its scores {sorted(clash)}")
            ts[name].update(extra)
        if "other_type" in ts:
            rows = np.isfinite(per_sig["other_type"]["pearson_delta"])
            ts["other_type"]["model_pearson_delta_same_genes"] = float(per_sig["model"]["pearson_delta"][rows].mean())
        if "degree_tertile" in strata:
            for gname, rows in strata["degree_tertile"].items():
                if rows.any():
                    ts["strata"]["degree_tertile"][gname]["degree_range"] = [int(deg[rows].min()), int(deg[rows].max())]
        summary["types"][t] = ts
        summary["flags"] += [f"{t}: {f}" for f in ts["flags"]]
        notes += [f"{t}: {n}" for n in ts["notes"]]
        details[t] = TypeDetail(gene_ids, y, mean, preds_t, per_sig, deg, strata)
    return Evaluation(summary, details, run_dir)


def inputs_ceiling(x: np.ndarray, truth: np.ndarray, genes: np.ndarray) -> tuple[np.ndarray, float]:
    """What a linear read of the inputs can reach: a ridge from ``x`` (N, p) to the noise-free
    ``truth`` (N, L) of every gene but the evaluated ``genes``, far more and cleaner supervision
    than any measured screen gives; the penalty is chosen on every tenth of those genes, then the
    ridge is fitted on all of them. Returns (predictions for ``genes``, the penalty)."""
    rest = np.setdiff1d(np.arange(len(x)), genes)
    tune = np.zeros(len(rest), bool)
    tune[::10] = True
    pred, model = ridge_baseline(x[rest[~tune]], truth[rest[~tune]], x[rest[tune]], truth[rest[tune]], x[genes],
                                 refit=(x[rest], truth[rest]))
    return pred, model.alpha


def _check_store_run(store: _StorePredictions, meta: dict, run_dir: Path) -> None:
    """A store is scored as the predictions of the --run that wrote it: another run's members may
    have trained on the evaluated genes (train.member_valid = folds), which only its own run says."""
    if store.run_id != meta["run_id"]:
        raise InputError(store.where, f"was written by run {store.run_id}, not by --run {run_dir} (run "
                                      f"{meta['run_id']}); pass the run that wrote it, or leave out --run")


def _refuse_valid(run_dir: Path):
    raise InputError("--split", f"the run {run_dir} trained its members on the valid genes "
                                "(train.member_valid = folds): score a test split, or read the "
                                "out-of-fold scores in its run.json")


def _fit_splits(meta: dict | None, run_dir: Path | None) -> tuple[str, ...]:
    """The bundle splits whose signatures trained the run's model (``("train",)`` without a run)."""
    if meta is None or meta.get("model") != "transcriptionnet":
        return ("train",)
    from .train import training_splits
    from .train_config import from_dict

    return training_splits(from_dict(meta["config"], str(run_dir / "run.json")))


def _residual_inputs(bundle: Bundle) -> tuple:
    """(graph, rank): the networks as the ridge + residual baseline diffuses over them, and the
    model's default rank. torch is imported here: scoring a predictions store needs it only
    for this baseline."""
    from .model.config import ModelConfig
    from .model.graph import MultiplexGraph

    return MultiplexGraph.from_arrays(dict(bundle.networks), bundle.n_genes), ModelConfig().residual_rank


def _clean(x):
    """JSON without NaN: NaN and infinities become null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float | np.floating):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_json(summary: dict, path: str | os.PathLike) -> Path:
    """Write the summary atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_clean(summary), indent=2) + "\n")
    return path


# --------------------------------------------------------------------------- co-annotation check

def coannotation_auroc(signatures: np.ndarray, gene_ids: np.ndarray, layer, center: np.ndarray | None = None) -> dict:
    """Are genes with similar signatures more often co-annotated? (the paper's external check)

    ``signatures``: (n, L), one per gene of ``gene_ids``; ``layer``: a co-annotation
    :class:`tnfast.data.edges.EdgeList` (e.g. GO-BP or KEGG from
    :func:`tnfast.data.orgdb.coannotation_layers`). Over all pairs of genes that the layer
    annotates (both have an edge in it), the AUROC of the signatures' Pearson similarity
    (of deviations from ``center`` when given) for telling co-annotated pairs from the rest.
    Returns {auroc, pairs, positives, genes}; auroc is NaN without both kinds of pairs.
    """
    from .metrics import _standardise_rows, auroc

    gene_ids = np.asarray(gene_ids).astype(str)
    pos = {g: i for i, g in enumerate(np.asarray(layer.genes).astype(str).tolist())}
    li = np.array([pos.get(g, -1) for g in gene_ids.tolist()], np.int64)
    keep = np.flatnonzero(li >= 0)
    out = {"auroc": float("nan"), "pairs": 0, "positives": 0, "genes": int(len(keep))}
    if len(keep) < 3:
        return out
    x = np.asarray(signatures, np.float64)[keep]
    if center is not None:
        x = x - np.asarray(center, np.float64)
    z = _standardise_rows(x)
    sim = z @ z.T
    # positives: the layer's edges among the kept genes, as a boolean (k, k) matrix
    local = np.full(len(layer.genes), -1, np.int64)
    local[li[keep]] = np.arange(len(keep))
    s, d = local[np.asarray(layer.src)], local[np.asarray(layer.dst)]
    ok = (s >= 0) & (d >= 0)
    label = np.zeros(sim.shape, bool)
    label[s[ok], d[ok]] = label[d[ok], s[ok]] = True
    iu = np.triu_indices(len(keep), 1)
    score, y = sim[iu], label[iu]
    out.update(pairs=int(len(y)), positives=int(y.sum()), auroc=auroc(score, y))
    return out


COANNOTATION_LAYERS = ("go-bp", "kegg")


def coannotation(run_dir: str | os.PathLike | None, orgdb: str | os.PathLike,
                 layers: Sequence[str] = COANNOTATION_LAYERS) -> dict:
    """The paper's external check, for measured and predicted signatures side by side.

    Per type and co-annotation layer (from org.Hs.eg.sqlite): the AUROC of signature similarity
    (Pearson of deviations from the training mean) for telling co-annotated gene pairs from the
    rest, over ``measured`` signatures (every measured gene of the type), the model's
    ``predicted`` signatures of the same genes (in-sample for training genes), and its
    predictions for ``unmeasured`` genes that have inputs. 0.5 is chance.
    """
    from .data.orgdb import coannotation_layers

    return coannotation_scores(run_dir, coannotation_layers(orgdb, layers))


def coannotation_scores(run_dir: str | os.PathLike | None, annotated: dict) -> dict:
    """:func:`coannotation` over layers already read (name -> co-annotation EdgeList): `tnfast
    evaluate` reads them before its evaluation, so a bad --orgdb fails in seconds, not after it."""
    from .predict import load_predictor

    p = load_predictor(run_dir)
    b = p.bundle
    has_input = np.zeros(b.n_genes, bool)
    for csr in b.networks.values():
        has_input |= csr.degrees() > 0
    if b.features is not None:
        has_input |= b.features.present
    out: dict = {}
    for t in p.types:
        s = b.signatures[t]
        mean = s.values[s.rows("train")].mean(axis=0)
        unmeasured = np.setdiff1d(np.flatnonzero(has_input), s.gene)
        sets = {"measured": (s.gene, s.values), "predicted": (s.gene, p.predict(t, s.gene)),
                "unmeasured": (unmeasured, p.predict(t, unmeasured))}
        out[t] = {name: {what: coannotation_auroc(sig, b.genes[genes], layer, center=mean)
                         for what, (genes, sig) in sets.items()}
                  for name, layer in annotated.items()}
    return out
