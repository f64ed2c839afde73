"""The `tnfast` command line (typer). Each command is a thin shell over the function of the same name."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .errors import InputError

app = typer.Typer(help="Predict L1000 responses to RNAi, CRISPR and OE perturbations of every gene.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Import, inspect and generate dataset bundles.", no_args_is_help=True)
app.add_typer(data_app, name="data")
err = Console(stderr=True)
out = Console()


def _say(msg: str) -> None:
    err.print(f"[dim]·[/dim] {escape(msg)}", soft_wrap=True, highlight=False)


class _Bar(Progress):
    """A progress bar shown from its first task on: a command that fails before any progress
    prints its one error line and no empty bar line before it."""

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.live.is_started:
            self.stop()

    def add_task(self, *args, **kwargs):
        if not self.live.is_started:
            self.start()
        return super().add_task(*args, **kwargs)


def _bar() -> Progress:
    return _Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=err, transient=False)


def _version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Predict L1000 responses to RNAi, CRISPR and OE perturbations of every gene."""


MAX_MEMORY_HELP = ("Refuse up front a job whose estimated peak memory exceeds this (e.g. 8G, 512M); "
                   "default: the memory available to this process.")


def _max_memory(value: str | None) -> int | None:
    from .memory import parse_size

    return None if value is None else parse_size(value, "--max-memory")


def _held(lines: list[str], say=None):
    """A progress callback that first prints ``lines`` (the memory estimate of a job that fits):
    held back until the job has checked its own inputs, so an input error stays the only line."""
    def progress(msg: str | None = None) -> None:
        while lines:
            _say(lines.pop(0))
        if msg is not None:
            (say or _say)(msg)
    return progress


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    result = {}
    for v in values or []:
        key, sep, val = v.partition("=")
        if not sep or not key or not val:
            raise InputError(option, f"expected NAME=FILE, got {v!r}")
        if key in result:
            raise InputError(option, f"{key!r} given twice")
        result[key] = val
    return result


OVERWRITE_BUNDLE_HELP = "Replace an existing bundle (or fill an empty directory); anything else is left alone."


def _check_seed(seed: int) -> None:
    """A command's --seed, before any work (numpy refuses a negative seed with a traceback)."""
    if seed < 0:
        raise InputError("--seed", f"must be >= 0, got {seed}")


@data_app.command("import")
def data_import(
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    signatures: Annotated[Optional[list[str]], typer.Option("--signatures", metavar="[TYPE=]FILE", help="GCTX or TSV/CSV signature matrix, or TYPE=FILE to give its perturbation type (RNAi, CRISPR, OE), which wins over its pert_type metadata (repeatable).")] = None,
    sig_type: Annotated[Optional[list[str]], typer.Option("--type", metavar="TYPE", help="Perturbation type (RNAi, CRISPR, OE) of the signature files that carry no pert_type metadata (TSV/CSV, GCTX without it); files with pert_type keep their own. Once only: --signatures TYPE=FILE types one file.")] = None,
    gene_field: Annotated[str, typer.Option(help="GCTX column metadata field holding the perturbed gene id.")] = "pert_gene_id",
    features: Annotated[Optional[Path], typer.Option(help="Gene features: TSV/CSV(.gz) with a gene_id column, or .npy with --feature-genes.")] = None,
    feature_genes: Annotated[Optional[Path], typer.Option(help="Gene ids of the rows of a .npy feature matrix.")] = None,
    edges: Annotated[Optional[list[str]], typer.Option("--edges", help="NAME=FILE edge list (repeatable).")] = None,
    id_map: Annotated[Optional[Path], typer.Option(help="Two-column table mapping edge-list ids (symbols, STRING proteins) to gene ids.")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Keep edges whose score column is at least this (e.g. STRING combined_score 700).")] = None,
    orgdb: Annotated[Optional[Path], typer.Option(help="org.Hs.eg.sqlite to build co-annotation layers and gene locations from.")] = None,
    layers: Annotated[str, typer.Option(help="Co-annotation layers from --orgdb (go-bp,go-mf,go-cc,kegg,pfam,cytoband), or none (locations only).")] = "go-bp,go-mf,go-cc,kegg,pfam,cytoband",
    max_term_size: Annotated[int, typer.Option(help="Largest annotation term (in genes) that still links its genes.")] = 100,
    locations: Annotated[Optional[Path], typer.Option(help="Gene locations table (gene_id, chromosome, start, arm or cytoband); wins over --orgdb and the built-in table for the genes it lists.")] = None,
    builtin_locations: Annotated[bool, typer.Option(help="Without --orgdb, place Entrez genes with tnfast's built-in table (org.Hs.eg.db 3.16).")] = True,
    split: Annotated[Optional[list[str]], typer.Option("--split", help="TYPE=FILE given split (gene_id, split) (repeatable).")] = None,
    genes: Annotated[Optional[Path], typer.Option(help="Restrict the gene universe to these ids.")] = None,
    max_unknown: Annotated[float, typer.Option(help="Largest fraction of ids that may match nothing before it is an error.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split assignment.")] = 0,
    name: Annotated[Optional[str], typer.Option(help="Dataset name (default: the directory name).")] = None,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_BUNDLE_HELP)] = False,
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help=MAX_MEMORY_HELP)] = None,
) -> None:
    """Import real files (GCTX, TSV/CSV, edge lists, org.Hs.eg.sqlite) into a bundle."""
    from .data.importer import import_bundle, parse_type

    _check_seed(seed)
    if sig_type and len(sig_type) > 1:  # it types every untyped file: a second cannot be honoured
        raise InputError("--type", f"given {len(sig_type)} times; give each file its own type with "
                                   "--signatures TYPE=FILE")
    limit = _max_memory(max_memory)
    path = import_bundle(
        out_dir, signatures=signatures or [], sig_type=parse_type(sig_type[0], "--type") if sig_type else None,
        gene_field=gene_field, features=features, feature_genes=feature_genes, edges=_pairs(edges, "--edges"),
        id_map=id_map, min_score=min_score, orgdb=orgdb, layers=_layers(layers) if orgdb else (),
        max_term_size=max_term_size, locations=locations, builtin=builtin_locations, splits=_pairs(split, "--split"), genes=genes,
        max_unknown=max_unknown,
        seed=seed, name=name, overwrite=overwrite, progress=_say, max_memory=limit)
    _info(path)


def _layers(value: str) -> list[str]:
    """--layers: comma-separated names; "none" (or nothing) asks for none."""
    names = [x.strip() for x in value.split(",") if x.strip()]
    return [] if [x.lower() for x in names] == ["none"] else names


@data_app.command("info")
def data_info(path: Annotated[Path, typer.Argument(help="Bundle directory.")]) -> None:
    """Summarise a bundle: genes, network layers, features, signatures and splits."""
    _info(path)


def _info(path: Path) -> None:
    from .data.bundle import load_bundle

    b = load_bundle(path)
    out.print(f"[bold]{escape(str(path))}[/bold]  {escape(str(b.meta.get('name', '')))}")
    out.print(f"genes: {b.n_genes}   landmarks: {len(b.landmarks)}   units: {b.meta.get('units', '?')}")
    if b.networks:
        t = Table("layer", "nodes with edges", "edges", "degree p50", "p90", "p99", "max", title="networks")
        for name, c in b.networks.items():
            d = c.degrees()
            p = np.percentile(d[d > 0], [50, 90, 99]) if (d > 0).any() else [0, 0, 0]
            t.add_row(escape(name), f"{(d > 0).sum():,}", f"{c.nnz // 2:,}", *(f"{v:g}" for v in p), f"{d.max():,}")
        out.print(t)
    else:
        out.print("networks: none")
    f = b.features
    out.print("features: none" if f is None else f"features: {f.values.shape[1]} per gene, for {int(f.present.sum()):,} genes")
    if b.gene_locations is not None:
        out.print(f"locations: {_coverage(b.gene_locations, 'genes')}, {_coverage(b.landmark_locations, 'landmarks')}",
                  soft_wrap=True)
    if b.signatures:
        t = Table("type", "signatures", "train", "valid", "test", title="signatures")
        for name, s in b.signatures.items():
            t.add_row(name, f"{len(s.gene):,}", *(f"{len(s.rows(x)):,}" for x in ("train", "valid", "test")))
        out.print(t)
    else:
        out.print("signatures: none")
    if b.truth:
        out.print(f"noise-free truth: {', '.join(b.truth)} (synthetic)")


def _coverage(loc, who: str) -> str:
    """'584 of 600 genes (580 with an arm)'."""
    return f"{int((loc.chromosome != '').sum()):,} of {len(loc.chromosome):,} {who} ({int((loc.arm != '').sum()):,} with an arm)"


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    scale: Annotated[str, typer.Option(help="full (the real problem's shape), small or tiny.")] = "full",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_BUNDLE_HELP)] = False,
) -> None:
    """Generate the synthetic dataset (the embedded default) as a bundle."""
    from .data.bundle import check_bundle_out
    from .data.synth import SCALES, synthesize

    if scale not in SCALES:
        raise InputError("--scale", f"expected one of {', '.join(SCALES)}, got {scale!r}")
    _check_seed(seed)
    check_bundle_out(out_dir, overwrite)  # before the minute synthesis takes at full scale
    synthesize(scale, seed, progress=_say).save(out_dir, overwrite=overwrite)
    _info(out_dir)


@app.command("train")
def train_cmd(
    data: Annotated[Optional[Path], typer.Option(help="Bundle directory (default: the synthetic default, made once and cached).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/<run id>, or under $TNFAST_RUNS).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file: profile, \\[model] and \\[train] values (a run's config.toml works).")] = None,
    profile: Annotated[Optional[str], typer.Option(help="quick (CPU, minutes), small (hundreds of measured genes: 10 members) or full (paper scale, GPU); default: small for such data, else full on CUDA and quick otherwise.")] = None,
    sets: Annotated[Optional[list[str]], typer.Option("--set", help="Override one value, e.g. model.gat_heads=4 or train.lr=3e-4 (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[Optional[int], typer.Option(help="Random seed (train.seed).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run (--out, default the newest) from its last checkpoint.")] = False,
    model: Annotated[str, typer.Option(help="transcriptionnet, or ridge (the linear baseline on a fixed network embedding).")] = "transcriptionnet",
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help=MAX_MEMORY_HELP)] = None,
) -> None:
    """Train on a bundle and write a run directory."""
    from .footprint import check_train

    limit = _max_memory(max_memory)
    if model not in ("transcriptionnet", "ridge"):
        raise InputError("--model", f"expected transcriptionnet or ridge, got {model!r}")
    if resume and (config or profile or sets or seed is not None or data):
        raise InputError("--resume", "continues a run with its saved data and config; drop --data/--config/--profile/--set/--seed")
    if seed is not None:
        _check_seed(seed)
    if data is None and not resume and model == "transcriptionnet":
        from .train import resolve_device
        from .train_config import resolve

        # the default's profile (quick, or full on CUDA): a bad --config or --set is refused
        # before the minute of generating the default, not after it
        resolve(profile, config, sets or [], seed, "full" if resolve_device(device).type == "cuda" else "quick")
    if data is None and not resume:
        from .data.synth import default_bundle

        data = default_bundle("full", 0, progress=_say)
    if model == "ridge":
        if resume or config or profile or sets:
            raise InputError("--model", "ridge takes only --data, --out and --seed")
        from dataclasses import asdict

        from .design import DesignConfig

        design = DesignConfig(seed=seed or 0)
        notes: list[str] = []
        check_train(data, asdict(design), "cpu", limit, ridge=True, progress=notes.append)
        from .train_ridge import train_ridge  # (torch: after the check, which counts its import)

        run_dir, summary = train_ridge(data, out_dir, design, progress=_held(notes))
        title = "ridge on network embedding + features vs the training-mean signature"
    else:
        from .train import resolve_device, resume_dir, train
        from .train_config import auto_profile, resolve

        dev = resolve_device(device).type
        notes = []
        cfg = None
        if not resume:
            auto, why = auto_profile(data, dev)
            cfg = resolve(profile, config, sets or [], seed, auto)
            if profile is None and cfg.profile == auto:
                notes.append(f"profile {auto} ({why}; --profile chooses another)")
        # before the bundle is loaded and the run directory made: a refused run leaves nothing
        if resume:
            _, bundle_dir, run_cfg, _ = resume_dir(out_dir)
        else:
            bundle_dir, run_cfg = data, cfg
        check_train(bundle_dir, run_cfg.to_dict(), dev, limit, progress=notes.append)
        with _bar() as bar:
            tasks: list = []

            def on_step(step: int, total: int, phase: str, loss: float) -> None:
                # Added on the first step, so an input error shows no empty bar before it.
                tasks or tasks.append(bar.add_task("training", total=total))
                bar.update(tasks[0], completed=step, total=total, description=f"{phase} loss {loss:.4f}")

            run_dir, summary = train(data, out_dir, cfg, device, resume, on_step=on_step,
                                     progress=_held(notes, lambda msg: bar.console.print(escape(msg), highlight=False)))
        title = "TranscriptionNet (best valid checkpoint) vs the training-mean signature"
    if os.environ.get("RANK", "0") != "0":  # under torchrun, one summary
        return
    t = Table("type", "split", "n", "predictor", "PCC", "PearsonΔ", "MSE", title=title)
    # how sure: each mean's s.e. over signatures; for PCC the paired difference from the mean's
    sure = Table("type", "split", "model PearsonΔ", "model PCC − mean's PCC",
                 title="± s.e. over signatures (the PCC difference per signature: paired)")

    def pm(m: dict, key: str, digits: int, sign: str = "") -> str:
        se = m.get(key + "_se", float("nan"))  # runs from before the s.e. was recorded have none
        return f"{m[key]:{sign}.{digits}f}" + (f" ± {se:.{digits}f}" if math.isfinite(se) else "")

    for ty, s in summary.items():
        for split in ("valid", "out_of_fold", "test"):
            for who, label in (("model", "model"), ("mean", "training mean"), ("oracle", "oracle (noise-free)")):
                if who in s.get(split, {}):
                    m = s[split][who]
                    t.add_row(ty, split, str(m["n"]), label, f"{m['pcc']:.3f}", f"{m['pearson_delta']:.3f}",
                              f"{m['mse']:.4f}")
            m = s.get(split, {}).get("model")
            if m and "pcc_over_mean" in m:
                sure.add_row(ty, split, pm(m, "pearson_delta", 3), pm(m, "pcc_over_mean", 4, "+"))
    out.print(t)
    if sure.row_count:
        out.print(sure)
    out.print(f"run: {run_dir}")


@app.command("infer")
def infer_cmd(
    out_store: Annotated[Path, typer.Option("--out", help="Zarr store to write (e.g. preds.zarr).")],
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under runs/).")] = None,
    genes: Annotated[Optional[Path], typer.Option(help="Only these genes (one id per line, or a gene_id column); default all.")] = None,
    types: Annotated[Optional[str], typer.Option(help="Comma-separated types (default: all the run has).")] = None,
    chunk: Annotated[int, typer.Option(help="Genes per chunk (memory is bounded by it).")] = 1024,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted store: completed chunks are kept.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_memory: Annotated[Optional[str], typer.Option("--max-memory", help=MAX_MEMORY_HELP)] = None,
) -> None:
    """Predict every gene of the run's bundle and stream the predictions to Zarr (torchrun shards it)."""
    from .footprint import check_infer
    from .infer import infer, parse_types
    from .runs import latest_run, read_run

    limit = _max_memory(max_memory)
    wanted = parse_types(types)
    notes: list[str] = []
    if run is None:
        run = latest_run()
        # the newest complete run: a newer interrupted one is passed over, so say which was used
        notes.append(f"run {run} (the newest complete one; --run chooses another)")
    check_infer(read_run(run), chunk, device, limit, progress=notes.append)  # before the store is created
    show_notes = _held(notes)
    with _bar() as bar:
        tasks: list = []

        def advance(done: int, total: int) -> None:
            # Added on the first chunk, so an input error shows no empty bar before it.
            if not tasks:
                show_notes()
                tasks.append(bar.add_task("predicting", total=total))
            bar.update(tasks[0], completed=done)

        path = infer(out_store, run, wanted, genes, chunk, overwrite, resume, progress=advance, device=device)
    out.print(f"predictions: {path}")


@app.command("export")
def export_cmd(
    preds: Annotated[Path, typer.Argument(help="A preds.zarr written by `tnfast infer`.")],
    fmt: Annotated[str, typer.Option("--format", help="gctx (CMap layout, HDF5; name it .gctx) or tsv (a .gz name gzips it).")],
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")],
    types: Annotated[Optional[str], typer.Option(help="Comma-separated types (default: all in the store).")] = None,
    genes: Annotated[Optional[Path], typer.Option(help="Only these genes (one id per line, or a gene_id column).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Export predictions as GCTX (rows landmarks, columns <pert_type>:<gene>) or TSV."""
    from .export import export
    from .preds import parse_types

    path = export(preds, fmt, out_file, parse_types(types), genes, overwrite)
    out.print(f"wrote {escape(str(path))}")


@app.command("query")
def query_cmd(
    preds: Annotated[Path, typer.Option(help="A preds.zarr written by `tnfast infer`.")],
    signature: Annotated[Path, typer.Option(help="Query signature: a GCTX column or a TSV of landmark_id, value.")],
    column: Annotated[Optional[str], typer.Option(help="The GCTX column id, when the file has several.")] = None,
    top: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    method: Annotated[str, typer.Option(help="pearson, spearman, cosine or wtcs (CMap's connectivity score).")] = "pearson",
    types: Annotated[Optional[str], typer.Option(help="Comma-separated types to search (default all).")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write every ranked (perturbation, gene) as TSV.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Rank every predicted perturbation by similarity to a query signature."""
    from .atomic import check_new_file
    from .preds import parse_types
    from .query import query, write_hits

    if top < 1:  # a slice would show nothing (0) or drop rows from the end (negative)
        raise InputError("--top", f"must be >= 1, got {top}")
    wanted = parse_types(types)
    if out_file is not None:
        check_new_file(out_file, overwrite)  # before the work, not after it
    hits = query(preds, signature, method, column, wanted)
    t = Table("rank", "perturbation", "gene", method, "measured", title=f"best matches to {escape(signature.name)}")
    for i, h in enumerate(hits[:top], 1):
        t.add_row(str(i), h.perturbation, escape(h.gene), f"{h.score:.4f}", "yes" if h.measured else "")
    out.print(t)
    if out_file is not None:
        write_hits(hits, out_file)
        out.print(f"wrote {len(hits)} rows to {escape(str(out_file))}")


@app.command("evaluate")
def evaluate_cmd(
    run: Annotated[Optional[Path], typer.Option(help="Run directory (default: the newest under runs/, or the run of --preds).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Bundle (default: the run's).")] = None,
    split: Annotated[Optional[str], typer.Option(help="valid or test (default: test when the bundle has test signatures, else valid).")] = None,
    truth: Annotated[Optional[list[str]], typer.Option("--truth", help="Measured signatures instead of a split: GCTX, or TYPE=FILE for TSV/CSV (repeatable).")] = None,
    preds: Annotated[Optional[Path], typer.Option(help="Score this preds.zarr instead of running the run's model.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write PNG plots and an index.html into this folder.")] = None,
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write every number as JSON.")] = None,
    orgdb: Annotated[Optional[Path], typer.Option(help="org.Hs.eg.sqlite: also report the GO-BP/KEGG co-annotation AUROC of measured vs predicted signatures.")] = None,
    gene_field: Annotated[str, typer.Option(help="GCTX column metadata field of --truth files holding the perturbed gene id.")] = "pert_gene_id",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --json file or --report folder.")] = False,
) -> None:
    """Score predictions and the baselines (training mean, ridge, kNN, network, other type;
    on synthetic data the inputs ceiling and the oracle)."""
    from .atomic import check_new_file
    from .data.orgdb import coannotation_layers
    from .evaluate import COANNOTATION_LAYERS, coannotation_scores, evaluate, write_json
    from .report import check_report_dir, print_tables, write_report

    # The outputs and --orgdb before the work, not after it (minutes at genome scale).
    if report is not None:
        check_report_dir(report, overwrite)
    if json_file is not None:
        check_new_file(json_file, overwrite, parents=True)
    annotated = None if orgdb is None else coannotation_layers(orgdb, COANNOTATION_LAYERS)
    ev = evaluate(run, data, split, truth or (), preds, progress=_say, gene_field=gene_field)
    print_tables(ev.summary, out)
    if annotated is not None:
        _say("co-annotation check")
        ev.summary["coannotation"] = co = coannotation_scores(ev.run_dir, annotated)
        t = Table("type", "layer", "measured", "predicted (same genes)", "predicted (unmeasured genes)",
                  title="co-annotation AUROC (0.5 = chance)")
        for ty, layers in co.items():
            for name, r in layers.items():
                t.add_row(ty, name, *(f"{r[k]['auroc']:.3f} ({r[k]['genes']} genes)" for k in
                                      ("measured", "predicted", "unmeasured")))
        out.print(t)
    if json_file is not None:
        out.print(f"json: {write_json(ev.summary, json_file)}")
    if report is not None:
        path, notes = write_report(ev, report)
        for n in notes:
            _say(n)
        out.print(f"report: {path / 'index.html'}")


@app.command("bench")
def bench_cmd(
    which: Annotated[str, typer.Argument(help="gat, attention, train, infer or all (those four); integrate (network "
                                               "integration at the BIONIC width, an hour on CPU at full scale).")] = "all",
    scale: Annotated[str, typer.Option(help="tiny (a smoke run), small or full (genome scale).")] = "small",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write the report here; a directory gets DEVICE-DATE.json.")] = None,
) -> None:
    """Measure tnfast side by side with the peers users would otherwise run (PyG, torch SDPA, the paper's setup)."""
    from .benchmarks import suite
    from .train import resolve_device

    if which not in (*suite.BENCHMARKS, *suite.LONG, "all"):
        raise InputError("bench", f"expected one of {', '.join(suite.BENCHMARKS + suite.LONG)} or all, got {which!r}")
    if scale not in suite.SCALES:
        raise InputError("--scale", f"expected one of {', '.join(suite.SCALES)}, got {scale!r}")
    dev = resolve_device(device).type
    report = suite.run(which, scale, dev, log=lambda line: out.print(escape(line), highlight=False, soft_wrap=True))
    if json_file is not None:
        out.print(f"json: {suite.write(report, json_file)}")
    bad = suite.failures(report)
    if bad:
        for line in bad:
            err.print(f"[red]failed:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def main() -> None:
    """Console entry: bad input is one line on stderr and exit code 2 (a traceback only with --debug).

    typer handles usage errors itself (exit 2); InputError comes from our own checks of files.
    """
    try:
        app()
    except InputError as e:
        if "--debug" in sys.argv[1:]:
            raise
        # Escaped: a file name such as 'a[/b].tsv' is text, not rich markup.
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
