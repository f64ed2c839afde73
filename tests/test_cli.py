"""The command line as a user drives it: real subprocesses, exit codes, stderr, files on disk."""

import numpy as np
import pytest
from conftest import tnfast

from tnfast.data.bundle import load_bundle
from tnfast.runs import read_run
from tnfast.design import DesignConfig, design_matrix
from tnfast.train_ridge import load_ridge


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny synthetic bundle, a run trained on it and its predictions, made once through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    r = tnfast("data", "synth", "--out", d / "tiny", "--scale", "tiny", "--seed", "3", cwd=d)
    assert r.returncode == 0, r.stderr
    r = tnfast("train", "--model", "ridge", "--data", d / "tiny", cwd=d)
    assert r.returncode == 0, r.stderr
    assert "PearsonΔ" in r.stdout and "training mean" in r.stdout
    r = tnfast("infer", "--out", d / "preds.zarr", "--chunk", "37", cwd=d)
    assert r.returncode == 0, r.stderr
    return d


def test_data_info_reports_layers_and_splits(workdir):
    r = tnfast("data", "info", workdir / "tiny", cwd=workdir)
    assert r.returncode == 0, r.stderr
    b = load_bundle(workdir / "tiny")
    assert f"genes: {b.n_genes}" in r.stdout and "landmarks: 978" in r.stdout
    for name, csr in b.networks.items():
        assert name in r.stdout and f"{csr.nnz // 2:,}" in r.stdout
    for t, s in b.signatures.items():
        assert t in r.stdout and f"{len(s.rows('train')):,}" in r.stdout


def test_preds_zarr_contract(workdir):
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(workdir / "preds.zarr")
    b = load_bundle(workdir / "tiny")
    assert ds["predictions"].dims == ("perturbation", "gene", "landmark")
    assert ds["predictions"].dtype == np.float32
    assert ds["predictions"].shape == (3, b.n_genes, 978)
    assert [str(x) for x in ds["perturbation"].values] == ["RNAi", "CRISPR", "OE"]
    assert [str(x) for x in ds["gene"].values] == b.genes.tolist()
    assert [str(x) for x in ds["landmark"].values] == b.landmarks.tolist()
    assert ds.attrs["complete"] is True and ds.attrs["tnfast_version"] and ds.attrs["run_id"]
    assert ds["predictions"].encoding["chunks"] == (3, 37, 978)
    # measured: exactly the bundle's measured genes per type
    for i, t in enumerate(["RNAi", "CRISPR", "OE"]):
        expected = np.zeros(b.n_genes, bool)
        expected[b.signatures[t].gene] = True
        np.testing.assert_array_equal(ds["measured"].values[i], expected)
    # values: the run's model applied to each gene, in gene order across chunk boundaries
    run_dir = next((workdir / "runs").iterdir())
    run = read_run(run_dir)
    models = load_ridge(run_dir, run)
    x = design_matrix(b, DesignConfig(**run["config"]))
    preds = ds["predictions"].values
    for i, t in enumerate(["RNAi", "CRISPR", "OE"]):
        np.testing.assert_allclose(preds[i], models[t].predict(x), rtol=1e-5, atol=1e-6)
    assert np.isfinite(preds).all()


def test_train_beats_mean_on_synthetic_pearson_delta(workdir):
    run = read_run(next((workdir / "runs").iterdir()))
    for t, s in run["metrics"].items():
        assert s["test"]["model"]["pearson_delta"] > 0.05, t
        assert s["test"]["mean"]["pearson_delta"] == pytest.approx(0.0, abs=1e-6)


def test_infer_refuses_to_overwrite(workdir):
    before = sorted(p.name for p in (workdir / "preds.zarr").iterdir())
    r = tnfast("infer", "--out", workdir / "preds.zarr", cwd=workdir)
    assert r.returncode == 2
    assert "already exists" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (workdir / "preds.zarr").iterdir()) == before


@pytest.mark.parametrize("args, expected", [
    (("data", "info", "{tmp}/nope"), "not a directory"),
    (("data", "import", "--out", "{tmp}/b", "--signatures", "{tmp}/missing.gctx"), "no such file"),
    (("data", "import", "--out", "{tmp}/b", "--edges", "nonsense"), "expected NAME=FILE"),
    (("data", "import", "--out", "{tmp}/b"), "nothing to import"),
    (("data", "synth", "--out", "{tmp}/b", "--scale", "huge"), "expected one of full, small, tiny"),
    (("infer", "--out", "{tmp}/p.zarr", "--run", "{tmp}"), "not a complete tnfast run"),
    (("infer", "--out", "{tmp}/p.zarr", "--types", "RNAi,XYZ"), "--types"),
    (("train", "--data", "{tmp}"), "no bundle.json"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    r = tnfast(*(a.format(tmp=tmp_path) for a in args), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    # progress lines may come first; the error is one line, the last one
    assert errors == [lines[-1]] and expected in errors[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "p.zarr").exists()


def test_debug_shows_the_traceback(tmp_path):
    r = tnfast("--debug", "data", "info", tmp_path / "nope", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "InputError" in r.stderr


def test_unknown_option_is_a_usage_error(tmp_path):
    r = tnfast("train", "--no-such-option", cwd=tmp_path)
    assert r.returncode == 2 and "No such option" in r.stderr and "Traceback" not in r.stderr
