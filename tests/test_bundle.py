"""The dataset bundle: exact round trip, atomic save, and a clear error for every broken bundle."""

from __future__ import annotations

import io
import json
import stat
import zipfile

import numpy as np
import pytest

import tnfast.data.bundle as bundle_mod
from tnfast.data.bundle import Bundle, Features, Signatures, load_bundle
from tnfast.data.csr import build_csr
from tnfast.errors import InputError


def small_bundle() -> Bundle:
    genes = np.array(["1", "2", "3", "10", "ABC1"])
    landmarks = np.array(["16", "23", "25"])
    rng = np.random.default_rng(7)
    nets = {
        "ppi": build_csr(np.array([0, 1, 2, 4]), np.array([1, 2, 3, 0]), 5, np.array([0.5, 1, 2, 3], np.float32)),
        "go-bp": build_csr(np.array([0, 3]), np.array([3, 4]), 5),
    }
    feats = Features(rng.normal(size=(5, 4)).astype(np.float32), np.array([1, 1, 0, 1, 1], bool),
                     np.array(["f0", "f1", "f2", "f3"]))
    feats.values[2] = 0
    sigs = {
        "RNAi": Signatures(np.array([0, 2, 3], np.int32), rng.uniform(-1, 1, (3, 3)).astype(np.float32),
                           np.array(["train", "valid", "test"])),
        "OE": Signatures(np.array([4], np.int32), rng.uniform(-1, 1, (1, 3)).astype(np.float32),
                         np.array(["train"])),
    }
    truth = {"RNAi": rng.normal(size=(5, 3)).astype(np.float32), "OE": rng.normal(size=(5, 3)).astype(np.float32)}
    return Bundle(genes, landmarks, nets, feats, sigs, truth, meta={"name": "tiny", "source": ["a.gctx"], "seed": 3})


def assert_same(a: Bundle, b: Bundle) -> None:
    assert a.genes.tolist() == b.genes.tolist() and a.landmarks.tolist() == b.landmarks.tolist()
    assert list(a.networks) == list(b.networks)
    for k in a.networks:
        for x, y in zip(a.networks[k], b.networks[k]):
            assert x.dtype == y.dtype and np.array_equal(x, y)
    assert (a.features is None) == (b.features is None)
    if a.features is not None:
        assert np.array_equal(a.features.values, b.features.values) and b.features.values.dtype == np.float32
        assert np.array_equal(a.features.present, b.features.present) and b.features.present.dtype == bool
        assert a.features.names.tolist() == b.features.names.tolist()
    assert list(a.signatures) == list(b.signatures)
    for t in a.signatures:
        sa, sb = a.signatures[t], b.signatures[t]
        assert np.array_equal(sa.gene, sb.gene) and sb.gene.dtype == np.int32
        assert np.array_equal(sa.values, sb.values) and sb.values.dtype == np.float32
        assert sa.split.tolist() == sb.split.tolist()
    assert list(a.truth) == list(b.truth)
    for t in a.truth:
        assert np.array_equal(a.truth[t], np.asarray(b.truth[t]))


def test_round_trip_is_exact(tmp_path):
    b = small_bundle()
    path = b.save(tmp_path / "bundle")
    assert path == tmp_path / "bundle"
    c = load_bundle(path)
    assert_same(b, c)
    assert c.meta == {"name": "tiny", "source": ["a.gctx"], "seed": 3}
    assert c.signatures["RNAi"].rows("valid").tolist() == [1]
    m = json.loads((path / "bundle.json").read_text())
    assert m["format"] == "tnfast-bundle" and m["version"] == 1 and m["n_genes"] == 5
    assert m["layers"] == ["ppi", "go-bp"] and m["types"] == ["RNAi", "OE"] and m["features"] == 4
    # No pickles anywhere: every array loads with allow_pickle=False.
    for f in path.rglob("*.np[yz]"):
        np.load(f, allow_pickle=False)
    # Without truth, nothing of it is read.
    assert load_bundle(path, truth=False).truth == {}
    # Twice round: identical again
    assert_same(b, load_bundle(c.save(tmp_path / "again")))


def test_round_trip_minimal(tmp_path):
    b = Bundle(np.array(["a", "b"]), np.array(["1"]))
    c = load_bundle(b.save(tmp_path / "m"))
    assert_same(b, c)
    assert c.networks == {} and c.features is None and c.signatures == {} and c.truth == {}


def test_saved_bundle_has_usual_permissions(tmp_path):
    path = small_bundle().save(tmp_path / "bundle")
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode & stat.S_IRUSR and mode & stat.S_IXUSR
    probe = tmp_path / "probe"
    probe.mkdir()
    assert mode == stat.S_IMODE(probe.stat().st_mode)  # as a plain mkdir under this umask, not 0700


def test_save_refuses_existing_path_without_overwrite(tmp_path):
    b = small_bundle()
    b.save(tmp_path / "x")
    with pytest.raises(InputError, match="already exists") as e:
        b.save(tmp_path / "x")
    assert str(e.value).startswith(str(tmp_path / "x"))
    b.meta["name"] = "second"
    b.save(tmp_path / "x", overwrite=True)
    assert load_bundle(tmp_path / "x").meta["name"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_save_is_atomic(tmp_path, monkeypatch, overwrite):
    b = small_bundle()
    path = tmp_path / "bundle"
    if overwrite:
        b.save(path)
    real = np.savez
    calls = []

    def failing_savez(file, **arrays):
        calls.append(file)
        if len(calls) == 3:  # after some files are written: genes, landmarks, two layers...
            raise OSError(28, "No space left on device")
        return real(file, **arrays)

    monkeypatch.setattr(bundle_mod.np, "savez", failing_savez)
    b2 = small_bundle()
    b2.meta["name"] = "new"
    with pytest.raises(OSError, match="No space"):
        b2.save(path, overwrite=overwrite)
    assert len(calls) == 3
    assert [p.name for p in tmp_path.iterdir()] == (["bundle"] if overwrite else [])
    if overwrite:  # the old bundle is intact
        monkeypatch.undo()
        assert load_bundle(path).meta["name"] == "tiny"


def test_interrupt_during_save_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_mod.np, "save", interrupted)  # truth arrays, near the end
    with pytest.raises(KeyboardInterrupt):
        small_bundle().save(tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- broken bundles

def _saved(tmp_path):
    return small_bundle().save(tmp_path / "bundle")


def _manifest(path, **changes):
    m = json.loads((path / "bundle.json").read_text())
    m.update(changes)
    (path / "bundle.json").write_text(json.dumps(m))


def broken_not_a_dir(p):
    f = p.parent / "file.txt"
    f.write_text("x")
    return f, f, "not a directory"


def broken_missing(p):
    return p.parent / "nope", p.parent / "nope", "not a directory"


def broken_no_manifest(p):
    (p / "bundle.json").unlink()
    return p, p, "no bundle.json"


def broken_bad_json(p):
    (p / "bundle.json").write_text('{"format": "tnfast-bundle",\n  "version": }')
    return p, p / "bundle.json", "line 2"


def broken_wrong_format(p):
    _manifest(p, format="something-else")
    return p, p / "bundle.json", "tnfast-bundle"


def broken_manifest_not_object(p):
    (p / "bundle.json").write_text("[1, 2]")
    return p, p / "bundle.json", "format"


def broken_newer_version(p):
    _manifest(p, version=2)
    return p, p / "bundle.json", "upgrade tnfast"


def broken_version_not_int(p):
    _manifest(p, version="1")
    return p, p / "bundle.json", "version '1'"


def broken_missing_genes(p):
    (p / "genes.tsv").unlink()
    return p, p / "genes.tsv", "missing"


def broken_genes_header(p):
    (p / "genes.tsv").write_text("id\n1\n2\n3\n10\nABC1\n")
    return p, p / "genes.tsv", "line 1"


def broken_missing_landmarks(p):
    (p / "landmarks.tsv").unlink()
    return p, p / "landmarks.tsv", "missing"


def broken_npz_garbage(p):
    (p / "networks" / "ppi.npz").write_bytes(b"this is not a zip file at all" * 10)
    return p, p / "networks" / "ppi.npz", "not a readable .npz"


def broken_npz_truncated(p):
    f = p / "signatures" / "RNAi.npz"
    f.write_bytes(f.read_bytes()[:200])
    return p, f, "not a readable .npz"


def broken_npz_missing_array(p):
    np.savez(p / "networks" / "ppi.npz", indptr=np.zeros(6, np.int64))
    return p, p / "networks" / "ppi.npz", "missing arrays"


def broken_npz_member_not_npy(p):
    # A zip member under an array's name whose bytes are no .npy: numpy returns the raw bytes.
    c = build_csr(np.array([0]), np.array([1]), 5)
    with zipfile.ZipFile(p / "networks" / "ppi.npz", "w") as z:
        z.writestr("indptr.npy", _npy_bytes(c.indptr))
        z.writestr("indices.npy", b"not an array")
        z.writestr("weights.npy", _npy_bytes(c.weights))
    return p, p / "networks" / "ppi.npz", "'indices' is not an .npy array"


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def broken_layer_file_missing(p):
    (p / "networks" / "go-bp.npz").unlink()
    return p, p / "networks" / "go-bp.npz", "no such file"


def broken_csr_wrong_size(p):
    c = build_csr(np.array([0]), np.array([1]), 4)  # 4 nodes, the bundle has 5 genes
    np.savez(p / "networks" / "ppi.npz", indptr=c.indptr, indices=c.indices, weights=c.weights)
    return p, p / "networks" / "ppi.npz", "5 genes"


def broken_csr_nnz_mismatch(p):
    c = build_csr(np.array([0]), np.array([1]), 5)
    np.savez(p / "networks" / "ppi.npz", indptr=c.indptr, indices=c.indices, weights=c.weights[:1])
    return p, p / "networks" / "ppi.npz", "CSR shape"


def broken_csr_index_out_of_range(p):
    c = build_csr(np.array([0]), np.array([1]), 5)
    idx = c.indices.copy()
    idx[0] = 9
    np.savez(p / "networks" / "ppi.npz", indptr=c.indptr, indices=idx, weights=c.weights)
    return p, p / "networks" / "ppi.npz", "out of range"


def broken_layer_escapes(p):
    # A valid CSR waits outside the bundle; the manifest must not be able to point at it.
    c = build_csr(np.array([0]), np.array([1]), 5)
    (p.parent / "etc").mkdir()
    np.savez(p.parent / "etc" / "x.npz", indptr=c.indptr, indices=c.indices, weights=c.weights)
    _manifest(p, layers=["ppi", "../../etc/x"])
    return p, p / "bundle.json", "escapes"


def broken_truth_escapes(p):
    np.save(p.parent / "x.npy", np.zeros((5, 3), np.float32))
    _manifest(p, truth=["RNAi", "../../x"])
    return p, p / "bundle.json", "escapes"


def broken_unknown_type(p):
    _manifest(p, types=["RNAi", "../OE"])
    return p, p / "bundle.json", "unknown perturbation type"


def broken_split_values(p):
    f = p / "signatures" / "RNAi.npz"
    with np.load(f) as z:
        a = dict(z)
    a["split"] = np.array(["train", "hold", "test"])
    np.savez(f, **a)
    return p, f, "split values"


def broken_signature_shape(p):
    f = p / "signatures" / "OE.npz"
    np.savez(f, gene=np.array([4], np.int32), values=np.zeros((1, 4), np.float32), split=np.array(["train"]))
    return p, f, "(n, 3)"


def broken_signature_gene_range(p):
    f = p / "signatures" / "OE.npz"
    np.savez(f, gene=np.array([5], np.int32), values=np.zeros((1, 3), np.float32), split=np.array(["train"]))
    return p, f, "out of range"


def broken_features_rows(p):
    np.savez(p / "features.npz", values=np.zeros((4, 4), np.float32), present=np.ones(4, bool),
             names=np.array(["a", "b", "c", "d"]))
    return p, p / "features.npz", "5 rows"


def broken_truth_shape(p):
    np.save(p / "truth" / "OE.npy", np.zeros((5, 2), np.float32))
    return p, p / "truth" / "OE.npy", "shape (5, 3)"


def broken_truth_pickled(p):
    np.save(p / "truth" / "OE.npy", np.array([{"a": 1}], dtype=object))
    return p, p / "truth" / "OE.npy", "not a readable .npy"



def broken_truth_npz(p):
    with open(p / "truth" / "OE.npy", "wb") as fh:
        np.savez(fh, truth=np.zeros((5, 3), np.float32))
    return p, p / "truth" / "OE.npy", ".npz archive"


def broken_truth_text(p):
    np.save(p / "truth" / "OE.npy", np.full((5, 3), "x"))
    return p, p / "truth" / "OE.npy", "floating-point"

BROKEN = [v for k, v in sorted(globals().items()) if k.startswith("broken_")]


@pytest.mark.parametrize("breaker", BROKEN, ids=[b.__name__[7:] for b in BROKEN])
def test_load_errors(tmp_path, breaker):
    path, where, words = breaker(_saved(tmp_path))
    with pytest.raises(InputError) as e:
        load_bundle(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{where}:"), msg
    assert words in msg, msg


def test_load_refuses_duplicate_gene_ids_and_broken_indptr(tmp_path):
    b = Bundle(genes=np.array(["1", "2", "3"]), landmarks=np.array(["10", "20"]),
               networks={"x": build_csr(np.array([0]), np.array([1]), 3)})
    b.save(tmp_path / "b")
    (tmp_path / "b" / "genes.tsv").write_text("gene_id\n1\n2\n2\n")
    with pytest.raises(InputError, match="duplicate gene id '2'"):
        load_bundle(tmp_path / "b")
    b.save(tmp_path / "c")
    np.savez(tmp_path / "c" / "networks" / "x.npz", indptr=np.array([0, 2, 1, 2]),
             indices=np.array([1, 0], np.int32), weights=np.ones(2, np.float32))
    with pytest.raises(InputError, match="not non-decreasing"):
        load_bundle(tmp_path / "c")
