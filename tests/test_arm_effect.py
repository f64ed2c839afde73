"""The chromosome-arm effect (tnfast.arm_effect, tnfast.model.arm_effect): the classes of
hand-placed genes, the fit against a hand computation, the rules that keep a class off, what
prediction adds, and a trained run on a bundle with a planted arm loss in CRISPR."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tnfast.arm_effect import CLASSES, NEAR_BP, arm_effect, location_codes, pair_classes
from tnfast.data.bundle import TYPES, Locations
from tnfast.data.synth import synthesize
from tnfast.model.arm_effect import ArmEffect
from tnfast.own_effect import MIN_GENES
from tnfast.predict import load_predictor
from tnfast.runs import read_run
from tnfast.train import arm_effect_text, train
from tnfast.train_config import resolve

TINY = Path(__file__).parent / "data" / "tiny_model.toml"
MB = 1_000_000
EFFECT = -2.0  # planted: distal landmarks of a CRISPR target, in landmark sds


def _loc(*rows):
    chrom, start, arm = zip(*rows) if rows else ((), (), ())
    return Locations(np.array(chrom, dtype=str), np.array(start, np.int64), np.array(arm, dtype=str))


# landmarks: chr1 p at 2 Mb, 5.5 Mb, 20 Mb; chr1 q at 150 Mb, 130 Mb; chr2 p; chr1 with no arm;
# one unlocated; and a landmark at 5 Mb on chr1 p (the first gene itself)
LANDMARKS = _loc(("1", 2 * MB, "p"), ("1", 5 * MB + MB // 2, "p"), ("1", 20 * MB, "p"), ("1", 150 * MB, "q"),
                 ("1", 130 * MB, "q"), ("2", 3 * MB, "p"), ("1", 4 * MB, ""), ("", -1, ""), ("1", 5 * MB, "p"))
GENES = _loc(("1", 5 * MB, "p"), ("1", 140 * MB, "q"), ("X", 1 * MB, "p"), ("", -1, ""))
D, PN, PF, O, NONE = 0, 1, 2, 3, -1  # distal, proximal near, proximal far, other arm


def _classes(genes=GENES, landmarks=LANDMARKS, xp=np.asarray):
    c = [xp(a) for a in location_codes(genes, landmarks)]
    return pair_classes(*(a[:, None] for a in c[:3]), *(a[None] for a in c[3:]))


def test_classes_of_hand_placed_genes():
    assert CLASSES == ("distal", "proximal_1mb", "proximal", "other_arm")
    want = [
        # chr1 p at 5 Mb: toward the p telomere (lower) is distal; itself has no class
        [D, PN, PF, O, O, NONE, NONE, NONE, NONE],
        # chr1 q at 140 Mb: toward the q telomere (higher) is distal
        [O, O, O, D, PF, NONE, NONE, NONE, O],
        [NONE] * 9,  # chromosome X: no landmark there
        [NONE] * 9,  # not located
    ]
    assert _classes().tolist() == want
    assert _classes(xp=torch.as_tensor).tolist() == want  # the same operators on the model's buffers
    near = _loc(("1", 5 * MB + NEAR_BP, "p"))  # exactly NEAR_BP away is no longer near
    assert _classes(GENES, near)[0, 0] == PF


def test_location_codes_are_shared_between_genes_and_landmarks():
    g, s, a, lg, ls, la = location_codes(_loc(("X", 7, "q"), ("", -1, "")), _loc(("10", 1, "p"), ("X", 2, "")))
    assert g.tolist() == [1, -1] and lg.tolist() == [0, 1]  # "10" < "X"
    assert a.tolist() == [1, -1] and la.tolist() == [0, -1] and s.tolist() == [7, -1] and ls.tolist() == [1, 2]


def _planted_samples(seed: int, n: int, effect: float):
    """(n, 12) deviations and classes: each row's class-0 landmarks lowered by ``effect`` sds."""
    rng = np.random.default_rng(seed)
    sd = rng.uniform(0.5, 2.0, 12)
    cls = rng.integers(-1, 4, (n, 12))
    dev = rng.standard_normal((n, 12)) * sd + (cls == 0) * effect * sd
    return dev - dev.mean(axis=0), cls


def test_fit_matches_a_hand_computation():
    dev, cls = _planted_samples(0, 80, -1.5)
    record, shift = arm_effect(dev, cls)
    sd = dev.std(axis=0)
    for k, name in enumerate(CLASSES):
        per_gene = [(dev[i] / sd)[cls[i] == k].mean() for i in range(len(dev)) if (cls[i] == k).any()]
        z, se = np.mean(per_gene), np.std(per_gene, ddof=1) / np.sqrt(len(per_gene))
        assert record[name] == {"n": len(per_gene), "z": round(z, 4), "se": round(se, 4), "on": bool(abs(z) > 3 * se)}
        if record[name]["on"]:
            np.testing.assert_allclose(shift[k], z * sd)
        else:
            assert not shift[k].any()
    assert record["distal"]["on"] and record["distal"]["z"] < -1


def test_classes_stay_off_without_a_clear_effect():
    dev, cls = _planted_samples(1, 60, 0.0)
    record, shift = arm_effect(dev, cls)
    assert shift is None and not any(r["on"] for r in record.values())
    few = np.full_like(cls, -1)
    few[: MIN_GENES - 1, 0] = 0  # a strong effect on too few genes
    dev[: MIN_GENES - 1, 0] = -10 * dev[:, 0].std()
    record, shift = arm_effect(dev, few)
    assert record["distal"]["n"] == MIN_GENES - 1 and not record["distal"]["on"] and shift is None
    assert arm_effect(dev, np.full_like(cls, -1)) == (None, None)


def test_forward_adds_the_shift_of_each_class_in_on_types_only():
    m = ArmEffect(len(GENES.start), len(LANDMARKS.start), 3)
    codes = tuple(torch.from_numpy(c) for c in location_codes(GENES, LANDMARKS))
    for buf, c in zip((m.chrom, m.start, m.arm, m.lm_chrom, m.lm_start, m.lm_arm), codes):
        buf.copy_(c)
    x = torch.randn(4, 3, 9)
    assert m(x, torch.arange(4)) is x  # nothing on
    m.shift[1] = torch.arange(1.0, 5.0)[:, None] * torch.ones(9)  # class k adds k + 1 in type 1
    m.shift[2] = 7.0
    m.on[1] = True
    out = m(x, torch.arange(4))
    cls = torch.as_tensor(_classes())
    want = x.clone()
    want[:, 1] += torch.where(cls >= 0, cls + 1.0, torch.zeros(()))
    torch.testing.assert_close(out, want)  # type 2's shift is ignored: it is off
    assert not torch.equal(out, x)  # and x itself was not changed in place
    torch.testing.assert_close(m(x[[3, 0]], torch.tensor([3, 0])), want[[3, 0]])


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """The tiny synthetic bundle with every gene and landmark given a place on two chromosomes,
    and every CRISPR signature lowered by EFFECT sds at its distal landmarks."""
    d = tmp_path_factory.mktemp("arm")
    b = synthesize("tiny", seed=2)
    rng = np.random.default_rng(0)

    def place(n):
        start = rng.integers(0, 100 * MB, n)
        return Locations(rng.choice(["1", "2"], n).astype(str), start, np.where(start < 50 * MB, "p", "q"))

    b.gene_locations, b.landmark_locations = place(b.n_genes), place(len(b.landmarks))
    s = b.signatures["CRISPR"]
    sd = s.values[s.split == "train"].std(axis=0)
    s.values += (_classes(b.gene_locations, b.landmark_locations)[s.gene] == 0) * EFFECT * sd
    b.save(d / "bundle")
    said = []
    run_dir, _ = train(d / "bundle", d / "run", resolve("quick", TINY, []), progress=said.append)
    (line,) = [m for m in said if "chromosome arm:" in m]  # the member's line names what it fitted
    assert "CRISPR distal -" in line
    return run_dir


def test_a_real_bundle_without_locations_trains_without_the_effect_and_says_so(tmp_path):
    b = synthesize("tiny", seed=2)
    b.truth = {}  # as imported data: no noise-free truth, no locations
    b.save(tmp_path / "bundle")
    said = []
    run_dir, _ = train(tmp_path / "bundle", tmp_path / "run", resolve("quick", TINY, []), progress=said.append)
    assert any("no gene locations in the bundle" in m for m in said)
    (member,) = read_run(run_dir)["members"]
    assert member["arm_effect"] is None


def test_a_trained_run_fits_the_planted_effect_and_adds_it(planted, tmp_path):
    (member,) = read_run(planted)["members"]
    fit = member["arm_effect"]
    p = load_predictor(planted)
    b = p.bundle
    assert b.gene_locations is not None  # the bundle kept its locations
    s = b.signatures["CRISPR"]
    train_rows = s.split == "train"
    cls = _classes(b.gene_locations, b.landmark_locations)
    y = s.values[train_rows].astype(np.float64)
    want, shift = arm_effect(y - y.mean(axis=0), cls[s.gene[train_rows]])
    assert fit["CRISPR"] == want and want["distal"]["on"] and want["distal"]["z"] < -1  # (the planted entries widen the sds)
    # the same weights with the effect off: the difference is the fitted shift at classed entries
    off = tmp_path / "off"
    shutil.copytree(planted, off)
    state = torch.load(planted / "model.pt", weights_only=True)
    torch.save({**state, "arm_effect.on": torch.zeros(len(TYPES), dtype=torch.bool)}, off / "model.pt")
    held = s.gene[~train_rows]
    diff = p.predict("CRISPR", held) - load_predictor(off).predict("CRISPR", held)
    c = cls[held]
    np.testing.assert_allclose(diff, np.where(c >= 0, shift[np.maximum(c, 0), np.arange(c.shape[1])], 0),
                               rtol=1e-4, atol=1e-5)


def test_a_run_saved_before_the_effect_predicts_without_it(planted, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(planted, old)
    state = torch.load(planted / "model.pt", weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("arm_effect.")}, old / "model.pt")
    run = json.loads((old / "run.json").read_text())
    del run["config"]["model"]["arm_effect"]
    (old / "run.json").write_text(json.dumps(run))
    p_old, p_new = load_predictor(old), load_predictor(planted)
    genes = np.arange(p_old.bundle.n_genes)
    np.testing.assert_array_equal(p_old.predict_types(["RNAi"], genes), p_new.predict_types(["RNAi"], genes))
    assert not np.array_equal(p_old.predict_types(["CRISPR"], genes), p_new.predict_types(["CRISPR"], genes))


def test_evaluate_shows_ridge_with_the_same_effects(planted):
    from tnfast.evaluate import evaluate

    ev = evaluate(planted, split="test")
    (member,) = read_run(planted)["members"]
    crispr = ev.summary["types"]["CRISPR"]
    assert crispr["ridge_effects"]["arm_effect"] == member["arm_effect"]["CRISPR"]
    d = ev.details["CRISPR"]
    assert crispr["ridge_effects"]["pearson_delta"] > crispr["ridge"]["pearson_delta"]
    diff = d.preds["ridge_effects"] - d.preds["ridge"]
    b = load_predictor(planted).bundle
    index = b.gene_index()
    c = _classes(b.gene_locations, b.landmark_locations)[[index[g] for g in d.gene_ids]]
    assert not diff[c < 0].any() and diff[c == 0].mean() < 0


def test_arm_effect_text():
    rec = {"n": 9, "z": -0.6171, "se": 0.03, "on": True}
    off = {"n": 9, "z": 0.01, "se": 0.03, "on": False}
    assert arm_effect_text({"RNAi": dict.fromkeys(CLASSES, off),
                            "CRISPR": {**dict.fromkeys(CLASSES, off), "distal": rec, "other_arm": rec},
                            "OE": dict.fromkeys(CLASSES, off)}) == \
        "CRISPR distal -0.62, other_arm -0.62; RNAi, OE off"
