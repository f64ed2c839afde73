"""The TranscriptionNet model: multiplex GAT encoder -> FunDNN first guesses -> GenSAN refinement.

Typical use (the training loop owns the order; all values in the Scaler's units unless said)::

    graph = MultiplexGraph.for_model(bundle, cfg).to(device)   # same call at inference
    model = TranscriptionNet(cfg, ModelDims.from_graph(graph, len(bundle.landmarks))).to(device)
    model.scaler.fit_bundle(bundle)                          # training rows only
    meas = Measurements.from_bundle(bundle, ("train",), model.scaler).to(device)
    model.fit_prior(graph, genes, types, scaled_truth)       # training samples only
    gen = torch.Generator().manual_seed(seed)                # CPU generator: edge sampling
    emb = model.encode(graph)                                # (N, E), once per step
    rec = model.reconstruction_loss(emb, graph, gen)         # unsupervised, all genes
    values, avail = meas.gather(genes)                       # drop some avail at random: most
    pred = model(emb, genes, target, values, avail, graph=graph)  # genes are unmeasured at inference
    loss = signature_loss(pred, model.scaler.transform(truth, target), cfg.beta) + w * rec

Everything learned or fitted (including the scaler) is a parameter or buffer, so
``torch.save(model.state_dict(), f)`` loads back with ``torch.load(f, weights_only=True)``;
rebuilding needs ``ModelConfig.to_dict()`` and ``ModelDims.to_dict()`` (plain JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn

from ..data.bundle import TYPES
from .arm_effect import ArmEffect
from .config import PROFILES, ModelConfig, profile
from .encoder import MultiplexEncoder, masked_fusion
from .gensan import AxialBlock, GenSAN
from .graph import MultiplexGraph
from .heads import FunDNN
from .loss import row_pearson, signature_loss
from .own_landmark import OwnLandmark
from .prior import RidgePrior, n_prior_inputs, prior_inputs
from .reconstruction import reconstruction_loss, sample_pairs
from .samples import Measurements, gensan_input, split_samples
from .scaler import Scaler
from .smoothing import ResidualCorrection
from .subspace import OutputSubspace
from .typical import TypicalDeviation

__all__ = [
    "ArmEffect", "AxialBlock", "FunDNN", "GenSAN", "Measurements", "ModelConfig", "ModelDims", "ModelOutput",
    "MultiplexEncoder", "MultiplexGraph", "OwnLandmark", "PROFILES", "RidgePrior", "Scaler", "TranscriptionNet", "ensemble_predict", "gensan_input",
    "masked_fusion", "member_measurements", "profile", "reconstruction_loss", "row_pearson", "sample_pairs", "signature_loss", "split_samples",
]


@dataclass(frozen=True)
class ModelDims:
    """The data-dependent sizes a model is built for (saved beside the config to rebuild it)."""

    n_genes: int
    n_layers: int
    n_features: int
    n_landmarks: int
    n_structural: int = 0

    @classmethod
    def from_graph(cls, graph: MultiplexGraph, n_landmarks: int) -> "ModelDims":
        return cls(graph.n_genes, graph.n_layers, graph.n_features, int(n_landmarks), graph.n_structural)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelDims":
        return cls(**{k: int(d[k]) for k in ("n_genes", "n_layers", "n_features", "n_landmarks")},
                   n_structural=int(d.get("n_structural", 0)))


class ModelOutput(NamedTuple):
    pred: torch.Tensor  # (n, L) refined prediction of each sample's target type
    first_guess: torch.Tensor  # (n, T, L) FunDNN guesses, every type
    refined: torch.Tensor  # (n, T, L) GenSAN output, every row
    recon: torch.Tensor | None  # reconstruction loss when asked for, else None


class TranscriptionNet(nn.Module):
    """Gene embedding from the networks, a first guess per type, refined by GenSAN.

    Shapes: N genes, E = ``config.embedding_dim``, T = 3 types (TYPES order: RNAi, CRISPR,
    OE), L landmarks. Signature tensors are in the units of ``self.scaler`` (per type and
    landmark standardised on the training split) except where a method says otherwise.
    """

    def __init__(self, config: ModelConfig, dims: ModelDims):
        super().__init__()
        self.config, self.dims = config, dims
        n_types = len(TYPES)
        self.encoder = MultiplexEncoder(config, dims.n_genes, dims.n_layers, dims.n_features, dims.n_structural)
        n_prior = n_prior_inputs(dims.n_structural, dims.n_features, self.encoder.use_features)
        # FunDNN's first guess = ridge prior (fixed inputs, closed form) + MLP (learned embedding)
        self.prior = RidgePrior(n_prior, dims.n_landmarks, n_types) if config.ridge_prior and n_prior else None
        self.fundnn = FunDNN(config.embedding_dim, dims.n_landmarks, config.fundnn_hidden, config.dropout, n_types,
                             zero_last=self.prior is not None)
        self.gensan = GenSAN(dims.n_landmarks, config, n_types)
        self.residual = (ResidualCorrection(dims.n_genes, config.residual_rank, dims.n_landmarks, n_types)
                         if config.residual_rank > 0 and dims.n_layers else None)
        self.subspace = OutputSubspace(dims.n_landmarks, n_types) if config.output_subspace else None
        self.own_landmark = OwnLandmark(dims.n_genes, dims.n_landmarks, n_types) if config.own_landmark else None
        self.arm_effect = ArmEffect(dims.n_genes, dims.n_landmarks, n_types) if config.arm_effect else None
        self.typical = TypicalDeviation(dims.n_landmarks, n_types) if config.typical_deviation else None
        self.scaler = Scaler(dims.n_landmarks, n_types, config.scale_per_landmark)
        # Fitted per type on the valid split after training (tnfast.train.fit_output_scales),
        # 1 = none: ``gate`` weighs what training added to the ridge prior (prediction = prior +
        # gate x (model - prior)); then the residual correction is added, the result projected
        # onto the output subspace (rank 0 = none); ``shrink`` scales the
        # predicted deviation from the training mean (scaled units are centred on it). Last, fitted
        # on the training split: the typical deviation is added, then the chromosome-arm shift,
        # and the own-landmark effect sets landmark genes' own landmark.
        self.register_buffer("gate", torch.ones(n_types))
        self.register_buffer("shrink", torch.ones(n_types))

    # ---- the three stages -----------------------------------------------------------------
    def encode(self, graph: MultiplexGraph) -> torch.Tensor:
        """(N, E) embeddings of every gene: a full-graph pass (one GAT kernel call per depth)."""
        return self.encoder(graph)

    def first_guess(self, emb_rows: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """(n, E) embeddings of some genes -> (n, T, L) FunDNN guesses, every type. ``inputs``:
        the genes' (n, P) :meth:`prior_inputs`, needed once the ridge prior is fitted."""
        return self._guess(emb_rows, self._prior_rows(inputs))

    def _prior_rows(self, inputs: torch.Tensor | None) -> torch.Tensor | None:
        """(n, T, L) ridge prior of the genes whose prior inputs are ``inputs``; None without one."""
        if self.prior is None:
            return None
        if inputs is None:
            if bool(self.prior.fitted.any()):
                raise ValueError("this model's ridge prior is fitted; pass the genes' prior inputs "
                                 "(model.prior_inputs(graph, genes))")
            return None
        return self.prior(inputs)

    def _guess(self, emb_rows: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        guess = self.fundnn(emb_rows)
        return guess if base is None else guess + base.to(guess.dtype)

    def prior_inputs(self, graph: MultiplexGraph, genes: torch.Tensor) -> torch.Tensor | None:
        """(n, P) fixed inputs of ``genes`` that the ridge prior reads; None without a prior."""
        if self.prior is None:
            return None
        return prior_inputs(graph, genes, self.dims.n_layers, self.encoder.use_features)

    @torch.no_grad()
    def fit_prior(self, graph: MultiplexGraph, genes: torch.Tensor, types: torch.Tensor, truth: torch.Tensor) -> None:
        """Fit the ridge prior on training samples: genes (n,), types (n,), truth (n, L) scaled."""
        if self.prior is not None:
            self.prior.fit(self.prior_inputs(graph, genes), types, truth)

    def refine(self, x: torch.Tensor, is_measured: torch.Tensor, recycles: int | None = None) -> torch.Tensor:
        """GenSAN: (n, T, L) input matrices + (n, T) bool measured flags -> (n, T, L).
        ``recycles`` overrides ``config.recycles`` (same weights either way)."""
        return self.gensan(x, is_measured, recycles)

    # ---- training -----------------------------------------------------------------------------
    def forward(self, emb: "torch.Tensor | MultiplexGraph", genes: torch.Tensor, target: torch.Tensor,
                measured: torch.Tensor | None = None, available: torch.Tensor | None = None,
                return_all: bool = False, generator: torch.Generator | None = None,
                graph: MultiplexGraph | None = None):
        """Predictions for a batch of (gene, target type) samples, leakage-free.

        Args:
            emb: (N, E) from :meth:`encode` (computed once per step, shared by the batch), or
                the :class:`MultiplexGraph` itself: then the encoder runs inside this call (one
                forward does everything, as ``DistributedDataParallel`` wants).
            genes: (n,) gene indices; target: (n,) type indices (0 RNAi, 1 CRISPR, 2 OE).
            measured, available: (n, T, L) and (n, T) from :meth:`Measurements.gather`: the
                measurements that may be used as inputs (at training: training split only).
                The target's own measurement is never used (see ``gensan_input``).
            return_all: return a :class:`ModelOutput` instead of the prediction alone.
            generator: with a graph as ``emb``, also compute the reconstruction loss with it.
            graph: the graph ``emb`` came from, when ``emb`` is a tensor (the ridge prior's inputs).

        Returns:
            (n, L) the refined prediction for each sample's target type, in scaled units; with
            ``return_all`` (or a ``generator``) a :class:`ModelOutput` (pred, first_guess (n, T, L),
            refined (n, T, L), recon scalar or None). The target row of ``first_guess`` is the
            FunDNN prediction (e.g. for an auxiliary loss).
        """
        recon = None
        if isinstance(emb, MultiplexGraph):
            graph = emb
            emb = self.encode(graph)
            if generator is not None:
                recon = self.reconstruction_loss(emb, graph, generator)
        elif generator is not None:
            raise ValueError("forward: a generator (reconstruction loss) needs the graph as first argument")
        genes = genes.to(emb.device).long()
        target = target.to(emb.device).long()
        inputs = self.prior_inputs(graph, genes) if graph is not None else None
        guess = self.first_guess(emb.index_select(0, genes), inputs)
        x, is_measured = gensan_input(guess, target, measured, available)
        refined = self.refine(x, is_measured)
        pred = refined[torch.arange(len(genes), device=emb.device), target]
        if return_all or recon is not None:
            return ModelOutput(pred, guess, refined, recon)
        return pred

    def reconstruction_loss(self, emb: torch.Tensor, graph: MultiplexGraph, generator: torch.Generator,
                            n_edges: int | None = None, negatives: int | None = None) -> torch.Tensor:
        """BIONIC-style loss: ``config.recon_edges`` sampled edges per layer vs
        ``config.negatives_per_edge`` random non-edges each; deterministic given ``generator``."""
        cfg = self.config
        return reconstruction_loss(
            emb, graph, generator,
            cfg.recon_edges if n_edges is None else n_edges,
            cfg.negatives_per_edge if negatives is None else negatives,
            self.encoder.recon_bias,
        )

    # ---- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, emb_rows: torch.Tensor, measured: torch.Tensor | None = None,
                available: torch.Tensor | None = None, unscale: bool = True,
                inputs: torch.Tensor | None = None, genes: torch.Tensor | None = None) -> torch.Tensor:
        """(n, T, L) predictions of every type for n genes, in the signatures' units when
        ``unscale`` (else scaled); ``inputs`` as for :meth:`first_guess`; ``genes``: the (n,)
        gene indices, needed once the residual correction or the own-landmark effect is fitted.
        Each type t is predicted as a sample with target t (its own measurement never used);
        genes with no usable measurement in another type share one GenSAN run for all their
        types (their three inputs are identical). Then ``gate``, ``shrink``, the typical deviation
        and the landmark effects apply (see ``__init__``)."""
        n, t_n = emb_rows.shape[0], len(TYPES)
        base = self._prior_rows(inputs)
        guess = self._guess(emb_rows, base).float()  # float32 out, also under autocast
        dev = guess.device
        if available is None or measured is None:
            avail = torch.zeros(n, t_n, dtype=torch.bool, device=dev)
        else:
            avail = available.to(dev, torch.bool)
        # need[g, t]: predicting type t of gene g uses a measurement of another type
        need = (avail.sum(dim=1, keepdim=True) - avail.long()) > 0
        out = torch.empty_like(guess)
        for t in range(t_n):
            idx = torch.nonzero(need[:, t]).flatten()
            if idx.numel():
                tgt = torch.full((idx.numel(),), t, dtype=torch.long, device=dev)
                x, m = gensan_input(guess[idx], tgt, measured[idx], avail[idx])
                out[idx, t] = self.refine(x, m)[:, t]
        # the rest: the input is the three first guesses, the same for every target type
        rows = torch.nonzero((~need).any(dim=1)).flatten()
        if rows.numel():
            ref = self.refine(guess[rows], torch.zeros(rows.numel(), t_n, dtype=torch.bool, device=dev))
            out[rows] = torch.where(need[rows][..., None], out[rows], ref)
        if base is not None:
            base = base.float()
            out = base + self.gate.to(out)[None, :, None] * (out - base)
        if self.residual is not None:
            if genes is not None:
                out = out + self.residual(genes).to(out)
            elif self.residual.fitted:
                raise ValueError("this model's residual correction is fitted; pass the genes' indices (genes=)")
        if self.subspace is not None:
            out = self.subspace(out)
        out = out * self.shrink.to(out)[None, :, None]
        if self.typical is not None:
            out = self.typical(out)
        for name, effect in (("chromosome-arm", self.arm_effect), ("own-landmark", self.own_landmark)):
            if effect is not None:
                if genes is not None:
                    out = effect(out, genes)
                elif bool(effect.on.any()):
                    raise ValueError(f"this model's {name} effect is fitted; pass the genes' indices (genes=)")
        return self.scaler.inverse(out) if unscale else out

    @torch.no_grad()
    def predict_genes(self, emb: torch.Tensor, genes: torch.Tensor, measurements: Measurements | None = None,
                      batch: int = 512, graph: MultiplexGraph | None = None) -> torch.Tensor:
        """(n, T, L) float32 predictions of every type for gene indices ``genes`` (n,), in the
        signatures' units, ``batch`` genes at a time. ``emb``: (N, E) from :meth:`encode`;
        ``measurements``: what may serve as inputs for the other types (its gene's own target
        never does, see :meth:`predict`); None: nothing measured. ``graph``: the graph ``emb``
        came from (the ridge prior's inputs; needed once it is fitted)."""
        genes = genes.to(emb.device).long()
        outs = []
        for i in range(0, len(genes), batch):
            g = genes[i:i + batch]
            values, avail = measurements.gather(g) if measurements is not None else (None, None)
            inputs = self.prior_inputs(graph, g) if graph is not None else None
            outs.append(self.predict(emb.index_select(0, g), values, avail, inputs=inputs, genes=g).float())
        if not outs:
            return emb.new_zeros(0, len(TYPES), self.dims.n_landmarks, dtype=torch.float32)
        return torch.cat(outs)


@torch.no_grad()
def ensemble_predict(members: Sequence[tuple[TranscriptionNet, torch.Tensor, Measurements | None]],
                     genes: torch.Tensor, graph: MultiplexGraph | None = None) -> torch.Tensor:
    """(n, T, L) float32: the mean over ``members`` (triples of a model, its :meth:`encode` of
    ``graph`` and the measurements it may use, scaled by its scaler: :func:`member_measurements`)
    of their :meth:`predict_genes`, summed in member order; one member gives its own predictions
    unchanged."""
    total = None
    for model, emb, meas in members:
        p = model.predict_genes(emb, genes, meas, graph=graph)
        total = p if total is None else total.add_(p)
    return total if len(members) == 1 else total / len(members)


def member_measurements(bundle, splits: Sequence[str], models: Sequence[TranscriptionNet],
                        device: torch.device) -> list[Measurements]:
    """Per model, :meth:`Measurements.from_bundle` of ``splits`` in its scaler's units; one object
    is shared by models whose scalers are equal (members fitted on the same training rows)."""
    out: list[Measurements] = []
    for k, model in enumerate(models):
        same = next((out[j] for j in range(k) if _same_scaler(models[j].scaler, model.scaler)), None)
        out.append(same if same is not None else Measurements.from_bundle(bundle, splits, model.scaler).to(device))
    return out


def _same_scaler(a: Scaler, b: Scaler) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.buffers(), b.buffers()))
