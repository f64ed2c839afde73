"""assign_splits: gene-disjoint across types, fractions, determinism, given splits honoured."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tnfast.data.bundle import SPLITS
from tnfast.data.splits import assign_splits


def by_gene(measured, out):
    """gene -> set of splits it has across all types."""
    res: dict[int, set] = {}
    for t, g in measured.items():
        assert out[t].shape == g.shape
        for x, s in zip(g.tolist(), out[t].tolist()):
            res.setdefault(x, set()).add(s)
    return res


def overlapping(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return {t: np.sort(rng.choice(n, size=k, replace=False)).astype(np.int32)
            for t, k in (("RNAi", 600), ("CRISPR", 700), ("OE", 400))}


def test_gene_disjoint_across_types():
    m = overlapping()
    out = assign_splits(m)
    assert set(out) == set(m)
    for t in m:
        assert out[t].dtype == np.dtype("<U5") and set(out[t].tolist()) <= set(SPLITS)
    genes = by_gene(m, out)
    assert all(len(v) == 1 for v in genes.values())
    # and so no gene is in train for one type and in valid/test for another
    train = {g for g, v in genes.items() if "train" in v}
    for t in m:
        held = set(m[t][out[t] != "train"].tolist())
        assert not (held & train)


def test_fractions_are_80_10_10_of_distinct_genes():
    m = overlapping()
    genes = by_gene(m, assign_splits(m))
    n = len(genes)
    counts = {s: sum(s in v for v in genes.values()) for s in SPLITS}
    assert counts == {"train": round(0.8 * n), "valid": round(0.9 * n) - round(0.8 * n),
                      "test": n - round(0.9 * n)}


def test_fractions_option():
    m = {"RNAi": np.arange(100)}
    out = assign_splits(m, fractions=(0.5, 0.3, 0.2))
    assert {s: int((out["RNAi"] == s).sum()) for s in SPLITS} == {"train": 50, "valid": 30, "test": 20}


def test_small_counts():
    assert assign_splits({}) == {}
    out = assign_splits({"RNAi": np.zeros(0, np.int32), "OE": np.array([3])})
    assert out["RNAi"].shape == (0,) and out["OE"].tolist() == ["train"]
    ten = assign_splits({"RNAi": np.arange(10)})["RNAi"]
    assert sorted(ten.tolist()).count("train") == 8 and (ten == "valid").sum() == 1 and (ten == "test").sum() == 1


def test_deterministic_by_seed_and_independent_of_order():
    m = overlapping()
    a, b = assign_splits(m, seed=5), assign_splits(m, seed=5)
    assert all(np.array_equal(a[t], b[t]) for t in m)
    c = assign_splits(m, seed=6)
    assert any(not np.array_equal(a[t], c[t]) for t in m)
    # Rows in another order get the same split per gene.
    rng = np.random.default_rng(1)
    perm = {t: rng.permutation(len(g)) for t, g in m.items()}
    d = assign_splits({t: g[perm[t]] for t, g in m.items()}, seed=5)
    for t in m:
        assert np.array_equal(d[t], a[t][perm[t]])


def test_given_splits_honoured_and_propagated():
    m = {"RNAi": np.arange(0, 60), "CRISPR": np.arange(30, 90), "OE": np.arange(50, 120)}
    given = {"RNAi": {0: "test", 31: "test", 55: "valid"},
             "CRISPR": {31: "train", 80: "test"}}
    out = assign_splits(m, given, seed=2)
    split = {t: dict(zip(m[t].tolist(), out[t].tolist())) for t in m}
    assert split["RNAi"][0] == "test"
    # 31 is given differently in two files: each type as its file says
    assert split["RNAi"][31] == "test" and split["CRISPR"][31] == "train"
    # 55: given for RNAi, carried to CRISPR and OE where no file says otherwise
    assert split["RNAi"][55] == split["CRISPR"][55] == split["OE"][55] == "valid"
    # 80: given for CRISPR only, carried to OE
    assert split["CRISPR"][80] == split["OE"][80] == "test"
    # the rest: one split per gene across types
    fixed = {0, 31, 55, 80}
    genes = by_gene(m, out)
    assert all(len(v) == 1 for g, v in genes.items() if g not in fixed)


def test_given_splits_do_not_change_the_fractions_of_the_rest():
    m = {"RNAi": np.arange(200)}
    given = {"RNAi": {g: "test" for g in range(100)}}
    out = assign_splits(m, given)["RNAi"]
    assert (out[:100] == "test").all()
    rest = out[100:]
    assert {s: int((rest == s).sum()) for s in SPLITS} == {"train": 80, "valid": 10, "test": 10}


def test_given_for_a_type_not_measured_is_ignored():
    m = {"RNAi": np.arange(10)}
    a = assign_splits(m, seed=0)
    b = assign_splits(m, {"OE": {1: "test"}}, seed=0)
    assert np.array_equal(a["RNAi"], b["RNAi"])


@st.composite
def problems(draw):
    n = draw(st.integers(1, 40))
    types = draw(st.lists(st.sampled_from(["RNAi", "CRISPR", "OE"]), min_size=1, max_size=3, unique=True))
    measured = {t: np.array(sorted(draw(st.sets(st.integers(0, n - 1), max_size=n))), dtype=np.int32)
                for t in types}
    given = {}
    for t in draw(st.lists(st.sampled_from(types), unique=True)):
        genes = draw(st.sets(st.integers(0, n - 1), max_size=n))  # may name unmeasured genes
        given[t] = {g: draw(st.sampled_from(SPLITS)) for g in genes}
    return measured, given, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None)
@given(problems())
def test_property_one_split_per_gene_unless_a_file_says_otherwise(problem):
    measured, gv, seed = problem
    out = assign_splits(measured, gv, seed=seed)
    assert list(out) == list(measured)
    # Oracle: the split a gene gets where no file of its own type names it: the first type (in
    # the order of `measured`) whose file names it, else one split shared by all types.
    first_given = {}
    for t in measured:
        for g, s in gv.get(t, {}).items():
            first_given.setdefault(g, s)
    shared: dict[int, str] = {}
    for t, genes in measured.items():
        assert out[t].shape == genes.shape
        for g, s in zip(genes.tolist(), out[t].tolist()):
            assert s in SPLITS
            if g in gv.get(t, {}):
                assert s == gv[t][g]
            elif g in first_given:
                assert s == first_given[g]
            else:
                assert shared.setdefault(g, s) == s
    # With no files at all every gene has exactly one split across all types.
    plain = by_gene(measured, assign_splits(measured, seed=seed))
    assert all(len(v) == 1 for v in plain.values())
    # Deterministic.
    again = assign_splits(measured, gv, seed=seed)
    assert all(np.array_equal(out[t], again[t]) for t in measured)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 19, 505])
def test_free_gene_counts(n):
    out = assign_splits({"CRISPR": np.arange(n)}, seed=n)["CRISPR"]
    cuts = np.round(np.array([0.8, 0.9]) * n).astype(int)
    assert (out == "train").sum() == cuts[0]
    assert (out == "valid").sum() == cuts[1] - cuts[0]
    assert (out == "test").sum() == n - cuts[1]
