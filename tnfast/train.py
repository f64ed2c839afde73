"""`tnfast train`: TranscriptionNet trained end to end, resumable, with early stopping.

Schedule: ``pretrain_steps`` of network reconstruction alone (the encoder learns the networks
before any signature pulls on it), then joint steps: each runs the encoder over the whole
multiplex once (the fused kernels make a full-graph pass cheaper than BIONIC's neighbour
sampling), adds the reconstruction loss, and trains the signature loss of a batch of training
(gene, type) samples through FunDNN and GenSAN back into the encoder. Half of each sample's
usable measurements of the other types are hidden at random, because most genes have none at
prediction time. Every ``eval_every`` steps: validation (PCC, PearsonΔ per type with the
training-split measurements as the only inputs, i.e. valid genes are predicted as unmeasured
genes), a line in ``metrics.jsonl``, the best model kept in ``model.pt``, and a checkpoint;
``patience`` evaluations without a better mean valid PearsonΔ end training.

Run directory (under ``$TNFAST_RUNS`` or ./runs unless ``--out``):
``config.toml`` the resolved configuration (``--config`` reads it back); ``train.json`` data
path and run id; ``metrics.jsonl``; ``checkpoint.pt`` the last state (model, optimiser, every
RNG, sample order) while training; ``model.pt`` the best weights; ``run.json`` written last
(complete run). An ensemble (``train.ensemble`` > 1) trains its members one after the other,
each exactly as a one-member run with its seed would, into ``model.pt``, ``model.1.pt``, ...;
the checkpoint says which member is training and what run.json will say of those done. With
``train.member_valid = "folds"`` member k validates on the k-th of K folds of the train and
valid genes and trains on the rest (:func:`member_bundle`); run.json then has out-of-fold
scores in place of valid ones. All
``.pt`` files are written atomically and load with ``weights_only=True``.
Resuming from ``checkpoint.pt`` replays exactly what the interrupted run would have done: every
random draw comes from generators whose state the checkpoint holds, so on CPU a resumed run
ends with the same weights, bit for bit, as an uninterrupted one.

Under torchrun the processes train one model with DistributedDataParallel: each takes its
share of every batch; the full-graph encoder pass and reconstruction samples are the same on
every rank.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .arm_effect import location_codes
from .atomic import atomic_file
from .data.bundle import TYPES, Bundle, load_bundle
from .distributed import barrier, broadcast, world
from .errors import InputError
from .model import (Measurements, ModelDims, MultiplexGraph, TranscriptionNet, ensemble_predict, member_measurements,
                    signature_loss, split_samples)
from .own_effect import landmark_of_genes
from .runs import (EMBEDDING, bundle_fingerprint, check_same_bundle, latest_incomplete_run, load_embedding,
                   member_weights, new_run_id, pool_scores, read_json, run_record, runs_root, save_embedding,
                   signature_scores, split_scores)
from .train_config import RunConfig, TrainConfig, auto_profile, from_dict, resolve

MODEL_KIND = "transcriptionnet"
StepCallback = Callable[[int, int, str, float], None]  # (step, total, phase, loss)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise InputError("--device", f"expected auto, cpu or cuda, got {name!r}")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device", "cuda requested but no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA (precision auto or bf16); plain fp32 otherwise."""
    if precision == "bf16" and device.type != "cuda":
        raise InputError("train.precision", "bf16 is for CUDA devices; use fp32 or auto on CPU")
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_graph(bundle: Bundle, cfg: RunConfig, device: torch.device,
                structural: np.ndarray | None = None) -> MultiplexGraph:
    """The model's graph of ``bundle``; ``structural``: the run's network embedding
    (:func:`run_embedding`), else computed (seeded by ``cfg.train.seed``)."""
    return MultiplexGraph.for_model(bundle, cfg.model, cfg.train.seed, structural).to(device)


def new_model(graph: MultiplexGraph, cfg: RunConfig, n_landmarks: int, seed: int) -> TranscriptionNet:
    """A freshly initialised model for ``graph``, its weights drawn from ``seed``, on the graph's device."""
    torch.manual_seed(seed)
    return TranscriptionNet(cfg.model, ModelDims.from_graph(graph, n_landmarks)).to(graph.device)


def build_model(bundle: Bundle, cfg: RunConfig, device: torch.device,
                structural: np.ndarray | None = None) -> tuple[TranscriptionNet, MultiplexGraph]:
    """The graph and a freshly initialised model (seeded by ``cfg.train.seed``) for ``bundle``."""
    graph = build_graph(bundle, cfg, device, structural)
    return new_model(graph, cfg, len(bundle.landmarks), cfg.train.seed), graph


def run_embedding(run_dir: Path, bundle: Bundle, cfg: RunConfig, rank: int) -> np.ndarray | None:
    """The structural inputs a run trains with: computed by rank 0 and saved in the run (see
    tnfast.embed for why a run keeps its own); what every rank, a resumed run and inference load."""
    m = cfg.model
    if not (m.structural_dim and bundle.networks):
        return None
    if rank == 0 and not (run_dir / EMBEDDING).exists():
        save_embedding(run_dir, bundle.structural_inputs(m.structural_dim, cfg.train.seed, m.use_edge_weights))
    barrier()
    return load_embedding(run_dir, bundle, m.structural_dim)


@dataclass
class _Valid:
    """The validation set, prepared once: every valid (gene, type) and the union of their genes."""

    genes: torch.Tensor  # (g,) distinct genes with a valid signature of some type
    types: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # type -> (positions in genes, truth, train mean)

    @classmethod
    def from_bundle(cls, bundle: Bundle, types: list[str]) -> "_Valid":
        rows = {t: bundle.signatures[t].rows("valid") for t in types}
        genes = np.unique(np.concatenate([bundle.signatures[t].gene[r] for t, r in rows.items()] + [np.zeros(0, int)]))
        out = {}
        for t, r in rows.items():
            if len(r):
                s = bundle.signatures[t]
                out[t] = (np.searchsorted(genes, s.gene[r]), s.values[r], s.values[s.rows("train")].mean(axis=0))
        return cls(torch.from_numpy(genes.astype(np.int64)), out)


def _valid_predictions(model: TranscriptionNet, graph: MultiplexGraph, meas: Measurements, valid: _Valid,
                       device: torch.device, precision: str, emb: torch.Tensor | None = None) -> torch.Tensor:
    """(g, T, L) predictions (signature units, CPU) of the valid genes, as unmeasured genes.
    ``emb``: the model's :meth:`encode` of ``graph`` when the caller has it (else computed)."""
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        emb = model.encode(graph) if emb is None else emb
        return model.predict_genes(emb, valid.genes, meas, graph=graph).cpu()


def _validate(model: TranscriptionNet, graph: MultiplexGraph, meas: Measurements, valid: _Valid,
              device: torch.device, precision: str) -> dict:
    """Per type: n, PCC, PearsonΔ, MSE (signature units) and the scaled signature loss."""
    pred = _valid_predictions(model, graph, meas, valid, device, precision)
    out = {}
    for t, (pos, truth, mean) in valid.types.items():
        ti = TYPES.index(t)
        p = pred[pos, ti].numpy()
        tt = torch.full((len(pos),), ti, dtype=torch.long, device=device)
        loss = signature_loss(model.scaler.transform(torch.from_numpy(p).to(device), tt),
                              model.scaler.transform(torch.from_numpy(truth).to(device), tt), model.config.beta)
        out[t] = {**signature_scores(p, truth, mean), "loss": float(loss)}
    return out


def _save(obj, path: Path) -> None:
    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def load_tensors(path: Path, device: torch.device):
    """``torch.load(weights_only=True)``; a truncated or foreign file is one line, not a traceback."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise InputError(path, f"cannot load ({type(e).__name__}: {e})") from None


def resume_dir(out: Path | None) -> tuple[Path, Path, RunConfig, str]:
    """(run dir, data, config, run id) of the interrupted run at ``out`` (default: the newest)."""
    run_dir = out if out is not None else latest_incomplete_run()
    if (run_dir / "run.json").exists():
        raise InputError(run_dir, "is a complete run; nothing to resume")
    if not (run_dir / "train.json").is_file():
        raise InputError(run_dir, "is not an interrupted tnfast run (no train.json); cannot resume")
    meta = read_json(run_dir / "train.json")
    return run_dir, Path(meta["data"]), from_dict(meta["config"], str(run_dir / "train.json")), meta["run_id"]


def _descend(model: TranscriptionNet, opt: torch.optim.Optimizer, loss: torch.Tensor, clip_norm: float) -> None:
    loss.backward()
    if clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    opt.step()


def reconstruction_step(model: TranscriptionNet, graph: MultiplexGraph, opt: torch.optim.Optimizer,
                        gen: torch.Generator, tc: TrainConfig, dev: torch.device) -> torch.Tensor:
    """One optimiser step of network reconstruction alone (pretraining); the loss."""
    opt.zero_grad(set_to_none=True)
    with autocast(dev, tc.precision):
        loss = model.reconstruction_loss(model.encode(graph), graph, gen)
    _descend(model, opt, loss, tc.clip_norm)
    return loss


def _new_run_dir(data: Path, out: Path | None, cfg: RunConfig, rank: int, fingerprint: str) -> tuple[Path, str]:
    """Create the run directory with config.toml and train.json (rank 0); (run dir, run id)."""
    run_id = broadcast(new_run_id())
    run_dir = out if out is not None else runs_root() / run_id
    taken = run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir()))
    barrier()  # every rank has looked before rank 0 writes
    if taken:
        raise InputError(run_dir, "already exists (pass --resume to continue an interrupted run there, or another --out)")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(cfg.to_toml())
        meta = {"run_id": run_id, "data": str(data), "bundle": fingerprint, "created": time.time(),
                "config": cfg.to_dict()}
        with atomic_file(run_dir / "train.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
    barrier()
    return run_dir, run_id


def _check_bundle(bundle: Bundle, data: Path, world_size: int, batch_size: int) -> list[str]:
    if not bundle.signatures:
        raise InputError(data, "has no signatures to train on (import some with --signatures)")
    for t, s in bundle.signatures.items():
        if len(s.rows("train")) < 2:
            raise InputError(data, f"{t} has {len(s.rows('train'))} training signatures; need at least 2")
    if batch_size % world_size:
        raise InputError("train.batch_size", f"{batch_size} does not split evenly over {world_size} processes")
    return [t for t in TYPES if t in bundle.signatures]


def train(data: str | os.PathLike | None, out: str | os.PathLike | None = None, cfg: RunConfig | None = None,
          device: str = "auto", resume: bool = False, progress: Callable[[str], None] = lambda msg: None,
          on_step: StepCallback = lambda step, total, phase, loss: None) -> tuple[Path, dict]:
    """Train TranscriptionNet on the bundle at ``data``; returns (run directory, summary per type and split).

    ``resume``: continue the interrupted run at ``out`` (default: the newest one) with its saved
    configuration and data; ``data`` and ``cfg`` are then ignored. No ``cfg``: the defaults of
    the profile `tnfast train` would choose (:func:`tnfast.train_config.auto_profile`). With
    ``train.ensemble`` = K, K members are trained one after the other (:func:`member_config`)
    and scored as their mean.
    """
    if data is None and not resume:
        raise InputError("--data", "a bundle directory is needed (or --resume)")
    rank, size = world()
    dev = resolve_device(device)
    if resume:
        run_dir, data, cfg, run_id = resume_dir(Path(out) if out is not None else None)
    else:
        data = Path(data).resolve()
        cfg = cfg or resolve(default_profile=auto_profile(data, dev.type)[0])
    bundle = load_bundle(data)
    fingerprint = bundle_fingerprint(bundle)
    if resume:
        check_same_bundle(read_json(run_dir / "train.json"), bundle, run_dir / "train.json")
    types = _check_bundle(bundle, data, size, cfg.train.batch_size)
    if cfg.train.member_valid == "folds":  # every member's re-split trains too
        for k in range(cfg.train.ensemble):
            _check_bundle(member_bundle(bundle, cfg, k), data, size, cfg.train.batch_size)
    if not resume:  # only now, so bad input leaves no run directory behind
        run_dir, run_id = _new_run_dir(data, Path(out) if out is not None else None, cfg, rank, fingerprint)
    tc = cfg.train
    progress(f"building the model ({cfg.profile} profile) on {dev}")
    if cfg.model.arm_effect and bundle.gene_locations is None and "CRISPR" in bundle.signatures and not bundle.truth:
        progress("no gene locations in the bundle, so no chromosome-arm effect for CRISPR "  # (real data)
                 "(`tnfast data import` places Entrez ids by itself; other ids need `--locations`)")
    graph = build_graph(bundle, cfg, dev, run_embedding(run_dir, bundle, cfg, rank))
    ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
    ck = load_tensors(ckpt_path, dev) if resume and ckpt_path.exists() else None
    if resume and ck is None:
        progress(f"{run_dir} has no checkpoint yet: starting it from the beginning")
        metrics_path.unlink(missing_ok=True)
    first = ck.get("member", 0) if ck is not None else 0
    members = list(ck.get("done", [])) if ck is not None else []  # what run.json says of each finished member
    # the member to resume mid-training (a checkpoint between two members holds no model)
    ck_member = ck if ck is not None and "model" in ck else None
    if ck is not None and rank == 0 and metrics_path.exists():  # drop records written after the checkpoint
        last = (first, ck.get("step", 0))
        recs = [(ln, json.loads(ln)) for ln in metrics_path.read_text().splitlines()]
        keep = [ln for ln, rec in recs if (rec.get("member", 0), rec["step"]) <= last]
        with atomic_file(metrics_path) as tmp:
            tmp.write_text("".join(ln + "\n" for ln in keep))
    for k in range(first, tc.ensemble):
        mcfg = member_config(cfg, k)
        if tc.ensemble > 1:
            progress(f"member {k + 1} of {tc.ensemble} (seed {mcfg.train.seed})")
        members.append(_train_member(member_bundle(bundle, cfg, k), graph, mcfg, k, run_dir, types, dev, rank, size,
                                     ck_member if k == first else None, members, progress, on_step))
    progress(_scoring(bundle, tc))
    summary = summarize(load_members(run_dir, bundle, graph, cfg, dev), graph, bundle, types, dev, cfg)
    if rank == 0:
        with atomic_file(run_dir / "run.json") as tmp:
            tmp.write_text(run_record(run_id, MODEL_KIND, data, types, cfg.to_dict(), summary, bundle=fingerprint,
                                      dims=ModelDims.from_graph(graph, len(bundle.landmarks)).to_dict(),
                                      members=members))
        ckpt_path.unlink(missing_ok=True)
    return run_dir, summary


def _scoring(bundle: Bundle, tc: TrainConfig) -> str:
    """What :func:`summarize` scores on this bundle, in words."""
    has = [sp for sp in ("valid", "test") if any(len(s.rows(sp)) for s in bundle.signatures.values())]
    mean = f" with the mean of the {tc.ensemble} members" if tc.ensemble > 1 else ""
    if tc.member_valid == "split":
        return f"scoring {' and '.join(has)}{mean}" if has else "no valid or test signatures to score"
    # the valid genes trained most members: every measured gene by the member that held it out
    return "scoring out of fold" + (f", and test{mean}" if "test" in has else "")


def member_config(cfg: RunConfig, k: int) -> RunConfig:
    """The configuration member ``k`` of an ensemble trains with: the run's, seeded ``seed + k``
    (member 0 is what a one-member run trains)."""
    return replace(cfg, train=replace(cfg.train, seed=cfg.train.seed + k))


def gene_folds(bundle: Bundle, folds: int, seed: int) -> np.ndarray:
    """(n_genes,) int64: the fold (0..folds-1) of each gene with a train or valid signature of
    some type, dealt at random (``seed``) so that fold sizes differ by at most one; -1 for the
    other genes. A gene's signatures of every type go to its one fold, as a gene never measured
    has none of them."""
    genes = np.unique(np.concatenate([s.gene[s.split != "test"] for s in bundle.signatures.values()]))
    if len(genes) < folds:
        raise InputError("train.member_valid", f"folds: {len(genes)} genes with train or valid signatures "
                                               f"cannot make {folds} folds (train.ensemble)")
    out = np.full(bundle.n_genes, -1, np.int64)
    out[np.random.default_rng(seed).permutation(genes)] = np.arange(len(genes)) % folds
    return out


def member_bundle(bundle: Bundle, cfg: RunConfig, k: int) -> Bundle:
    """The bundle member ``k`` trains on: ``bundle`` itself (``train.member_valid = "split"``),
    or (``"folds"``) its signatures re-split by :func:`gene_folds` (seeded by the run's seed):
    valid in fold k, train in the others, test kept test."""
    tc = cfg.train
    if tc.member_valid == "split":
        return bundle
    fold = gene_folds(bundle, tc.ensemble, tc.seed)
    sigs = {t: replace(s, split=np.where(s.split == "test", "test", np.where(fold[s.gene] == k, "valid", "train")))
            for t, s in bundle.signatures.items()}
    return replace(bundle, signatures=sigs)


def training_splits(cfg: RunConfig) -> tuple[str, ...]:
    """The bundle's splits whose signatures trained the run's model (valid too when every
    member validated on a fold of its own)."""
    return ("train", "valid") if cfg.train.member_valid == "folds" else ("train",)


def load_members(run_dir: Path, bundle: Bundle, graph: MultiplexGraph, cfg: RunConfig,
                 device: torch.device) -> list[TranscriptionNet]:
    """The run's trained members (``cfg.train.ensemble`` of them), in eval mode on ``device``;
    a file that is not this model's weights is one line naming it."""
    out = []
    for k in range(cfg.train.ensemble):
        path = member_weights(run_dir, k)
        # made on the device: the random initialisation (overwritten in full below: loading is
        # strict) then costs no CPU time and no copy
        with torch.device(device):
            model = new_model(graph, cfg, len(bundle.landmarks), cfg.train.seed)
        try:
            weights = load_tensors(path, device)
            # saved before the output subspace, the landmark effects or the typical deviation
            # existed: none (defaults)
            later = {"subspace": model.subspace, "own_landmark": model.own_landmark, "arm_effect": model.arm_effect,
                     "typical": model.typical}
            weights = {**{f"{name}.{k}": v for name, m in later.items() if m is not None
                          for k, v in m.state_dict().items()}, **weights}
            model.load_state_dict(weights)
        except (RuntimeError, TypeError) as e:  # missing, extra or misshapen tensors
            raise InputError(path, f"cannot load model weights ({type(e).__name__}: {e})") from None
        out.append(model.eval())
    return out


def _train_member(bundle: Bundle, graph: MultiplexGraph, cfg: RunConfig, k: int, run_dir: Path, types: list[str],
                  dev: torch.device, rank: int, size: int, ck: dict | None, done: list[dict],
                  progress: Callable[[str], None], on_step: StepCallback) -> dict:
    """Train member ``k`` (from the checkpoint ``ck`` when resuming it), fit its output scales,
    save its weights; what run.json records of it. ``done``: the records of the members before it
    (the checkpoint carries them)."""
    tc = cfg.train
    model = new_model(graph, cfg, len(bundle.landmarks), tc.seed)
    model.scaler.fit_bundle(bundle)
    meas = Measurements.from_bundle(bundle, ("train",), model.scaler).to(dev)
    s_genes, s_types, s_values = split_samples(bundle, "train", types)
    s_genes, s_types = torch.from_numpy(s_genes), torch.from_numpy(s_types)
    s_truth = model.scaler.transform(torch.from_numpy(s_values).to(dev), s_types.to(dev))
    model.fit_prior(graph, s_genes, s_types, s_truth)
    valid = _Valid.from_bundle(bundle, types)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    gen_batch = torch.Generator().manual_seed(tc.seed + 1)  # sample order, hidden measurements
    gen_recon = torch.Generator().manual_seed(tc.seed + 2)  # reconstruction edge samples
    batch = min(tc.batch_size, len(s_genes) - len(s_genes) % size)
    st = {"step": 0, "pos": 0, "perm": torch.randperm(len(s_genes), generator=gen_batch),
          "best_score": -math.inf, "best_step": -1, "bad": 0, "stopped": False}
    ckpt_path, metrics_path = run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"
    best_path = member_weights(run_dir, k)
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        gen_batch.set_state(ck["rng"]["batch"])
        gen_recon.set_state(ck["rng"]["recon"])
        torch.set_rng_state(ck["rng"]["torch"])
        if dev.type == "cuda" and "cuda" in ck["rng"]:
            torch.cuda.set_rng_state(ck["rng"]["cuda"], dev)
        st.update({key: ck[key] for key in st})
        progress(f"resuming {run_dir} at step {st['step']}")

    net = model
    if size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    n_pre = tc.pretrain_steps if graph.n_edges else 0  # nothing to reconstruct without networks
    total = n_pre + tc.steps
    label = f"member {k + 1}/{tc.ensemble} " if tc.ensemble > 1 else ""
    t0, losses = time.time(), []
    while st["step"] < total and not st["stopped"]:
        pretrain = st["step"] < n_pre
        for group in opt.param_groups:
            group["lr"] = learning_rate(tc, st["step"] - n_pre)
        model.train()
        if pretrain:
            # identical on every rank (same generator): no gradient exchange needed
            loss = rec = reconstruction_step(model, graph, opt, gen_recon, tc, dev)
            sig = None
        else:
            if st["pos"] + batch > len(st["perm"]):
                st["perm"], st["pos"] = torch.randperm(len(s_genes), generator=gen_batch), 0
            idx = st["perm"][st["pos"]:st["pos"] + batch]
            st["pos"] += batch
            keep = torch.rand(batch, len(TYPES), generator=gen_batch) >= tc.drop_available
            idx, keep = idx[rank::size], keep[rank::size]
            genes, target = s_genes[idx].to(dev), s_types[idx].to(dev)
            values, avail = meas.gather(genes)
            opt.zero_grad(set_to_none=True)
            with autocast(dev, tc.precision):
                out = net(graph, genes, target, values, avail & keep.to(dev), generator=gen_recon)
                truth = s_truth[idx.to(dev)]
                sig = signature_loss(out.pred, truth, model.config.beta)
                guess = out.first_guess[torch.arange(len(idx), device=dev), target]
                rec = out.recon
                loss = sig + tc.guess_weight * signature_loss(guess, truth, model.config.beta) + tc.recon_weight * rec
            _descend(model, opt, loss, tc.clip_norm)
        st["step"] += 1
        losses.append((loss.item(), rec.item(), None if sig is None else sig.item()))
        if not math.isfinite(losses[-1][0]):
            raise InputError(run_dir, f"the loss became {losses[-1][0]} at step {st['step']}; lower train.lr "
                                      "(the last checkpoint is kept: fix the config and retrain)")
        on_step(st["step"], total, label + ("pretrain" if pretrain else "train"), losses[-1][0])
        if st["step"] % tc.eval_every and st["step"] != total:
            continue
        record = {"member": k, "step": st["step"], "phase": "pretrain" if pretrain else "train",
                  "epoch": max(st["step"] - n_pre, 0) * batch / len(s_genes),
                  "train_loss": float(np.mean([x[0] for x in losses])),
                  "recon_loss": float(np.mean([x[1] for x in losses]))}
        sigs = [x[2] for x in losses if x[2] is not None]
        if sigs:
            record["signature_loss"] = float(np.mean(sigs))
        losses = []
        if not pretrain and valid.types:
            v = _validate(model, graph, meas, valid, dev, tc.precision)
            score = float(np.mean([m["pearson_delta"] for m in v.values()]))
            record.update(valid_loss=float(np.mean([m["loss"] for m in v.values()])), valid=v, score=score)
            if score > st["best_score"] + 1e-4:
                st.update(best_score=score, best_step=st["step"], bad=0)
                record["best"] = True
                if rank == 0:
                    _save(model.state_dict(), best_path)
            else:
                st["bad"] += 1
                st["stopped"] = st["bad"] >= tc.patience
            progress(f"{label}step {st['step']}: valid PearsonΔ " + ", ".join(f"{t} {m['pearson_delta']:.3f}"
                                                                                 for t, m in v.items()))
        record["elapsed_s"] = round(time.time() - t0, 1)
        if rank == 0:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            rng = {"batch": gen_batch.get_state(), "recon": gen_recon.get_state(), "torch": torch.get_rng_state()}
            if dev.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(dev)
            _save({"member": k, "done": done, "model": model.state_dict(), "optim": opt.state_dict(), "rng": rng,
                   **st}, ckpt_path)

    if st["best_step"] < 0 and rank == 0:  # no validation split (or no joint step): keep the last weights
        _save(model.state_dict(), best_path)
    barrier()
    model.load_state_dict(load_tensors(best_path, dev))
    subspace_fits = {}
    if valid.types:
        subspace_fits = fit_output_scales(model, graph, meas, valid, dev, tc.precision, (s_genes, s_types, s_truth))
    own_fits = None
    if model.own_landmark is not None:
        own = torch.from_numpy(landmark_of_genes(bundle.genes, bundle.landmarks))
        own_fits = {TYPES[t]: f for t, f in model.own_landmark.fit(own, s_genes, s_types, s_truth).items()}
    arm_fits = None
    if model.arm_effect is not None and bundle.gene_locations is not None:
        codes = location_codes(bundle.gene_locations, bundle.landmark_locations)
        arm_fits = {TYPES[t]: f for t, f in model.arm_effect.fit(
            tuple(torch.from_numpy(c) for c in codes), s_genes, s_types, s_truth).items()}
    typical_fits = None
    if model.typical is not None:
        typical_fits = {TYPES[t]: f for t, f in model.typical.fit(s_types, s_truth, model.scaler.mean,
                                                                 model.scaler.std).items()}
    if rank == 0 and (valid.types or own_fits is not None or arm_fits is not None
                      or typical_fits is not None):  # something was fitted
        _save(model.state_dict(), best_path)
    best = (f"best step {st['best_step']} (valid PearsonΔ {st['best_score']:.3f})" if st["best_step"] >= 0
            else f"no validation: the weights of step {st['step']} kept")
    progress(f"{label}{best}"
             + (f"; own landmark: {own_landmark_text(own_fits)}" if own_fits else "")
             + (f"; chromosome arm: {arm_effect_text(arm_fits)}" if arm_fits else "")
             + (f"; typical deviation: {typical_text(typical_fits)}" if typical_fits else ""))
    record = {"seed": tc.seed, "best_step": st["best_step"], "steps": st["step"],
              "gate": dict(zip(TYPES, model.gate.tolist())), "shrink": dict(zip(TYPES, model.shrink.tolist())),
              "own_landmark": own_fits,
              "arm_effect": arm_fits,
              "typical_deviation": typical_fits,
              "residual_correction": None if model.residual is None
              else {TYPES[t]: c for t, c in model.residual.choice.items()},
              "output_subspace": None if model.subspace is None else {
                  t: subspace_fits.get(ti, {"rank": int(r)})
                  for ti, (t, r) in enumerate(zip(TYPES, model.subspace.rank.tolist()))}}
    if rank == 0 and k + 1 < tc.ensemble:  # the next member starts afresh, this one is done
        _save({"member": k + 1, "done": [*done, record]}, ckpt_path)
    barrier()
    return record


def own_landmark_text(fits: dict[str, dict]) -> str:
    """'RNAi z -5.35 (46 genes), OE off (z +1.40 ± 0.70, 28 genes)': a member's own-landmark fits."""
    return ", ".join(f"{t} z {f['z']:+.2f} ({f['n']} genes)" if f["on"]
                     else f"{t} off (z {f['z']:+.2f} ± {f['se']:.2f}, {f['n']} genes)" for t, f in fits.items())


def arm_effect_text(fits: dict[str, dict]) -> str:
    """'CRISPR distal -0.62, proximal_1mb -0.65, other_arm -0.12; RNAi, OE off': the classes a
    member's chromosome-arm fits turned on, per type."""
    on = {t: ", ".join(f"{c} {r['z']:+.2f}" for c, r in f.items() if r["on"]) for t, f in fits.items()}
    off = [t for t, txt in on.items() if not txt]
    return "; ".join([f"{t} {txt}" for t, txt in on.items() if txt] + ([f"{', '.join(off)} off"] if off else []))


def typical_text(fits: dict[str, dict]) -> str:
    """'OE 0.05 (PearsonΔ +0.091 ± 0.023 held out); RNAi, CRISPR off': a member's typical
    deviations, the size in median deviations."""
    on = [f"{t} {f['size']:.2f} (PearsonΔ {f['pearson_delta']:+.3f} ± {f['se']:.3f} held out)"
          for t, f in fits.items() if f["on"]]
    off = [t for t, f in fits.items() if not f["on"]]
    return "; ".join(on + ([f"{', '.join(off)} off"] if off else []))


def learning_rate(tc: TrainConfig, joint_step: int) -> float:
    """The rate of a step: ``lr`` while pretraining (joint_step < 0), then a cosine from ``lr`` to
    ``lr * lr_final`` over the ``steps`` joint steps. A function of the step alone, so a resumed
    run follows the same schedule."""
    if joint_step < 0 or tc.steps <= 1:
        return tc.lr
    t = min(joint_step / (tc.steps - 1), 1.0)
    return tc.lr * (tc.lr_final + (1 - tc.lr_final) * 0.5 * (1 + math.cos(math.pi * t)))


# The least shrinkage factor: at 0 a type's predictions would all be the training mean, the
# same for every gene (no direction left to rank or compare genes by), on the word of a valid
# split that on small data holds a few dozen genes; 0.1 keeps the direction at a tenth of the size.
MIN_SHRINK = 0.1


def _least_squares_factor(x: torch.Tensor, y: torch.Tensor, low: float = 0.0) -> float:
    """The c in [low, 1] minimising |y - c x|^2 (1 when x is 0)."""
    den = float((x * x).sum())
    return min(max(float((x * y).sum()) / den, low), 1.0) if den > 0 else 1.0


@torch.no_grad()
def fit_output_scales(model: TranscriptionNet, graph: MultiplexGraph, meas: Measurements, valid: _Valid,
                      device: torch.device, precision: str,
                      train_samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[int, dict]:
    """Set ``model.gate``, then the residual correction, the output subspace, and ``model.shrink``,
    per type. Returns per type index what the subspace fit chose (:meth:`OutputSubspace.fit`).

    ``gate``: the factor in [0, 1] of least valid MSE (scaled units) on what training added to
    the ridge prior (small data: where the network's correction is noise, the model falls back
    to the ridge). The residual correction (:mod:`tnfast.model.smoothing`): the gated model's
    residuals and the signatures of the training samples (genes, types, scaled truth:
    ``train_samples``) diffused over the networks, mixed by factors fitted on valid. The output
    subspace (:mod:`tnfast.model.subspace`): the training signatures' principal directions, the
    rank chosen on valid. ``shrink`` (at least ``MIN_SHRINK``) on the deviation from the
    training mean. PearsonΔ is blind to the shrink, PCC and MSE are not: a model that has learnt
    a little gene-specific signal and much noise is pulled back towards the mean, as ridge's
    penalty does."""
    model.gate.fill_(1.0)
    model.shrink.fill_(1.0)
    for effect in (model.own_landmark, model.arm_effect, model.typical):
        if effect is not None:
            effect.on.zero_()  # fitted after these (a resumed member may hold it)
    if model.residual is not None:
        model.residual.clear()  # the residuals are those of the model without it
    if model.subspace is not None:
        model.subspace.rank.zero_()
    model.eval()
    with autocast(device, precision):
        emb = model.encode(graph)  # one encoder pass for the valid and the training predictions
    pred = _valid_predictions(model, graph, meas, valid, device, precision, emb).to(device)
    # the prior alone, scaled units, every valid gene and type: (g, T, L)
    prior = None if model.prior is None else model.prior(model.prior_inputs(graph, valid.genes)).float()
    scaled = {}  # type index -> (valid gene indices, gated prediction, truth), scaled units
    for t, (pos, truth, _) in valid.types.items():
        ti = TYPES.index(t)
        rows = torch.from_numpy(pos).to(device)
        tt = torch.full((len(pos),), ti, dtype=torch.long, device=device)
        p = model.scaler.transform(pred[rows, ti], tt)
        y = model.scaler.transform(torch.from_numpy(truth).to(device), tt)
        if prior is not None and bool(model.prior.fitted[ti]):
            base = prior[rows, ti]
            model.gate[ti] = _least_squares_factor(p - base, y - base)
            p = base + model.gate[ti] * (p - base)
        scaled[ti] = (valid.genes.to(device)[rows], p, y)
    if model.residual is not None and scaled:
        training = _training_residuals(model, graph, meas, emb, train_samples, device, precision)
        model.residual.fit(graph, training, {ti: (genes, y - p) for ti, (genes, p, y) in scaled.items()})
        for ti, (genes, p, y) in scaled.items():
            scaled[ti] = (genes, p + model.residual(genes)[:, ti].to(p), y)
    fits = {}
    if model.subspace is not None:
        _, types, truth = train_samples
        for ti, (g, p, y) in scaled.items():
            fits[ti] = model.subspace.fit(ti, truth[types == ti].to(device), p, y, model.scaler.std[ti])
            scaled[ti] = (g, model.subspace.project(ti, p), y)
    for ti, (_, p, y) in scaled.items():
        model.shrink[ti] = _least_squares_factor(p, y, MIN_SHRINK)
    return fits


def _training_residuals(model: TranscriptionNet, graph: MultiplexGraph, meas: Measurements, emb: torch.Tensor,
                        samples: tuple[torch.Tensor, torch.Tensor, torch.Tensor], device: torch.device,
                        precision: str) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per type index: (gene indices, truth - prediction, truth), scaled units (the truth is its
    deviation from the training mean), of the training samples, each predicted as during
    validation (its own signature never an input); ``emb``: the model's :meth:`encode` of ``graph``."""
    genes, types, truth = (x.to(device) for x in samples)
    uniq, inv = torch.unique(genes, return_inverse=True)
    with torch.no_grad(), autocast(device, precision):
        pred = model.predict_genes(emb, uniq, meas, graph=graph).to(device)
    p = model.scaler.transform(pred[inv, types], types)
    r = truth.float() - p
    return {int(t): (genes[types == t], r[types == t], truth[types == t].float()) for t in torch.unique(types)}


def summarize(members: list[TranscriptionNet], graph: MultiplexGraph, bundle: Bundle, types: list[str],
              device: torch.device, cfg: RunConfig) -> dict:
    """:func:`tnfast.runs.split_scores` of the members' mean on valid and test, the signatures
    of :func:`training_splits` as inputs. Members validated on folds of their own: no valid
    scores (most members trained on those genes) but ``out_of_fold`` ones, every train and valid
    signature predicted by the one member that held its gene out, beside that member's training
    mean, pooled over the members."""
    with torch.no_grad(), autocast(device, cfg.train.precision):
        encoded = [(member.eval(), member.encode(graph)) for member in members]

        def scores(b: Bundle, models: list[tuple[TranscriptionNet, torch.Tensor]], inputs, splits) -> dict:
            meas = member_measurements(b, inputs, [m for m, _ in models], device)
            trip = [(m, e, x) for (m, e), x in zip(models, meas)]

            def predict(t: str, genes: np.ndarray) -> np.ndarray:
                pred = ensemble_predict(trip, torch.from_numpy(genes.astype(np.int64)), graph)
                return pred[:, TYPES.index(t)].cpu().numpy()

            return split_scores(b, predict, types, splits, inputs)

        if cfg.train.member_valid == "split":
            return scores(bundle, encoded, ("train",), ("valid", "test"))
        out = scores(bundle, encoded, training_splits(cfg), ("test",))
        # member k on its own bundle: fold k is its valid split, its training rows its only inputs
        folds = [scores(member_bundle(bundle, cfg, k), [pair], ("train",), ("valid",))
                 for k, pair in enumerate(encoded)]
    for t in types:
        parts = [f[t]["valid"] for f in folds if "valid" in f[t]]
        if parts:
            out[t]["out_of_fold"] = {who: pool_scores([p[who] for p in parts]) for who in parts[0]}
    return out
