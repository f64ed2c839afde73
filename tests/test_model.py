"""tnfast.model: the TranscriptionNet model (encoder, FunDNN, GenSAN, samples, loss, scaler).

CPU, small: hand-made graphs of a few hundred genes with few landmarks, and one end-to-end test
on the tiny synthetic bundle with the real 978 landmarks.
"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tnfast.data.bundle import Bundle, Signatures
from tnfast.data.csr import build_csr
from tnfast.data.synth import synthesize
from tnfast.kernels import gat_aggregate_reference
from tnfast.model import (
    GenSAN,
    Measurements,
    ModelConfig,
    ModelDims,
    MultiplexGraph,
    Scaler,
    TranscriptionNet,
    gensan_input,
    profile,
    row_pearson,
    sample_pairs,
    signature_loss,
    split_samples,
)

N_LM = 12  # landmarks in the small tests


@pytest.fixture(autouse=True)
def _one_thread():
    """These graphs and batches are tiny: OpenMP threads only add synchronisation (and stall for
    hundreds of ms when the cores are shared). Restored after each test."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(
        gene_embedding_dim=8, gat_heads=2, gat_head_dim=4, gat_layers=2, fusion_dim=8, embedding_dim=16,
        encoder_dropout=0.0, recon_edges=64, negatives_per_edge=2, fundnn_hidden=(32,), dropout=0.0,
        row_heads=2, row_head_dim=8, col_heads=2, col_head_dim=4, landmark_dim=4, ff_dim=32, blocks=2,
        recycles=3,
    )
    base.update(kw)
    return ModelConfig(**base)


def make_graph(n=240, n_layers=3, seed=0, isolated=20, with_features=True, structural_dim=0):
    """Layer l covers its own subset of genes; the last ``isolated`` genes have no edge in any
    layer (half of them with features); layer 1 is unweighted (all-ones weights)."""
    rng = np.random.default_rng(seed)
    live = n - isolated
    layers = {}
    for li in range(n_layers):
        nodes = rng.choice(live, size=int(live * (0.5 + 0.15 * li)), replace=False)
        src, dst = rng.choice(nodes, 4 * len(nodes)), rng.choice(nodes, 4 * len(nodes))
        w = None if li == 1 else rng.uniform(0.2, 3.0, len(src))
        layers[f"layer{li}"] = build_csr(src, dst, n, w)
    feats = present = None
    if with_features:
        feats = rng.normal(size=(n, 5)).astype(np.float32)
        present = rng.random(n) < 0.6
        present[n - isolated: n - isolated // 2] = True
        present[n - isolated // 2:] = False
    return layers, MultiplexGraph.from_arrays(layers, n, feats, present, structural_dim=structural_dim)


def build(cfg=None, graph=None, n_lm=N_LM, seed=0):
    if graph is None:
        _, graph = make_graph()
    torch.manual_seed(seed)
    return TranscriptionNet(cfg or tiny_cfg(), ModelDims.from_graph(graph, n_lm)), graph


def randomize_(module: torch.nn.Module, seed: int = 1, scale: float = 0.1) -> None:
    """Add noise to every parameter, so zero-initialised output projections (which make a GenSAN
    pass the identity at initialisation) no longer hide anything from the tests."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def batch(n, n_lm=N_LM, seed=0, n_genes=240):
    g = torch.Generator().manual_seed(seed)
    genes = torch.randperm(n_genes, generator=g)[:n]
    target = torch.randint(0, 3, (n,), generator=g)
    measured = torch.randn(n, 3, n_lm, generator=g)
    available = torch.rand(n, 3, generator=g) < 0.6
    return genes, target, measured, available


# ------------------------------------------------------------------------------------------
# config
# ------------------------------------------------------------------------------------------
def test_config_defaults_profiles_and_round_trip():
    full = profile("full")
    assert (full.gat_heads, full.gat_head_dim, full.gat_layers, full.embedding_dim) == (10, 64, 2, 512)
    assert full.beta == 0.1 and full.recycles >= 2 and full.row_head_dim <= 128
    assert full == ModelConfig()
    quick = profile("quick")
    assert quick.gat_width < full.gat_width and quick.gat_layers <= full.gat_layers
    for cfg in (full, quick):
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown model profile"):
        profile("huge")
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({"gat_heads": 2, "bogus": 1})
    with pytest.raises(ValueError, match="row_head_dim"):
        ModelConfig(row_head_dim=256)
    with pytest.raises(ValueError, match="beta"):
        ModelConfig(beta=1.5)
    with pytest.raises(ValueError, match="node input"):
        ModelConfig(gene_embedding_dim=0, use_features=False, structural_dim=0)


# ------------------------------------------------------------------------------------------
# graph + encoder
# ------------------------------------------------------------------------------------------
def test_graph_from_arrays():
    layers, g = make_graph()
    assert g.n_layers == 3 and g.n_genes == 240 and g.n_features == 5
    assert g.n_edges == sum(c.nnz for c in layers.values())
    assert g.edge_weight is not None  # layers 0 and 2 are weighted, layer 1 gets weight 1
    for li, c in enumerate(layers.values()):
        assert torch.equal(g.has_edge[li], torch.from_numpy(np.diff(c.indptr) > 0))
        assert int(g.layer_edge_ptr[li + 1] - g.layer_edge_ptr[li]) == c.nnz
    assert not g.has_edge[:, -20:].any()
    f = g.features[g.feature_present]
    assert torch.allclose(f.mean(0), torch.zeros(5), atol=1e-5)  # standardised over present genes
    assert torch.all(g.features[~g.feature_present] == 0)


def test_shapes():
    model, g = build()
    emb = model.encode(g)
    assert emb.shape == (240, 16)
    genes, target, measured, available = batch(7)
    guess = model.first_guess(emb[genes])
    assert guess.shape == (7, 3, N_LM)
    assert model.refine(guess, available).shape == (7, 3, N_LM)
    pred = model(emb, genes, target, measured, available)
    assert pred.shape == (7, N_LM)
    pred2, guess2, refined, recon = model(emb, genes, target, measured, available, return_all=True)
    assert torch.equal(pred, pred2) and guess2.shape == refined.shape == (7, 3, N_LM) and recon is None
    # one call that does everything (DDP): encoder inside, reconstruction loss with the generator
    out = model(g, genes, target, measured, available, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.pred, pred)
    assert torch.equal(out.recon, model.reconstruction_loss(emb, g, torch.Generator().manual_seed(0)))
    assert model(emb, genes, target).shape == (7, N_LM)  # nothing measured
    assert model.predict(emb[genes], measured, available).shape == (7, 3, N_LM)
    assert model.reconstruction_loss(emb, g, torch.Generator().manual_seed(0)).dim() == 0


def test_multiplex_call_equals_per_layer_computation():
    """One stacked gat_aggregate call per depth == each layer on its own CSR, by hand."""
    layers, g = make_graph(seed=3, structural_dim=3)
    assert g.n_structural == 9
    model, _ = build(graph=g)
    randomize_(model.encoder, scale=0.05)
    enc = model.encoder
    with torch.no_grad():
        x0 = enc.input_embedding(g)
        got = enc.layer_embeddings(g, x0)
        cfg = enc.cfg
        n, h, d = g.n_genes, cfg.gat_heads, cfg.gat_head_dim
        for li, c in enumerate(layers.values()):
            ip, ix = torch.from_numpy(c.indptr), torch.from_numpy(c.indices)
            w = None if li == 1 else torch.from_numpy(c.weights)
            own = g.structural[:, 3 * li: 3 * li + 3]  # the layer's own structural block
            x = x0[:, :enc.d_shared] @ enc.pre_weight[li] + own @ enc.struct_weight[li] + enc.pre_bias[li]
            for k in range(cfg.gat_layers):
                hk = (x @ enc.gat_weight[k, li]).view(n, h, d)
                a_src = (hk * enc.att_src[k, li]).sum(-1)
                a_dst = (hk * enc.att_dst[k, li]).sum(-1)
                agg = gat_aggregate_reference(hk, a_src, a_dst, ip, ix, w, cfg.gat_negative_slope)
                x = x + F.elu(agg.reshape(n, h * d) + enc.gat_bias[k, li])
            torch.testing.assert_close(got[li], x, rtol=1e-5, atol=1e-5)


def test_masked_fusion_ignores_layers_without_edges():
    model, g = build()
    randomize_(model.encoder)
    enc = model.encoder
    x0 = enc.input_embedding(g).detach()
    layers = enc.layer_embeddings(g, x0).detach()
    base = enc.fuse(layers, x0, g.has_edge)
    absent = ~g.has_edge
    assert absent.any() and g.has_edge.any()
    changed = layers.clone()
    changed[absent] = torch.randn(int(absent.sum()), layers.shape[-1]) * 100.0
    assert torch.equal(enc.fuse(changed, x0, g.has_edge), base)
    changed[absent] = float("nan")  # not even NaN gets through
    assert torch.equal(enc.fuse(changed, x0, g.has_edge), base)
    # and a layer where the gene does have edges does matter
    li, gene = [int(v) for v in torch.nonzero(g.has_edge)[0]]
    moved = layers.clone()
    moved[li, gene] += torch.randn(layers.shape[-1])  # (a constant shift would vanish in the LayerNorm)
    out = enc.fuse(moved, x0, g.has_edge)
    assert not torch.allclose(out[gene], base[gene])
    others = torch.ones(g.n_genes, dtype=torch.bool)
    others[gene] = False
    assert torch.equal(out[others], base[others])  # per-gene fusion


def test_genes_without_edges_but_with_features_get_distinct_embeddings():
    _, g = make_graph()
    model, _ = build(tiny_cfg(gene_embedding_dim=0), graph=g)  # features are the only input
    emb = model.encode(g).detach()
    isolated = torch.nonzero(~g.has_edge.any(0)).flatten()
    featured = isolated[g.feature_present[isolated]]
    assert len(featured) >= 5
    e = emb[featured]
    dist = torch.cdist(e, e) + torch.eye(len(featured))
    assert torch.isfinite(e).all() and dist.min() > 1e-3
    # with learned gene vectors too: those of genes without edges are never trained, so unused;
    # genes with neither edges nor features share one "uninformed" embedding
    model, _ = build(tiny_cfg(), graph=g)
    randomize_(model)
    emb = model.encode(g).detach()
    blank = isolated[~g.feature_present[isolated]]
    assert len(blank) >= 5 and torch.allclose(emb[blank], emb[blank[:1]].expand(len(blank), -1))
    assert torch.cdist(emb[featured], emb[featured]).add(torch.eye(len(featured))).min() > 1e-3
    with torch.no_grad():
        model.encoder.gene_embedding.weight[isolated] += 1.0
    assert torch.equal(model.encode(g).detach(), emb)


def test_reconstruction_samples_and_loss():
    layers, g = make_graph(seed=5)
    cfg = tiny_cfg()
    gen = torch.Generator().manual_seed(7)
    u, v, label, layer = sample_pairs(g, 50, 2, gen)
    assert len(u) == 3 * 50 * 3 and label.sum() == 3 * 50
    for li, c in enumerate(layers.values()):
        adj = c.to_scipy()
        sel = (layer == li) & (label == 1)
        assert np.all(np.asarray(adj[u[sel].numpy().copy(), v[sel].numpy().copy()]).ravel() > 0)  # real edges
        neg = (layer == li) & (label == 0)
        present = torch.from_numpy(np.diff(c.indptr) > 0)
        assert present[u[neg]].all() and present[v[neg]].all()  # among the layer's genes
    model, _ = build(cfg, graph=g)
    emb = model.encode(g)
    l1 = model.reconstruction_loss(emb, g, torch.Generator().manual_seed(3))
    l2 = model.reconstruction_loss(emb, g, torch.Generator().manual_seed(3))
    l3 = model.reconstruction_loss(emb, g, torch.Generator().manual_seed(4))
    assert torch.equal(l1, l2) and not torch.equal(l1, l3)
    # hand computation on the same samples
    u, v, label, _ = sample_pairs(g, cfg.recon_edges, cfg.negatives_per_edge, torch.Generator().manual_seed(3))
    logit = (emb[u] * emb[v]).sum(-1) / np.sqrt(emb.shape[1]) + model.encoder.recon_bias
    torch.testing.assert_close(l1, F.binary_cross_entropy_with_logits(logit, label))
    # it learns: a few Adam steps on the reconstruction alone lower it
    opt = torch.optim.Adam(model.encoder.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = model.reconstruction_loss(model.encode(g), g, gen, n_edges=256)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.93 * np.mean(losses[:5])  # (random graphs: little to learn)


# ------------------------------------------------------------------------------------------
# GenSAN
# ------------------------------------------------------------------------------------------
def test_recycling_uses_shared_weights():
    counts = {r: sum(p.numel() for p in GenSAN(N_LM, tiny_cfg(recycles=r)).parameters()) for r in (1, 2, 5)}
    assert len(set(counts.values())) == 1
    torch.manual_seed(0)
    gs = GenSAN(N_LM, tiny_cfg(recycles=2)).eval()
    x = torch.randn(5, 3, N_LM)
    m = torch.rand(5, 3) < 0.5
    # at initialisation a pass is the identity (zero-initialised output projections)
    assert torch.equal(gs.one_pass(x, m), x)
    randomize_(gs)
    once = gs.one_pass(x, m)
    by_hand = gs.one_pass(once, m)
    torch.testing.assert_close(gs(x, m), by_hand, rtol=0, atol=0)
    assert not torch.allclose(by_hand, once)  # the second pass does something
    assert not torch.allclose(gs(x, m, recycles=3), by_hand)
    # the indicator (measurement or first guess) changes the output
    assert not torch.allclose(gs(x, ~m), gs(x, m))


def test_gensan_978_landmarks():
    torch.manual_seed(0)
    gs = GenSAN(978, tiny_cfg(recycles=2))
    randomize_(gs, scale=0.02)
    x = torch.randn(3, 3, 978, requires_grad=True)
    out = gs(x, torch.tensor([[True, False, False]] * 3))
    assert out.shape == (3, 3, 978)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_gensan_gradients_are_bit_identical_on_two_threads():
    """The indicator sums its gradient over every (gene, type) row. Taken by indexing, the CPU
    backward added those rows with parallel atomics, in a new order each time, and two training
    runs with one seed drifted apart from their second joint step on."""
    torch.set_num_threads(2)  # the fixture puts back one thread
    torch.manual_seed(0)
    gs = GenSAN(N_LM, tiny_cfg(blocks=1, recycles=1))
    randomize_(gs)
    x = torch.randn(4096, 3, N_LM)
    m = torch.rand(4096, 3) < 0.5

    def grads():
        gs.zero_grad(set_to_none=True)
        gs(x, m).square().sum().backward()
        return {k: p.grad.clone() for k, p in gs.named_parameters()}

    first = grads()
    for _ in range(4):
        again = grads()
        for k in first:
            assert torch.equal(again[k], first[k]), k


# ------------------------------------------------------------------------------------------
# leakage
# ------------------------------------------------------------------------------------------
def test_gensan_input_never_uses_the_target_measurement():
    g = torch.Generator().manual_seed(0)
    guess = torch.randn(6, 3, N_LM, generator=g)
    measured = torch.randn(6, 3, N_LM, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    available = torch.ones(6, 3, dtype=torch.bool)
    available[3:, 1] = False
    x, is_meas = gensan_input(guess, target, measured, available)
    rows = torch.arange(6)
    assert torch.equal(x[rows, target], guess[rows, target])
    assert not is_meas[rows, target].any()
    for i in range(6):
        for t in range(3):
            if t != int(target[i]):
                want = measured[i, t] if available[i, t] else guess[i, t]
                assert torch.equal(x[i, t], want) and bool(is_meas[i, t]) == bool(available[i, t])
    x2, m2 = gensan_input(guess, target, None, None)
    assert torch.equal(x2, guess) and not m2.any()


def test_no_target_leakage_through_the_model():
    model, g = build()
    randomize_(model)
    model.eval()
    emb = model.encode(g).detach()
    genes, target, measured, _ = batch(8)
    available = torch.ones(8, 3, dtype=torch.bool)
    pred = model(emb, genes, target, measured, available)
    rows = torch.arange(8)
    leaked = measured.clone()
    leaked[rows, target] = torch.randn(8, N_LM) * 50.0  # the truth we are asked to predict
    assert torch.equal(model(emb, genes, target, leaked, available), pred)
    other = measured.clone()
    # another type's measurement is a legitimate input (not a constant shift: the pre-norms remove it)
    other[rows, (target + 1) % 3] += 5.0 * torch.randn(8, N_LM, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(model(emb, genes, target, other, available), pred)
    # predict(): type t of a gene never sees the gene's own t measurement either
    full = model.predict(emb[genes], measured, available, unscale=False)
    for t in range(3):
        changed = measured.clone()
        changed[:, t] = 99.0
        again = model.predict(emb[genes], changed, available, unscale=False)
        assert torch.equal(again[:, t], full[:, t])
        assert not torch.allclose(again[:, (t + 1) % 3], full[:, (t + 1) % 3])
    # predict() agrees with forward() sample by sample, with and without measurements
    for avail in (available, torch.zeros_like(available), torch.rand(8, 3, generator=torch.Generator().manual_seed(2)) < 0.5):
        full = model.predict(emb[genes], measured, avail, unscale=False)
        for t in range(3):
            tt = torch.full((8,), t)
            torch.testing.assert_close(full[:, t], model(emb, genes, tt, measured, avail), rtol=1e-5, atol=1e-5)


def small_bundle(seed=0):
    """A 50-gene bundle with 2 layers and signatures of all splits in two types."""
    rng = np.random.default_rng(seed)
    n = 50
    nets = {"a": build_csr(rng.integers(0, n, 120), rng.integers(0, n, 120), n),
            "b": build_csr(rng.integers(0, 40, 80), rng.integers(0, 40, 80), n, rng.uniform(1, 2, 80))}
    sigs = {}
    for t, genes in (("RNAi", np.arange(0, 30)), ("OE", np.arange(10, 45))):
        split = np.array(["train", "valid", "test"])[rng.integers(0, 3, len(genes))]
        split[:3] = "train"
        sigs[t] = Signatures(genes.astype(np.int32), rng.normal(size=(len(genes), N_LM)).astype(np.float32) + 2, split)
    return Bundle(np.array([str(i) for i in range(n)]), np.array([str(i) for i in range(N_LM)]), nets, None, sigs)


def test_measurements_only_use_allowed_splits():
    b = small_bundle()
    meas = Measurements.from_bundle(b, ("train",))
    genes = torch.arange(b.n_genes)
    values, avail = meas.gather(genes)
    for ti, t in enumerate(("RNAi", "CRISPR", "OE")):
        s = b.signatures.get(t)
        want = np.zeros(b.n_genes, bool)
        if s is not None:
            want[s.gene[s.split == "train"]] = True
            tr = s.gene[s.split == "train"]
            np.testing.assert_array_equal(values[tr, ti].numpy(), s.values[s.split == "train"])
        np.testing.assert_array_equal(avail[:, ti].numpy(), want)
    assert (values[~avail] == 0).all()
    everything = Measurements.from_bundle(b, ("train", "valid", "test"))
    assert everything.gather(genes)[1].sum() == sum(len(s.gene) for s in b.signatures.values())
    genes_tr, types_tr, vals_tr = split_samples(b, "train")
    assert len(genes_tr) == int(avail.sum())
    assert torch.equal(values[genes_tr, types_tr], torch.from_numpy(vals_tr))


# ------------------------------------------------------------------------------------------
# loss + scaler
# ------------------------------------------------------------------------------------------
def test_signature_loss_against_hand_computation():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]])
    truth = torch.tensor([[2.0, 2.0, 2.0, 6.0], [1.0, 0.0, -1.0, 1.0]])
    p, t = pred.numpy().astype(np.float64), truth.numpy().astype(np.float64)
    mse = ((p - t) ** 2).mean()
    pcc = np.array([np.corrcoef(p[i], t[i])[0, 1] for i in range(2)])
    np.testing.assert_allclose(row_pearson(pred, truth).numpy(), pcc, rtol=1e-5)
    for beta in (0.0, 0.1, 1.0):
        want = (1 - beta) * mse + beta * (1 - pcc.mean())
        assert abs(float(signature_loss(pred, truth, beta)) - want) < 1e-5
    assert float(signature_loss(truth, truth)) == pytest.approx(0.0, abs=1e-6)
    const = row_pearson(torch.ones(1, 4), truth[:1])
    assert torch.isfinite(const).all() and float(const) == 0.0


def test_scaler_round_trip_and_fit_on_train_only(tmp_path):
    b = small_bundle()
    sc = Scaler(N_LM).fit_bundle(b)
    for ti, t in enumerate(("RNAi", "CRISPR", "OE")):
        s = b.signatures.get(t)
        assert bool(sc.fitted[ti]) == (s is not None)
        if s is not None:
            tr = s.values[s.split == "train"].astype(np.float64)
            np.testing.assert_allclose(sc.mean[ti].numpy(), tr.mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(sc.std[ti].numpy(), tr.std(0), rtol=1e-5, atol=1e-6)
    assert torch.equal(sc.mean[1], torch.zeros(N_LM)) and torch.equal(sc.std[1], torch.ones(N_LM))
    # valid/test rows do not move it; train rows do
    for split, moves in (("valid", False), ("test", False), ("train", True)):
        b2 = small_bundle()
        s = b2.signatures["RNAi"]
        s.values[s.split == split] += 10.0
        sc2 = Scaler(N_LM).fit_bundle(b2)
        assert torch.equal(sc2.mean, sc.mean) != moves
    x = torch.randn(4, 3, N_LM) * 3 + 1
    torch.testing.assert_close(sc.inverse(sc.transform(x)), x, rtol=1e-5, atol=1e-5)
    types = torch.tensor([0, 2, 2, 1])
    flat = x[torch.arange(4), types]
    z = sc.transform(flat, types)
    torch.testing.assert_close(z, sc.transform(x)[torch.arange(4), types])
    torch.testing.assert_close(sc.inverse(z, types), flat, rtol=1e-5, atol=1e-5)
    torch.save(sc.state_dict(), tmp_path / "sc.pt")
    sc3 = Scaler(N_LM)
    sc3.load_state_dict(torch.load(tmp_path / "sc.pt", weights_only=True))
    assert torch.equal(sc3.mean, sc.mean) and torch.equal(sc3.std, sc.std) and torch.equal(sc3.fitted, sc.fitted)
    scaled = Measurements.from_bundle(b, ("train",), sc)  # measurements stored in scaled units
    v, a = scaled.gather(torch.arange(b.n_genes))
    torch.testing.assert_close(v[a].mean(), torch.tensor(0.0), atol=1e-5, rtol=0)


def test_pooled_scaler_keeps_the_landmarks_relative_variance():
    b = small_bundle()
    per, pooled = Scaler(N_LM).fit_bundle(b), Scaler(N_LM, per_landmark=False).fit_bundle(b)
    tr = b.signatures["RNAi"].values[b.signatures["RNAi"].split == "train"].astype(np.float64)
    torch.testing.assert_close(pooled.mean, per.mean)  # centring is the same
    want = np.sqrt(tr.var(axis=0).mean())  # one std per type: the RMS of the landmark stds
    np.testing.assert_allclose(pooled.std[0].numpy(), np.full(N_LM, want), rtol=1e-5)
    z = pooled.transform(torch.from_numpy(tr).float(), torch.zeros(len(tr), dtype=torch.long))
    np.testing.assert_allclose(z.std(0, unbiased=False).numpy(), tr.std(0) / want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------
# training-level properties
# ------------------------------------------------------------------------------------------
def _step_loss(model, g, seed=0):
    emb = model.encode(g)
    genes, target, measured, available = batch(16, seed=seed)
    pred = model(emb, genes, target, measured, available)
    truth = torch.randn(16, N_LM, generator=torch.Generator().manual_seed(seed + 1))
    return signature_loss(pred, truth, model.config.beta) + model.reconstruction_loss(
        emb, g, torch.Generator().manual_seed(seed))


def test_gradients_reach_every_parameter():
    _, g = make_graph(structural_dim=2)
    model, _ = build(tiny_cfg(encoder_dropout=0.1, dropout=0.1), graph=g)
    randomize_(model)
    _step_loss(model, g).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_deterministic_with_a_seed():
    def run():
        model, g = build(tiny_cfg(encoder_dropout=0.1, dropout=0.1), seed=11)
        torch.manual_seed(5)  # dropout masks
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for s in range(2):
            opt.zero_grad()
            _step_loss(model, g, seed=s).backward()
            opt.step()
        return model.state_dict()

    a, b = run(), run()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_state_dict_round_trip(tmp_path):
    _, g = make_graph(structural_dim=2)
    model, _ = build(graph=g)
    randomize_(model)
    model.scaler.mean.fill_(0.5)
    model.scaler.std.fill_(2.0)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    spec = json.loads(json.dumps({"config": model.config.to_dict(), "dims": model.dims.to_dict()}))
    again = TranscriptionNet(ModelConfig.from_dict(spec["config"]), ModelDims.from_dict(spec["dims"]))
    again.load_state_dict(torch.load(path, weights_only=True))
    model.eval()
    again.eval()
    emb = model.encode(g)
    assert torch.equal(again.encode(g), emb)
    genes, target, measured, available = batch(5)
    assert torch.equal(again.predict(emb[genes], measured, available), model.predict(emb[genes], measured, available))
    assert torch.equal(again.scaler.std, torch.full_like(again.scaler.std, 2.0))


def test_end_to_end_on_the_tiny_synthetic_bundle():
    """978 landmarks, 7 layers, features: scaler, measurements, a few steps that lower the loss."""
    b = synthesize("tiny", seed=0)
    cfg = tiny_cfg(recycles=2, blocks=1, gat_layers=1, col_heads=1, structural_dim=4)
    graph = MultiplexGraph.for_model(b, cfg)
    assert graph.n_structural == 4 * len(b.networks) and graph.n_features == 64
    with pytest.raises(ValueError, match="structural"):  # a graph not built for this model
        TranscriptionNet(cfg, ModelDims.from_graph(graph, 978)).encode(MultiplexGraph.from_bundle(b))
    torch.manual_seed(0)
    model = TranscriptionNet(cfg, ModelDims.from_graph(graph, len(b.landmarks)))
    model.scaler.fit_bundle(b)
    meas = Measurements.from_bundle(b, ("train",), model.scaler)
    genes, types, values = split_samples(b, "train")
    assert len(genes) == sum(int((s.split == "train").sum()) for s in b.signatures.values())
    keep = np.random.default_rng(0).choice(len(genes), 48, replace=False)  # one batch
    genes, types, values = torch.from_numpy(genes[keep]), torch.from_numpy(types[keep]), values[keep]
    truth = model.scaler.transform(torch.from_numpy(values), types)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        emb = model.encode(graph)
        mv, av = meas.gather(genes)
        pred, guess, _, _ = model(emb, genes, types, mv, av, return_all=True)
        assert pred.shape == (len(genes), 978)
        sup = signature_loss(pred, truth, cfg.beta) + signature_loss(guess[torch.arange(len(genes)), types], truth, cfg.beta)
        loss = sup + model.reconstruction_loss(emb, graph, gen)
        loss.backward()
        opt.step()
        losses.append(sup.item())
    assert losses[-1] < losses[0]
    with torch.no_grad():
        model.eval()
        out = model.predict(model.encode(graph)[:10], *meas.gather(torch.arange(10)))
    assert out.shape == (10, 3, 978) and torch.isfinite(out).all()


def test_features_only_without_networks():
    rng = np.random.default_rng(0)
    g = MultiplexGraph.from_arrays({}, 30, rng.normal(size=(30, 4)), rng.random(30) < 0.7)
    assert g.n_layers == 0 and g.n_edges == 0
    model, _ = build(tiny_cfg(), graph=g)
    emb = model.encode(g)
    assert emb.shape == (30, 16) and torch.isfinite(emb).all()
    present = torch.nonzero(g.feature_present).flatten()
    assert torch.cdist(emb[present], emb[present]).add(torch.eye(len(present))).min() > 1e-4
    assert model.reconstruction_loss(emb, g, torch.Generator().manual_seed(0)).item() == 0.0
    genes, target, measured, available = batch(4, n_genes=30)
    assert model(emb, genes, target, measured, available).shape == (4, N_LM)
