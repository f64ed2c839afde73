"""The dataset bundle: one directory, no pickles, everything the model needs about a dataset.

Layout (format version 1; see the README, "Dataset bundle")::

    bundle.json              manifest: format, version, name, source, counts, units
    genes.tsv                gene universe: one id per row (column gene_id), row order = index
    landmarks.tsv            the landmark gene ids (column landmark_id), readout order
    networks/<layer>.npz     CSR per layer: indptr int64 (n+1), indices int32, weights float32
    features.npz             optional: values float32 (n_genes, F), present bool (n_genes,), names
    signatures/<TYPE>.npz    per type: gene int32 (n,) index into genes, values float32 (n, L),
                             split <U5 (n,) in {train, valid, test}
    truth/<TYPE>.npy         optional (synthetic data): noise-free signature of every gene, (n_genes, L)
    locations.npz            optional (manifest "locations": true): gene_chromosome, gene_start,
                             gene_arm (n_genes,) and landmark_chromosome, landmark_start,
                             landmark_arm (n_landmarks,); see :class:`Locations`

A bundle is written into a temporary sibling directory and renamed into place at the end, so a
directory with a bundle.json is always complete.
"""

from __future__ import annotations

import json
import os
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, check_output
from ..errors import InputError, input_file
from .csr import CSR
from .tables import check_unique

FORMAT = "tnfast-bundle"
VERSION = 1
TYPES = ("RNAi", "CRISPR", "OE")
# CMap pert_type codes of genetic perturbations; trt_sh.cgs is the consensus over a gene's shRNAs.
PERT_TYPE_CODES = {"trt_sh": "RNAi", "trt_sh.cgs": "RNAi", "trt_xpr": "CRISPR", "trt_oe": "OE"}
TYPE_CODES = {"RNAi": "trt_sh", "CRISPR": "trt_xpr", "OE": "trt_oe"}  # what tnfast writes
SPLITS = ("train", "valid", "test")
# What np.load raises for a damaged .npy/.npz: a garbled header can also fail in numpy's
# Python-2 header clean-up (tokenize.TokenError, IndentationError: a SyntaxError) or claim a
# shape no memory map can take (OverflowError); a damaged zip entry can claim an unknown
# compression method (NotImplementedError) or encryption (RuntimeError, its base class).
NPY_ERRORS = (OSError, ValueError, EOFError, OverflowError, RuntimeError, SyntaxError, zipfile.BadZipFile,
              zlib.error, tokenize.TokenError)


def load_npy(path: str | os.PathLike, what: str, mmap_mode: str | None = None) -> np.ndarray:
    """One array saved by np.save, or an InputError; never a pickle, never an .npz archive
    (np.load opens a zip as one, whatever the file's name)."""
    try:
        arr = np.load(input_file(path, what), mmap_mode=mmap_mode, allow_pickle=False)
    except NPY_ERRORS as e:
        raise InputError(path, f"not a readable .npy array ({e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError(path, "is an .npz archive, expected one .npy array (np.save)")
    return arr


@dataclass
class Features:
    values: np.ndarray  # (n_genes, F) float32; rows of absent genes are 0
    present: np.ndarray  # (n_genes,) bool
    names: np.ndarray  # (F,) str


@dataclass
class Signatures:
    gene: np.ndarray  # (n,) int32 index into Bundle.genes, unique
    values: np.ndarray  # (n, n_landmarks) float32
    split: np.ndarray  # (n,) str in SPLITS

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


@dataclass
class Locations:
    """Where genes sit on the genome, one entry per gene (of Bundle.genes, or of its landmarks)."""
    chromosome: np.ndarray  # (n,) str: "1".."22", "X", "Y", "MT"; "" where unknown
    start: np.ndarray  # (n,) int64: first base pair (strand ignored); -1 where unknown
    arm: np.ndarray  # (n,) str: "p" or "q" (from the cytogenetic band); "" where unknown


@dataclass
class Bundle:
    genes: np.ndarray  # (n_genes,) str
    landmarks: np.ndarray  # (n_landmarks,) str
    networks: dict[str, CSR] = field(default_factory=dict)
    features: Features | None = None
    signatures: dict[str, Signatures] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    # optional (from org.Hs.eg.sqlite or a locations table): both set or both None
    gene_locations: Locations | None = None
    landmark_locations: Locations | None = None
    # arrays derived from the above, computed once (see structural_inputs); never saved
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    def gene_index(self) -> dict[str, int]:
        return {g: i for i, g in enumerate(self.genes.tolist())}

    def structural_inputs(self, dim: int, seed: int, use_edge_weights: bool = True) -> np.ndarray:
        """(N, L*dim) float32: :func:`structural_inputs` of the networks (in manifest order),
        with their weights or, without ``use_edge_weights``, weight 1. Computed once per
        argument set and kept (training, the baselines' design and evaluation may all ask).
        The networks must not change afterwards (replacing a layer's arrays is noticed;
        editing them in place is not)."""
        layers = tuple((c.indptr, c.indices, c.weights if use_edge_weights else None)
                       for c in self.networks.values())
        key = ("structural", int(dim), int(seed), bool(use_edge_weights))
        hit = self._derived.get(key)
        if hit is None or len(hit[0]) != len(layers) or any(
                a is not b for x, y in zip(hit[0], layers) for a, b in zip(x, y)):
            hit = self._derived[key] = (layers, structural_inputs(layers, self.n_genes, dim, seed))
        return hit[1]

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write atomically: build in a temporary sibling, then rename into ``path``.
        ``overwrite`` replaces only a bundle or an empty directory (see :func:`check_bundle_out`)."""
        check_bundle_out(path, overwrite)
        with atomic_dir(path, overwrite) as tmp:
            self._write(tmp)
        return Path(path)

    def _write(self, d: Path) -> None:
        _write_column(d / "genes.tsv", "gene_id", self.genes)
        _write_column(d / "landmarks.tsv", "landmark_id", self.landmarks)
        if self.networks:
            (d / "networks").mkdir()
        for name, csr in self.networks.items():
            np.savez(d / "networks" / f"{name}.npz", indptr=csr.indptr, indices=csr.indices,
                     weights=csr.weights)
        if self.features is not None:
            f = self.features
            np.savez(d / "features.npz", values=f.values, present=f.present,
                     names=np.asarray(f.names, dtype=str))
        if self.signatures:
            (d / "signatures").mkdir()
        for t, s in self.signatures.items():
            np.savez(d / "signatures" / f"{t}.npz", gene=s.gene, values=s.values,
                     split=np.asarray(s.split, dtype="<U5"))
        if self.truth:
            (d / "truth").mkdir()
        for t, arr in self.truth.items():
            np.save(d / "truth" / f"{t}.npy", arr)
        if self.gene_locations is not None:
            _write_locations(d / "locations.npz", self.gene_locations, self.landmark_locations)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            **self.meta,
            "n_genes": self.n_genes,
            "n_landmarks": len(self.landmarks),
            "layers": list(self.networks),
            "types": list(self.signatures),
            "features": 0 if self.features is None else int(self.features.values.shape[1]),
            "truth": list(self.truth),
        }
        if self.gene_locations is not None:  # (only then: a bundle without them is written as before)
            manifest["locations"] = True
        # Written last: its presence marks the bundle complete.
        (d / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")


def check_bundle_out(path: str | os.PathLike, overwrite: bool) -> None:
    """One InputError, before any work, unless a bundle may be written to ``path``.

    ``overwrite`` replaces only what is ours to replace, an earlier bundle or an empty
    directory: an --out that names the user's own folder or file by mistake is never deleted.
    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise InputError(path, "already exists (pass --overwrite to replace it)")
        if not (_is_bundle(path) or (path.is_dir() and not any(path.iterdir()))):
            raise InputError(path, "is not a tnfast bundle (nor an empty directory): left alone, as --overwrite "
                                   "replaces only those")
    check_output(path, directory=True)


def _is_bundle(path: Path) -> bool:
    """Whether ``path`` has a bundle.json with tnfast's format marker (of any version: an
    older or newer bundle is still one of ours)."""
    try:
        manifest = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no such file, not a directory, not UTF-8, not JSON
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def structural_inputs(layers, n_genes: int, dim: int, seed: int) -> np.ndarray:
    """(N, L*dim) float32, the model's fixed structural inputs:
    ``tnfast.embed.multiplex_embedding(layers, dim, seed) * sqrt(dim)`` (entries of unit mean
    square over the genes with edges). ``layers``: per layer ``(indptr, indices)`` or ``(indptr, indices, weights)``,
    weights None meaning 1."""
    from ..embed import multiplex_embedding

    if not layers:
        return np.zeros((n_genes, 0), np.float32)
    csrs = {}
    for i, c in enumerate(layers):
        ix = np.asarray(c[1], np.int32)
        w = np.asarray(c[2], np.float32) if len(c) > 2 and c[2] is not None else np.ones(len(ix), np.float32)
        csrs[i] = CSR(np.asarray(c[0], np.int64), ix, w)
    return (multiplex_embedding(csrs, dim, seed) * np.sqrt(dim)).astype(np.float32)


_LOCATION_ARRAYS = {"chromosome": "U", "start": "iu", "arm": "U"}


def _write_locations(path: Path, genes: Locations, landmarks: Locations | None) -> None:
    if landmarks is None:
        raise ValueError("gene_locations and landmark_locations must be set together")
    arrays = {}
    for who, loc in (("gene", genes), ("landmark", landmarks)):
        arrays[f"{who}_chromosome"] = np.asarray(loc.chromosome, dtype=str)
        arrays[f"{who}_start"] = np.asarray(loc.start, dtype=np.int64)
        arrays[f"{who}_arm"] = np.asarray(loc.arm, dtype=str)
    np.savez(path, **arrays)


def _read_locations(path: Path, n: int, n_lm: int) -> tuple[Locations, Locations]:
    kinds = {f"{who}_{k}": v for who in ("gene", "landmark") for k, v in _LOCATION_ARRAYS.items()}
    a = _npz(path, kinds)
    out = []
    for who, size in (("gene", n), ("landmark", n_lm)):
        chromosome, start, arm = (a[f"{who}_{k}"] for k in _LOCATION_ARRAYS)
        if any(x.shape != (size,) for x in (chromosome, start, arm)):
            raise InputError(path, f"expected {who}_chromosome, {who}_start and {who}_arm of length {size}, "
                                   f"one per {who}")
        if (start < -1).any():
            raise InputError(path, f"{who}_start below -1 (-1 marks an unknown start)")
        if not set(np.unique(arm).tolist()) <= {"p", "q", ""}:
            raise InputError(path, f"{who}_arm values must be 'p', 'q' or '' (unknown)")
        out.append(Locations(chromosome, start.astype(np.int64, copy=False), arm))
    return out[0], out[1]


def _write_column(path: Path, header: str, values: np.ndarray) -> None:
    path.write_text(header + "\n" + "".join(f"{v}\n" for v in values.tolist()))


def _read_column(path: Path, header: str) -> np.ndarray:
    if not path.exists():
        raise InputError(path, "missing (not a complete tnfast bundle)")
    try:
        lines = Path(input_file(path, "a one-column table")).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None
    if not lines or lines[0] != header:
        raise InputError(path, f"expected header '{header}'", place="line 1")
    return np.asarray(lines[1:], dtype=str)


_KINDS = {"i": "integer", "f": "floating-point", "U": "text", "b": "boolean"}


def _npz(path: Path, kinds: dict[str, str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, each of one of the dtype kinds given (e.g. "iu": integers)."""
    try:
        with np.load(input_file(path, "an .npz file of the bundle"), allow_pickle=False) as z:
            missing = [k for k in kinds if k not in z.files]
            if missing:
                raise InputError(path, f"missing arrays {missing}")
            arrays = {k: z[k] for k in kinds}
    except NPY_ERRORS as e:
        raise InputError(path, f"not a readable .npz file ({e})") from None
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray):  # numpy hands back the raw bytes of a member that is no .npy
            raise InputError(path, f"array {k!r} is not an .npy array inside the archive")
        if a.dtype.kind not in kinds[k]:
            raise InputError(path, f"array {k!r} is {a.dtype}, expected {_KINDS[kinds[k][0]]} values")
    return arrays


def load_bundle(path: str | os.PathLike, truth: bool = True) -> Bundle:
    """Read and validate a bundle directory. ``truth=True`` memory-maps the truth arrays."""
    d = Path(path)
    if not d.is_dir():
        raise InputError(d, "not a directory (expected a tnfast bundle; see `tnfast data import`)")
    mpath = d / "bundle.json"
    if not mpath.is_file():
        raise InputError(d, "no bundle.json: not a tnfast bundle, or an incomplete one")
    try:
        manifest = json.loads(Path(input_file(mpath, "the bundle's JSON manifest")).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(mpath, "not UTF-8 text (expected JSON)") from None
    except json.JSONDecodeError as e:
        raise InputError(mpath, f"invalid JSON ({e.msg})", place=f"line {e.lineno}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(mpath, f"expected \"format\": \"{FORMAT}\"")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
        raise InputError(mpath, f"bundle format version {version!r}; this tnfast reads up to "
                                f"{VERSION} (upgrade tnfast)")
    genes = _read_column(d / "genes.tsv", "gene_id")
    landmarks = _read_column(d / "landmarks.tsv", "landmark_id")
    check_unique(d / "genes.tsv", genes, "gene id")
    check_unique(d / "landmarks.tsv", landmarks, "landmark id")
    n, n_lm = len(genes), len(landmarks)
    networks = {}
    for name in _names(manifest, "layers", mpath):
        p = _safe_child(d, "networks", f"{name}.npz")
        a = _npz(p, {"indptr": "iu", "indices": "iu", "weights": "fiu"})
        if any(x.ndim != 1 for x in a.values()):
            raise InputError(p, "expected 1-D arrays indptr, indices and weights")
        # copy=False: np.load already gave fresh arrays (no second copy of ~15M edges)
        csr = CSR(a["indptr"].astype(np.int64, copy=False), a["indices"].astype(np.int32, copy=False),
                  a["weights"].astype(np.float32, copy=False))
        if csr.n != n or csr.indptr[-1] != len(csr.indices) or len(csr.weights) != len(csr.indices):
            raise InputError(p, f"CSR shape does not match the {n} genes of the bundle")
        if csr.indptr[0] != 0 or (np.diff(csr.indptr) < 0).any():
            raise InputError(p, "indptr does not start at 0 or is not non-decreasing (corrupt CSR)")
        if len(csr.indices) and (csr.indices.min() < 0 or csr.indices.max() >= n):
            raise InputError(p, "column index out of range")
        networks[name] = csr
    features = None
    n_features = manifest.get("features", 0)
    if not isinstance(n_features, int) or n_features < 0:
        raise InputError(mpath, f"'features' must be a count of features, found {n_features!r}")
    if n_features:
        p = d / "features.npz"
        a = _npz(p, {"values": "fiu", "present": "b", "names": "U"})
        if a["values"].ndim != 2 or a["values"].shape[0] != n or a["present"].shape != (n,):
            raise InputError(p, f"expected {n} rows, one per gene")
        features = Features(a["values"].astype(np.float32, copy=False), a["present"].astype(bool, copy=False),
                            a["names"])
    signatures = {}
    for t in _names(manifest, "types", mpath):
        if t not in TYPES:
            raise InputError(mpath, f"unknown perturbation type {t!r}; expected one of {TYPES}")
        p = d / "signatures" / f"{t}.npz"
        a = _npz(p, {"gene": "iu", "values": "fiu", "split": "U"})
        s = Signatures(a["gene"].astype(np.int32, copy=False), a["values"].astype(np.float32, copy=False),
                       a["split"])
        if s.gene.ndim != 1 or s.values.ndim != 2 or s.values.shape != (len(s.gene), n_lm) or s.split.shape != s.gene.shape:
            raise InputError(p, f"expected values of shape (n, {n_lm}) with one gene and split per row")
        if len(s.gene) and (s.gene.min() < 0 or s.gene.max() >= n):
            raise InputError(p, "gene index out of range")
        check_unique(p, s.gene, "gene index")
        if not set(np.unique(s.split).tolist()) <= set(SPLITS):
            raise InputError(p, f"split values must be in {SPLITS}")
        signatures[t] = s
    truth_arrays = {}
    if truth:
        for t in _names(manifest, "truth", mpath):
            p = _safe_child(d, "truth", f"{t}.npy")
            arr = load_npy(p, "an .npy file of the bundle", mmap_mode="r")
            if arr.shape != (n, n_lm) or arr.dtype.kind != "f":
                raise InputError(p, f"expected floating-point values of shape ({n}, {n_lm}), found {arr.dtype} {arr.shape}")
            truth_arrays[t] = arr
    has_locations = manifest.get("locations", False)
    if not isinstance(has_locations, bool):
        raise InputError(mpath, f"'locations' must be true or false, found {json.dumps(has_locations)[:60]}")
    gene_locations = landmark_locations = None
    if has_locations:
        gene_locations, landmark_locations = _read_locations(d / "locations.npz", n, n_lm)
    meta = {k: v for k, v in manifest.items()
            if k not in ("format", "version", "n_genes", "n_landmarks", "layers", "types",
                         "features", "truth", "locations")}
    return Bundle(genes, landmarks, networks, features, signatures, truth_arrays, meta,
                  gene_locations, landmark_locations)


def _names(manifest: dict, key: str, mpath: Path) -> list[str]:
    """A manifest field that lists names (layers, types): a list of non-empty strings."""
    names = manifest.get(key, [])
    # (they name files: a NUL, which JSON can spell as \u0000, is no file name)
    if not isinstance(names, list) or not all(isinstance(x, str) and x and "\0" not in x for x in names):
        raise InputError(mpath, f"{key!r} must be a list of names, found {json.dumps(names)[:60]}")
    return names


def _safe_child(root: Path, sub: str, name: str) -> Path:
    """A file named by the manifest, which must not escape the bundle directory."""
    p = (root / sub / name).resolve()
    if not p.is_relative_to((root / sub).resolve()):
        raise InputError(root / "bundle.json", f"name {name!r} escapes the bundle directory")
    return p
