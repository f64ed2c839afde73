"""The embedded default dataset: a synthetic problem with the shape and difficulty of the real one.

Generative model (one ``numpy.random.Generator`` stream per stage, all from ``seed``):

1. **Genes.** Entrez-like ids (unique integers as strings). Each gene has a *popularity*
   (Pareto: a few genes are studied far more than the rest) and a *biological module*
   (lognormal module sizes). Landmarks are 978 ids, drawn from the universe when it is large
   enough, otherwise from the same id space.
2. **Network layers** (disease, drug, complex, pathway, chromosome, ppi, sequence). Each layer
   covers its own subset of genes (popular genes are in more layers; a few genes are in none)
   and has its own modules: a fraction ``align`` of genes gets the module its biological module
   maps to, the rest a random one, so layers are partly redundant, partly not. Edges come from
   a hierarchical degree-corrected stochastic block model: some anywhere, some inside the
   layer's module, some inside the part of it that shares a biological module; endpoints are
   drawn by ``searchsorted`` on cumulative weights ``popularity ** hubness`` (power-law degrees,
   hubs with thousands of neighbours), topped up until the deduplicated edge count is reached.
   Weighted layers give within-module edges higher weights, as confidence scores do.
3. **Latent gene factors.** Per layer: a mix of the gene's biological-module vector and the
   layer-module vector, smoothed over the layer's graph by a few steps of normalised
   propagation (so a gene's factor depends on its neighbourhood), standardised. Layers are
   combined with per-block weights: one block shared by all types, one block of each type's
   own, each leaning on the layers differently. A private, network-invisible part is added.
4. **Signatures.** ``truth = alpha * pattern_t + effect_t``: ``pattern_t`` is the large common
   pattern of type t (the training mean already reaches per-signature PCC ~0.7), ``effect_t``
   the gene-specific part: the latent factors through a low-rank loading to 978 landmarks, plus
   a little full-rank per-module part. CRISPR follows RNAi closely, OE partly opposes it, and
   each type has its own block. Observed values add heavy-tailed measurement noise and a
   low-rank batch effect, only for the measured genes (exact counts; the screens overlap and
   favour popular genes). All values are clipped to [-1, 1] like min-max-scaled L1000 data.
5. **Features** (optional in real bundles, present here): a 64-d noisy projection of a part of
   the latent factors for a subset of genes (small numbers, std ~0.02, as real embeddings).

The noise-free ``truth`` of every gene and type is kept in ``Bundle.truth`` so evaluations can
show an oracle ceiling. Calibration on the test split (checked on ``small`` by
tests/test_synth.py, about the same on ``full``): the training mean has per-signature PCC ~0.75
and PearsonDelta 0; the average of measured network neighbours PearsonDelta ~0.3; the noise-free
truth PearsonDelta ~0.83 against the noisy observations.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from .bundle import TYPES, Bundle, Features, Signatures
from .csr import CSR, build_csr
from .splits import assign_splits

GENERATOR_VERSION = 1
N_LANDMARKS = 978


@dataclass(frozen=True)
class Layer:
    name: str
    share: float  # fraction of the scale's edges in this layer
    coverage: float  # fraction of genes with edges in this layer
    within: float  # fraction of edges inside a module
    hubness: float  # exponent on popularity in the endpoint weights (0: no hubs)
    align: float  # fraction of genes whose layer module follows their biological module
    nested: float  # fraction of within-module edges that stay inside a biological module
    weighted: bool
    signal: float  # weight of the layer in the signatures' gene-specific part


LAYERS = (
    Layer("disease", 0.14, 0.40, 0.85, 1.0, 0.6, 0.5, False, 0.8),
    Layer("drug", 0.08, 0.30, 0.80, 1.0, 0.4, 0.4, False, 0.5),
    Layer("complex", 0.02, 0.25, 0.97, 0.6, 0.8, 0.7, False, 1.0),
    Layer("pathway", 0.22, 0.35, 0.90, 0.8, 0.7, 0.5, False, 1.0),
    Layer("chromosome", 0.13, 0.92, 0.97, 0.1, 0.0, 0.0, False, 0.2),
    Layer("ppi", 0.29, 0.72, 0.70, 1.0, 0.6, 0.5, True, 1.2),
    Layer("sequence", 0.12, 0.60, 0.95, 0.7, 0.3, 0.3, True, 0.6),
)


@dataclass(frozen=True)
class Scale:
    n_genes: int
    n_edges: int  # undirected, all layers together (approximate)
    measured: dict  # type -> exact number of measured genes
    bio_size: int  # mean size of a biological module (grows with the degrees)
    feature_fraction: float = 0.7  # genes with a feature vector


SCALES = {
    "full": Scale(26_945, 7_500_000, {"RNAi": 4454, "CRISPR": 5139, "OE": 3538}, 400),
    "small": Scale(3_000, 200_000, {"RNAi": 750, "CRISPR": 860, "OE": 600}, 150),
    "tiny": Scale(300, 4_000, {"RNAi": 80, "CRISPR": 90, "OE": 65}, 30),
}

# Signature model constants, calibrated so the baselines land where the brief wants them (see
# the module docstring and tests/test_synth.py::test_calibration).
D_SHARED, D_OWN = 24, 12  # latent dims: shared block, each type's own block
MIX = {"RNAi": (1.0, 0.55), "CRISPR": (0.9, 0.55), "OE": (-0.6, 0.85)}  # (shared, own)
SMOOTH_STEPS, SMOOTH_BETA = 2, 0.6
PRIVATE = 0.2  # variance fraction of the latent no network can see
JITTER = 0.3  # gene-level deviation from its module vector, before smoothing
BIO_SHARE = 0.8  # of a layer's factor from the biological module (the rest: the layer's module)
FULL_RANK = 0.15  # share of the per-module full-rank part in the effect
PATTERN_SD, EFFECT_SD, NOISE_SD = 0.22, 0.17, 0.10
N_FEATURES = 64
FEATURE_VIEW, FEATURE_NOISE = 0.33, 3.0  # fraction of latent dims the features see; noise sd


def synthesize(scale: str = "full", seed: int = 0,
               progress: Callable[[str], None] | None = None) -> Bundle:
    """Generate the synthetic bundle of ``scale`` (a key of SCALES), deterministic in ``seed``."""
    if scale not in SCALES:
        raise InputError("scale", f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    p = SCALES[scale]
    say = progress or (lambda msg: None)
    rng = dict(zip(("genes", "layers", "latent", "features", "signatures", "measured"),
                   map(np.random.default_rng, np.random.SeedSequence(seed).spawn(6))))
    n = p.n_genes

    say("genes and landmarks")
    g_rng = rng["genes"]
    id_space = 4 * n + 2 * N_LANDMARKS + 1000
    pool = g_rng.permutation(id_space)[: n + N_LANDMARKS] + 1
    gene_ids = np.sort(pool[:n])
    if n >= 2 * N_LANDMARKS:  # landmarks are ordinary genes of the universe
        landmark_ids = np.sort(g_rng.choice(gene_ids, N_LANDMARKS, replace=False))
    else:  # too few genes: same id space, outside the universe
        landmark_ids = np.sort(pool[n:])
    # Capped so that no hub links to most of a layer.
    popularity = np.minimum(g_rng.pareto(1.9, n) + 1.0, 80.0)
    n_bio = max(4, n // p.bio_size)
    bio = g_rng.choice(n_bio, n, p=_lognormal_shares(g_rng, n_bio))

    networks, modules = {}, {}
    for layer in LAYERS:
        say(f"network layer {layer.name}")
        networks[layer.name], modules[layer.name] = _layer(rng["layers"], layer, p, popularity,
                                                            bio, n_bio)

    say("latent gene factors")
    latent, visible = _latent(rng["latent"], networks, modules, bio, n_bio, n)

    say("features")
    features = _features(rng["features"], visible, networks, p.feature_fraction)

    say("signatures")
    truth = _truth(rng["signatures"], latent, bio, n_bio)
    signatures = _observe(rng["measured"], truth, popularity, networks, p, seed)

    meta = {
        "name": f"synthetic-{scale}",
        "source": f"tnfast synthetic generator v{GENERATOR_VERSION}, seed {seed}",
        "units": "synthetic, scaled like L1000 level-5 signatures in [-1, 1]",
        "generator": {"version": GENERATOR_VERSION, "scale": scale, "seed": seed,
                      "params": {**asdict(p), "layers": [asdict(x) for x in LAYERS]}},
    }
    return Bundle(gene_ids.astype(str), landmark_ids.astype(str), networks, features,
                  signatures, truth, meta)


def default_bundle(scale: str = "full", seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> Path:
    """Path of the cached synthetic bundle, generated and saved on first use."""
    path = cache_dir() / f"synth-{scale}-seed{seed}-v{GENERATOR_VERSION}"
    # bundle.json is written last and the directory renamed into place, so it marks a complete
    # bundle; a run killed midway leaves only a hidden temporary sibling, which the next save
    # (atomic_dir) removes.
    if (path / "bundle.json").is_file():
        return path
    bundle = synthesize(scale, seed, progress)
    if (path / "bundle.json").is_file():  # a concurrent run finished first
        return path
    if progress:
        progress(f"saving to {path}")
    if path.is_dir() and not (path / "bundle.json").is_file():
        # An incomplete entry under tnfast's own cache name: ours to clear (save replaces only bundles).
        shutil.rmtree(path, ignore_errors=True)
    try:
        bundle.save(path, overwrite=True)
    except OSError:
        if not (path / "bundle.json").is_file():  # not just a concurrent run that won
            raise
    return path


def cache_dir() -> Path:
    """$TNFAST_CACHE, else $XDG_CACHE_HOME/tnfast, else ~/.cache/tnfast."""
    if os.environ.get("TNFAST_CACHE"):
        return Path(os.environ["TNFAST_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "tnfast"
    return Path.home() / ".cache" / "tnfast"


def _lognormal_shares(rng: np.random.Generator, k: int, sigma: float = 1.0) -> np.ndarray:
    w = rng.lognormal(0.0, sigma, k)
    return w / w.sum()


def _layer(rng: np.random.Generator, layer: Layer, p: Scale, popularity: np.ndarray,
           bio: np.ndarray, n_bio: int) -> tuple[CSR, np.ndarray]:
    """One layer: its modules (for every gene) and its DC-SBM edges among its members."""
    n = p.n_genes
    # Popular genes are annotated in more resources (except chromosome location).
    bias = layer.hubness * (np.log(popularity) - np.log(popularity).mean())
    logit = np.log(layer.coverage / (1 - layer.coverage)) + bias
    member = rng.random(n) < 1 / (1 + np.exp(-logit))
    n_members = max(int(member.sum()), 2)
    n_target = max(int(round(layer.share * p.n_edges)), 1)
    # Modules large enough that the within-module edges fill ~30% of the possible pairs.
    mean_degree = 2 * n_target / n_members
    size = np.clip(3 * layer.within * mean_degree, 5, n_members / 2)
    k = max(2, int(round(n_members / size)))
    shares = _lognormal_shares(rng, k)
    bio_to_module = rng.choice(k, n_bio, p=shares)
    module = np.where(rng.random(n) < layer.align, bio_to_module[bio], rng.choice(k, n, p=shares))

    theta = np.where(member, popularity ** layer.hubness * rng.lognormal(0, 0.5, n), 0.0)
    # Three kinds of edges: anywhere, inside the layer's module, and inside the part of the
    # module that shares a biological module (a two-level, hierarchical block model).
    blocks = (np.zeros(n, np.int64), module.astype(np.int64), module.astype(np.int64) * n_bio + bio)
    # Edges of each kind; a kind gets at most ~30% of the pairs its blocks hold, or small dense
    # blocks would saturate (at full scale degrees exceed the size of biological modules).
    room = [0.3 * _pairs(blk[member]) for blk in blocks]
    nest = min(layer.within * layer.nested * n_target, room[2])
    within = min(layer.within * n_target - nest, room[1])
    kinds = np.array([n_target - within - nest, within, nest]) / n_target
    keys, accept = np.zeros(0, np.int64), 1.0
    for _ in range(8):  # top up: duplicates and self-loops are lost, most in dense blocks
        need = n_target - len(keys)
        if need <= 0.002 * n_target:
            break
        m = int(need / accept * 1.05) + 16
        pairs = [_block_pairs(rng, blk, theta, c)
                 for blk, c in zip(blocks, rng.multinomial(m, kinds))]
        a, b = (np.concatenate(x) for x in zip(*pairs))
        keep = a != b
        a, b = a[keep], b[keep]
        new = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
        before = len(keys)
        keys = _sorted_unique(np.concatenate([keys, new]))
        accept = max((len(keys) - before) / m, 0.1)
    if len(keys) > n_target:
        keys = np.sort(rng.choice(keys, n_target, replace=False))
    src, dst = keys // n, keys % n
    if layer.weighted:  # confidence scores: higher inside modules
        inside = module[src] == module[dst]
        u = rng.random(len(keys))
        weight = np.where(inside, 0.4 + 0.6 * u, 0.15 + 0.55 * u).astype(np.float32)
    else:
        weight = None
    return build_csr(src, dst, n, weight), module


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    # np.unique hashes in numpy >= 2.3, several times slower than a sort for these sizes.
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]]


def _pairs(block: np.ndarray) -> float:
    """Number of node pairs that share a block."""
    size = np.bincount(np.unique(block, return_inverse=True)[1]).astype(np.float64)
    return float((size * (size - 1) / 2).sum())


def _block_pairs(rng: np.random.Generator, block: np.ndarray, theta: np.ndarray,
                 m: int) -> tuple[np.ndarray, np.ndarray]:
    """m node pairs, each inside one block, endpoints drawn with probability ~ theta.

    A block is chosen with probability ~ (its total theta)^2, as a DC-SBM expects its edges.
    """
    order = np.argsort(block, kind="stable")
    order = order[theta[order] > 0]
    cum = np.cumsum(theta[order])
    b = block[order]
    last = np.flatnonzero(np.r_[b[1:] != b[:-1], True])  # each block is one run of `order`
    first = np.r_[0, last[:-1] + 1]
    hi = cum[last]
    lo = np.r_[0.0, hi[:-1]]
    block_cum = np.cumsum((hi - lo) ** 2)
    pick = np.minimum(np.searchsorted(block_cum, rng.random(m) * block_cum[-1], side="right"),
                      len(last) - 1)

    def endpoint() -> np.ndarray:
        x = lo[pick] + rng.random(m) * (hi - lo)[pick]
        return order[np.clip(np.searchsorted(cum, x, side="right"), first[pick], last[pick])]

    return endpoint(), endpoint()


def _smooth(csr: CSR, x: np.ndarray, steps: int, beta: float) -> np.ndarray:
    """x <- (1 - beta) x + beta * (neighbour mean of x), for genes with neighbours."""
    a = csr.to_scipy()
    rowsum = np.asarray(a.sum(axis=1)).ravel()
    has = rowsum > 0
    a = sp.diags((1 / np.where(has, rowsum, 1)).astype(np.float32)) @ a
    for _ in range(steps):
        x = np.where(has[:, None], (1 - beta) * x + beta * (a @ x), x)
    return x


def _standardise(x: np.ndarray, axis: int = 0) -> np.ndarray:
    return (x - x.mean(axis, keepdims=True)) / (x.std(axis, keepdims=True) + 1e-8)


def _latent(rng: np.random.Generator, networks: dict[str, CSR], modules: dict[str, np.ndarray],
            bio: np.ndarray, n_bio: int, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Latent factors per block ("shared" and one per type), each (n, dims) float32, and their
    network-visible part (n, all dims)."""
    blocks = {"shared": D_SHARED, **dict.fromkeys(TYPES, D_OWN)}
    dim = sum(blocks.values())
    base = rng.standard_normal((n_bio, dim), np.float32)[bio]
    # Each block leans on the layers differently (type-specific biology).
    weights = np.array([x.signal for x in LAYERS])[:, None] * rng.lognormal(
        0, 0.5, (len(LAYERS), len(blocks)))
    cuts = np.cumsum(list(blocks.values()))[:-1]
    total = np.zeros((n, dim), np.float32)
    for li, layer in enumerate(LAYERS):
        k = int(modules[layer.name].max()) + 1
        x = BIO_SHARE * base + (1 - BIO_SHARE) * rng.standard_normal((k, dim), np.float32)[
            modules[layer.name]]
        x += JITTER * rng.standard_normal((n, dim), np.float32)
        x = _standardise(_smooth(networks[layer.name], x, SMOOTH_STEPS, SMOOTH_BETA))
        total += x * np.repeat(weights[li], list(blocks.values())).astype(np.float32)
    visible = _standardise(total)
    private = rng.standard_normal((n, dim), np.float32)
    z = np.sqrt(1 - PRIVATE) * visible + np.sqrt(PRIVATE) * private
    return dict(zip(blocks, np.split(z.astype(np.float32), cuts, axis=1))), visible


def _features(rng: np.random.Generator, visible: np.ndarray, networks: dict[str, CSR],
              fraction: float) -> Features:
    """A noisy 64-d view of some of the latent dims, for networked genes only.

    Built from the network-visible part of the latent, as real features are network embeddings.
    """
    z = visible[:, rng.permutation(visible.shape[1])[: int(FEATURE_VIEW * visible.shape[1])]]
    proj = rng.standard_normal((z.shape[1], N_FEATURES), np.float32) / np.sqrt(z.shape[1])
    values = z @ proj + FEATURE_NOISE * rng.standard_normal((len(z), N_FEATURES), np.float32)
    values *= 0.02 / values.std()
    networked = sum(np.diff(c.indptr) > 0 for c in networks.values()) > 0
    present = networked & (rng.random(len(z)) < fraction)
    values[~present] = 0
    names = np.array([f"f{i}" for i in range(N_FEATURES)])
    return Features(values.astype(np.float32), present, names)


def _truth(rng: np.random.Generator, latent: dict[str, np.ndarray], bio: np.ndarray,
           n_bio: int) -> dict[str, np.ndarray]:
    """Noise-free signature of every gene and type: (n_genes, 978) float32 each."""
    n = len(bio)
    landmark_scale = rng.lognormal(0, 0.25, N_LANDMARKS).astype(np.float32)
    common = rng.standard_normal(N_LANDMARKS)
    # Low-rank loading (latent -> landmarks) plus a little full-rank per-module part.
    load_shared = rng.standard_normal((D_SHARED, N_LANDMARKS), np.float32) / np.sqrt(D_SHARED)
    full_rank = rng.standard_normal((n_bio, N_LANDMARKS), np.float32)[bio]
    shared = (np.sqrt(1 - FULL_RANK) * (latent["shared"] @ load_shared)
              + np.sqrt(FULL_RANK) * full_rank)
    # Perturbation strength: partly from the gene's biology, partly idiosyncratic.
    alpha = np.exp(0.15 * latent["shared"][:, :1] + 0.1 * rng.standard_normal((n, 1)))
    alpha = alpha.astype(np.float32)
    truth = {}
    for t in TYPES:
        c_shared, c_own = MIX[t]
        load_own = rng.standard_normal((D_OWN, N_LANDMARKS), np.float32) / np.sqrt(D_OWN)
        strength = rng.lognormal(0, 0.3, (n, 1)).astype(np.float32)
        effect = strength * (c_shared * shared + c_own * (latent[t] @ load_own))
        effect *= EFFECT_SD / effect.std() * landmark_scale
        # The types' common patterns correlate ~0.3, as in real L1000 data.
        pattern = 0.55 * common + 0.85 * rng.standard_normal(N_LANDMARKS)
        pattern *= PATTERN_SD / pattern.std() * landmark_scale
        truth[t] = np.clip(alpha * pattern.astype(np.float32) + effect, -1, 1).astype(np.float32)
    return truth


def _observe(rng: np.random.Generator, truth: dict[str, np.ndarray], popularity: np.ndarray,
             networks: dict[str, CSR], p: Scale, seed: int) -> dict[str, Signatures]:
    """Pick the measured genes of each type (overlapping screens) and add measurement noise."""
    n = p.n_genes
    networked = sum(np.diff(c.indptr) > 0 for c in networks.values()) > 0
    # Screens favour well-studied genes, and later screens re-test earlier hits.
    weight = np.sqrt(popularity) * np.where(networked, 1.0, 0.05)
    measured, seen = {}, np.zeros(n, bool)
    for t, boost in zip(TYPES, (1.0, 4.0, 3.0)):
        key = np.log(weight * np.where(seen, boost, 1.0)) + rng.gumbel(size=n)
        genes = np.sort(np.argpartition(-key, p.measured[t] - 1)[: p.measured[t]])
        measured[t] = genes.astype(np.int32)
        seen[genes] = True
    splits = assign_splits(measured, seed=seed)
    batch = rng.standard_normal((8, N_LANDMARKS)).astype(np.float32)
    out = {}
    for t in TYPES:
        g = measured[t]
        noise = rng.standard_t(5, (len(g), N_LANDMARKS)).astype(np.float32) / np.sqrt(5 / 3)
        noise += 0.5 * rng.standard_normal((len(g), 8)).astype(np.float32) @ batch / np.sqrt(8)
        values = np.clip(truth[t][g] + NOISE_SD / np.sqrt(1.25) * noise, -1, 1).astype(np.float32)
        out[t] = Signatures(g, values, splits[t])
    return out
