"""`tnfast data import`: real files in, one validated bundle out.

Sources are read in full first (every error surfaces before anything is written), the gene
universe is the union of the genes they name, and the bundle is saved atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, input_file
from .bundle import (PERT_TYPE_CODES, SPLITS, TYPES, Bundle, Features, Locations, Signatures, check_bundle_out,
                     load_npy)
from .csr import build_csr
from .edges import EdgeList, read_edge_list, read_id_map
from .gctx import read_gctx
from .locations import BUILTIN_SOURCE, Place, builtin_locations, locations_of, read_locations_table, unknown
from .splits import assign_splits
from .tables import check_unique, is_number, read_id_list, read_matrix, read_rows

Progress = Callable[[str], None]
_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                  "validation": "valid", "test": "test"}
_LAYER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_type(value: str, where: str) -> str:
    """'RNAi' / 'crispr' / 'trt_oe' ... -> the canonical type name."""
    t = _type_named(value)
    if t is None:
        raise InputError(where, f"unknown perturbation type {value!r}; expected one of {', '.join(TYPES)} "
                                f"or {', '.join(PERT_TYPE_CODES)}")
    return t


def _type_named(value: str) -> str | None:
    v = value.strip()
    if v in PERT_TYPE_CODES:
        return PERT_TYPE_CODES[v]
    return next((t for t in TYPES if v.lower() == t.lower()), None)


def signature_source(value: str | os.PathLike) -> tuple[str | None, str]:
    """A --signatures value: 'RNAi=x.tsv' -> ('RNAi', 'x.tsv'); a plain path -> (None, path).

    Only a type name (as :func:`parse_type` reads it) before the first '=' makes a prefix, so a
    path such as 'runs/a=b.tsv' stays a path; a file really named 'OE=x.tsv' is './OE=x.tsv'.
    """
    text = os.fspath(value)
    key, sep, path = text.partition("=")
    ptype = _type_named(key) if sep else None
    if ptype is None:
        return None, text
    if not path:
        raise InputError(f"--signatures {text}", "expected TYPE=FILE, with the file after '='")
    return ptype, path


def read_signature_file(path: str | os.PathLike, ptype: str | None = None,
                        gene_field: str = "pert_gene_id",
                        default_type: str | None = None) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """[(type, perturbed gene ids (n,), landmark ids (L,), values (n, L))] from GCTX or TSV/CSV.

    The type of every signature is ``ptype`` when given (it relabels a file); else the file's
    own, from GCTX column metadata ``pert_type`` (genetic codes only; compounds and controls are
    skipped); else ``default_type`` (the type of files that carry none); else an error.
    GCTX: rows are landmarks, columns signatures; gene from ``gene_field``. TSV/CSV: first column
    the perturbed gene, one column per landmark (header = landmark ids); it carries no type.
    """
    p = Path(input_file(path, "a GCTX or TSV/CSV signature matrix"))
    if p.name.lower().endswith(".gctx.gz"):
        raise InputError(p, "is a gzipped GCTX; GCTX files must be uncompressed HDF5 (gunzip it first)")
    given = ptype or default_type
    if p.suffix.lower() == ".gctx":
        g = read_gctx(p)
        if gene_field not in g.col_meta:
            raise InputError(p, f"no column metadata field {gene_field!r} naming the perturbed gene "
                                f"(have: {', '.join(g.col_meta) or 'none'}; see --gene-field)")
        genes = np.array([_gene_id(x) for x in g.col_meta[gene_field].tolist()], dtype=str)
        if ptype is None and "pert_type" in g.col_meta:
            codes = np.asarray(g.col_meta["pert_type"]).astype(str)
            types = np.array([PERT_TYPE_CODES.get(c, "") for c in codes.tolist()])
        elif given is None:
            raise InputError(p, "no column metadata 'pert_type'; pass --type RNAi|CRISPR|OE or "
                                "--signatures TYPE=FILE")
        else:
            types = np.full(len(genes), given)
        values = g.matrix.T.astype(np.float32)
        landmarks = landmark_ids(g)
        places, gene_source = [f"column {c}" for c in g.col_ids.tolist()], gene_field
    else:
        if given is None:
            raise InputError(p, "a TSV/CSV signature matrix needs --type RNAi|CRISPR|OE or --signatures TYPE=FILE")
        genes, landmarks, values = read_matrix(p, unique=False)
        landmarks = np.array(landmarks, dtype=str)
        types = np.full(len(genes), given)
        places, gene_source = [f"data row {i + 1}" for i in range(len(genes))], "the first column"
    if not len(landmarks):
        raise InputError(p, "no landmark rows (expected the landmark genes' values of each signature)")
    check_unique(p, landmarks, "landmark id")
    genetic = np.isin(types, TYPES)
    no_gene = genetic & np.isin(genes, _NO_GENE)
    if no_gene.any():
        i = np.flatnonzero(no_gene)[0]
        raise InputError(p, f"no perturbed gene id in {gene_source} ({str(genes[i])!r}; expected an Entrez id)",
                         place=places[i])
    bad = ~np.isfinite(values) & genetic[:, None]
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(p, f"NaN or infinite value ({values[i, j]}) at landmark {landmarks[j]}", place=places[i])
    out = []
    for t in TYPES:
        rows = np.flatnonzero(types == t)
        if len(rows):
            out.append((t, genes[rows], landmarks, values[rows]))
    if not out:
        raise InputError(p, "no genetic perturbation signatures (pert_type trt_sh, trt_xpr or trt_oe)")
    return out


# Gene ids that name no gene: empty, NaN, and CMap's marker of missing metadata.
_NO_GENE = ["", "nan", "NaN", "-666", "-666.0"]


def landmark_ids(g) -> np.ndarray:
    """A GCTX's row ids as landmark Entrez ids (str): the ids themselves, or, in older CMap files
    that key rows by Affymetrix probe, the row metadata ``pr_gene_id``."""
    ids = g.row_ids.astype(str)
    if "pr_gene_id" in g.row_meta and not all(x.isdigit() for x in ids.tolist()):
        return np.array([_gene_id(x) for x in g.row_meta["pr_gene_id"].tolist()], dtype=str)
    return ids


def _gene_id(x) -> str:
    """Entrez ids arrive as int64, float ('7157.0') or str; one canonical string."""
    if isinstance(x, float | np.floating) and float(x).is_integer():
        return str(int(x))
    s = str(x).strip()
    return s[:-2] if s.endswith(".0") and s[:-2].isdigit() else s


def read_features(path: str | os.PathLike, genes_file: str | os.PathLike | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(gene ids, feature names, values) from TSV/CSV(.gz) with a gene_id column, or .npy + gene list."""
    p = Path(path)
    if p.suffix == ".npy":
        if genes_file is None:
            raise InputError(p, "a .npy feature matrix needs --feature-genes FILE listing its rows")
        values = load_npy(p, "a .npy array")
        ids = read_id_list(genes_file)
        if values.dtype.kind not in "biuf":
            raise InputError(p, f"expected a numeric array, found dtype {values.dtype}")
        if values.ndim != 2 or values.shape[0] != len(ids):
            raise InputError(p, f"expected shape ({len(ids)}, F) to match {genes_file}, found {values.shape}")
        with np.errstate(over="ignore"):  # finite float64 beyond float32's range becomes inf here
            values32 = values.astype(np.float32)
        bad = ~np.isfinite(values32)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(p, f"{values[i, j]} is not allowed (expected a finite float32 number)",
                             place=f"row {i} (gene {str(ids[i])!r}), column {j}")
        return ids, [f"f{i}" for i in range(values.shape[1])], values32
    header = read_rows(p)[0][1]
    return read_matrix(p, id_column="gene_id" if "gene_id" in header else None)


def read_split_file(path: str | os.PathLike) -> dict[str, str]:
    """gene id -> split from a two-column table (gene_id, split); header optional."""
    rows = read_rows(path, min_columns=2)
    first = rows[0][1]
    if first[1].lower() not in _SPLIT_ALIASES and not is_number(first[0]):
        rows = rows[1:]  # a header; a first line 'ENTREZ_ID typo' is data, and an error below
    out = {}
    for lineno, r in rows:
        s = _SPLIT_ALIASES.get(r[1].lower())
        if s is None:
            raise InputError(path, f"split {r[1]!r} is not one of {', '.join(SPLITS)}", place=f"line {lineno}")
        if r[0] in out:
            raise InputError(path, f"duplicate gene id {r[0]!r}", place=f"line {lineno}")
        out[r[0]] = s
    return out


def import_bundle(
    out: str | os.PathLike,
    signatures: Sequence[str | os.PathLike] = (),
    sig_type: str | None = None,
    gene_field: str = "pert_gene_id",
    features: str | os.PathLike | None = None,
    feature_genes: str | os.PathLike | None = None,
    edges: dict[str, str | os.PathLike] | None = None,
    id_map: str | os.PathLike | None = None,
    min_score: float | None = None,
    orgdb: str | os.PathLike | None = None,
    layers: Sequence[str] = (),
    max_term_size: int = 100,
    locations: str | os.PathLike | None = None,
    builtin: bool = True,
    splits: dict[str, str | os.PathLike] | None = None,
    genes: str | os.PathLike | None = None,
    max_unknown: float = 0.2,
    seed: int = 0,
    name: str | None = None,
    overwrite: bool = False,
    progress: Progress = lambda msg: None,
    max_memory: int | None = None,
) -> Path:
    """Read every source, build the bundle, write it atomically to ``out``. Returns ``out``.

    Each of ``signatures`` is a file or ``TYPE=FILE`` (:func:`signature_source`). A file's
    signatures take the type given with it, else their own (GCTX ``pert_type`` metadata), else
    ``sig_type``: the type of the files that carry none (TSV/CSV, GCTX without ``pert_type``).
    ``overwrite`` replaces only an earlier bundle or an empty directory.

    The bundle gets the locations of its genes and landmarks from ``orgdb`` or, without it and
    unless ``builtin`` is false, from tnfast's built-in table (Entrez ids); a ``locations``
    table wins for the genes it lists. ``layers`` may be empty (locations only).

    Before anything is read, the memory each step needs is estimated from cheap probes of the
    sources (:mod:`tnfast.data.estimate`) and checked against ``max_memory`` bytes (default:
    the memory available to this process): a dataset that would not fit is refused up front."""
    out = Path(out)
    check_bundle_out(out, overwrite)  # before reading anything: a wrong --out fails at once
    if not 0 <= max_unknown <= 1:
        raise InputError("--max-unknown", f"must be a fraction between 0 and 1, got {max_unknown}")
    if feature_genes is not None and (features is None or Path(features).suffix != ".npy"):
        raise InputError("--feature-genes", "is only for a .npy feature matrix (--features FILE.npy); a TSV/CSV "
                                            "feature table names its genes itself")
    typed = [signature_source(s) for s in signatures]
    if not (signatures or features or edges or (orgdb and layers)):
        raise InputError("tnfast data import", "nothing to import: give --signatures, --features, --edges or "
                                               "--orgdb with --layers")
    _check_memory(max_memory, [f for _, f in typed], features, feature_genes, edges, id_map, orgdb, layers,
                  max_term_size, genes, splits, locations, progress)
    sources: list[str] = []

    # Signatures: several of one gene and type are averaged.
    sig_parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    landmarks = None
    for ptype, f in typed:
        progress(f"reading signatures {f}")
        for t, g, lm, v in read_signature_file(f, ptype, gene_field, default_type=sig_type):
            if landmarks is None:
                landmarks, lm_file = lm, f
            elif set(lm.tolist()) != set(landmarks.tolist()):
                extra = sorted(set(lm.tolist()) - set(landmarks.tolist()))
                missing = sorted(set(landmarks.tolist()) - set(lm.tolist()))
                example = f"{extra[0]!r} is not in it" if extra else f"{missing[0]!r} is missing here"
                raise InputError(f, f"landmark ids differ from those of {lm_file} ({len(lm)} vs "
                                    f"{len(landmarks)} ids; {example})")
            order = _positions(lm, landmarks)
            sig_parts.setdefault(t, []).append((g, v[:, order]))
        sources.append(os.fspath(f))

    feats = None
    if features is not None:
        progress(f"reading features {features}")
        feats = read_features(features, feature_genes)
        sources.append(os.fspath(features))

    layer_edges: dict[str, EdgeList] = {}
    layer_source: dict[str, str] = {}
    idm = read_id_map(id_map) if id_map is not None else None
    for lname, f in (edges or {}).items():
        if not _LAYER_NAME.match(lname):
            raise InputError(f"--edges {lname}={f}", "layer name must be letters, digits, '.', '_' or '-'")
        progress(f"reading edges {lname} from {f}")
        layer_edges[lname] = read_edge_list(f, idm, min_score, max_unknown)
        layer_source[lname] = os.fspath(f)
        sources.append(os.fspath(f))
    if orgdb is not None and layers:
        from .orgdb import coannotation_layers

        for lname, el in coannotation_layers(orgdb, layers, max_term_size=max_term_size, progress=progress).items():
            if lname in layer_edges:
                raise InputError(f"--orgdb {orgdb}", f"layer {lname!r} is also given with --edges")
            layer_edges[lname] = el
            layer_source[lname] = os.fspath(orgdb)
    if orgdb is not None:
        sources.append(os.fspath(orgdb))
    located = None
    if locations is not None:
        progress(f"reading locations {locations}")
        located = read_locations_table(locations)
        sources.append(os.fspath(locations))

    # The gene universe.
    named = [g for parts in sig_parts.values() for g, _ in parts]
    named += [feats[0]] if feats is not None else []
    named += [el.genes for el in layer_edges.values()]
    if genes is not None:
        universe = read_id_list(genes)
        _check_known(universe, sig_parts, feats, layer_edges, max_unknown, genes)
    else:
        universe = np.unique(np.concatenate(named))
    universe = _sort_ids(universe)
    index = {g: i for i, g in enumerate(universe.tolist())}
    n = len(universe)
    progress(f"gene universe: {n} genes")

    networks = {}
    for lname, el in layer_edges.items():
        gi = np.array([index.get(g, -1) for g in el.genes.tolist()], dtype=np.int64)
        s, d = gi[el.src], gi[el.dst]
        keep = (s >= 0) & (d >= 0)
        csr = build_csr(s[keep], d[keep], n, el.weight[keep])
        if csr.nnz == 0:
            raise InputError(layer_source[lname], "has no edges between genes of the universe (only self-loops?)",
                             place=f"layer {lname}")
        networks[lname] = csr
        progress(f"layer {lname}: {csr.nnz // 2} edges")

    feature_obj = None
    if feats is not None:
        fid, fnames, fval = feats
        gi = np.array([index.get(g, -1) for g in fid.tolist()])
        keep = gi >= 0
        values = np.zeros((n, fval.shape[1]), np.float32)
        values[gi[keep]] = fval[keep]
        present = np.zeros(n, bool)
        present[gi[keep]] = True
        feature_obj = Features(values, present, np.array(fnames, dtype=str))

    measured: dict[str, np.ndarray] = {}
    sig_values: dict[str, np.ndarray] = {}
    for t, parts in sig_parts.items():
        g = np.concatenate([p[0] for p in parts])
        v = np.concatenate([p[1] for p in parts])
        gi = np.array([index.get(x, -1) for x in g.tolist()])
        keep = gi >= 0
        uniq, inv = np.unique(gi[keep], return_inverse=True)
        sums = np.zeros((len(uniq), v.shape[1]), np.float64)
        np.add.at(sums, inv, v[keep])
        measured[t] = uniq.astype(np.int32)
        sig_values[t] = (sums / np.bincount(inv)[:, None]).astype(np.float32)

    given: dict[str, dict[int, str]] = {}
    for t, f in (splits or {}).items():
        t = parse_type(t, f"--split {t}={f}")
        if t not in measured:
            raise InputError(f, f"split given for {t}, but no {t} signatures were imported")
        s = read_split_file(f)
        mset = set(measured[t].tolist())
        hits = {index[g]: v for g, v in s.items() if g in index and index[g] in mset}
        if len(hits) < (1 - max_unknown) * len(s):
            raise InputError(f, f"only {len(hits)} of its {len(s)} genes are measured in {t}")
        given[t] = hits
        sources.append(os.fspath(f))
    split = assign_splits(measured, given, seed=seed)
    sigs = {t: Signatures(measured[t], sig_values[t], split[t]) for t in TYPES if t in measured}

    landmarks = landmarks if landmarks is not None else np.zeros(0, dtype=str)
    gene_loc = landmark_loc = None
    if orgdb is not None or located is not None or builtin:
        gene_loc, landmark_loc = _locations(universe, landmarks, orgdb, located, locations, builtin, progress)
        if orgdb is None and builtin and gene_loc is not None:
            sources.append(BUILTIN_SOURCE)
    bundle = Bundle(
        genes=universe,
        landmarks=landmarks,
        networks=networks,
        features=feature_obj,
        signatures=sigs,
        meta={"name": name or out.name, "source": sources, "seed": seed,
              "units": "as in the imported signatures"},
        gene_locations=gene_loc,
        landmark_locations=landmark_loc,
    )
    progress(f"writing {out}")
    return bundle.save(out, overwrite=overwrite)


def _locations(genes: np.ndarray, landmarks: np.ndarray, orgdb, located: dict[str, Place] | None,
               table, builtin: bool, progress: Progress) -> tuple[Locations, Locations] | tuple[None, None]:
    """Locations of the genes and the landmarks: from the table where it lists them, else
    org.Hs.eg.sqlite, else the built-in table. None when only the built-in table was asked and
    it places nothing (ids that are not Entrez): then the bundle says it has no locations."""
    from .orgdb import gene_locations

    ids = np.concatenate([genes, landmarks]).tolist()
    if orgdb is not None:
        loc = gene_locations(orgdb, ids)
    elif not builtin:
        loc = unknown(len(ids))
    else:
        progress(f"placing genes with {BUILTIN_SOURCE}")
        loc = locations_of(ids, builtin_locations())
        if located is None and not (loc.chromosome != "").any():
            progress("the built-in gene locations (Entrez ids) place none of the bundle's genes: no locations "
                     "stored (give them with --locations)")
            return None, None
    if located is not None:
        if not located.keys() & set(ids):
            raise InputError(table, f"none of its {len(located)} gene ids is a gene or landmark of the bundle "
                                    f"(expected the same ids, e.g. Entrez)")
        given = locations_of(ids, located)
        mine = given.chromosome != ""
        for a, b in ((loc.chromosome, given.chromosome), (loc.start, given.start), (loc.arm, given.arm)):
            a[mine] = b[mine]
    n = len(genes)
    return tuple(Locations(loc.chromosome[s], loc.start[s], loc.arm[s]) for s in (slice(0, n), slice(n, None)))


def _check_memory(max_memory, signatures, features, feature_genes, edges, id_map, orgdb, layers, max_term_size,
                  genes, splits, locations, progress) -> None:
    """:func:`tnfast.data.estimate.check_import` of every source, in the order they are read."""
    from . import estimate

    plan = [(os.fspath(f), estimate.signature_cost(f)) for f in signatures]
    if features is not None:
        plan.append((os.fspath(features), estimate.features_cost(features)))
    plan += [(os.fspath(f), estimate.id_table_cost(f)) for f in (feature_genes, id_map) if f is not None]
    plan += [(os.fspath(f), estimate.edge_list_cost(f)) for f in (edges or {}).values()]
    if orgdb is not None and layers:
        plan.append((os.fspath(orgdb), estimate.orgdb_cost(orgdb, layers, max_term_size)))
    if locations is not None:  # a few short fields a line, as in an id table
        plan.append((os.fspath(locations), estimate.id_table_cost(locations)))
    plan += [(os.fspath(f), estimate.id_table_cost(f)) for f in [genes, *(splits or {}).values()] if f is not None]
    estimate.check_import(max_memory, plan, progress)


def _positions(ids: np.ndarray, order: np.ndarray) -> np.ndarray:
    pos = {x: i for i, x in enumerate(ids.tolist())}
    return np.array([pos[x] for x in order.tolist()], dtype=np.int64)


def _sort_ids(ids: np.ndarray) -> np.ndarray:
    """Numeric order for Entrez-style ids, text order otherwise: stable across imports."""
    ids = np.unique(ids)
    if all(x.isdigit() for x in ids.tolist()):
        return ids[np.argsort(ids.astype(np.int64), kind="stable")]
    return ids


def _check_known(universe, sig_parts, feats, layer_edges, max_unknown, genes_file) -> None:
    """With --genes, ids outside the list are dropped; too many means a wrong list or id type."""
    known = set(universe.tolist())
    named = {"signatures": np.concatenate([g for parts in sig_parts.values() for g, _ in parts])
             if sig_parts else np.zeros(0, str)}
    if feats is not None:
        named["features"] = feats[0]
    named.update({f"layer {k}": el.genes for k, el in layer_edges.items()})
    for what, ids in named.items():
        if len(ids):
            frac = 1 - np.mean([x in known for x in ids.tolist()])
            if frac > max_unknown:
                raise InputError(genes_file, f"{frac:.0%} of the gene ids in the {what} are not in this list "
                                             f"(at most {max_unknown:.0%} allowed)")
