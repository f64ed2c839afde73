"""Tables and the HTML/PNG report of `tnfast evaluate --report DIR`.

The tables (terminal and HTML) come from :func:`table_rows` and :func:`strata_rows`, so both
show the same numbers. The report folder holds:

- ``distributions.png``: per type, the per-signature PCC and PearsonΔ of the model and every
  baseline (box plots);
- ``degree_tertiles.png``: mean PearsonΔ (± s.e.) by network-degree tertile, per type;
- ``scatter.png``: predicted vs measured values for three genes per type (the model's 90th,
  50th and 10th percentile by PearsonΔ), raw (with the training mean for comparison) and as
  deviations from the training mean;
- ``training_curves.png``: from ``RUN_DIR/metrics.jsonl`` when the run has one (else a note in
  the page), the losses and each type's valid PearsonΔ and PCC lead over the training mean's,
  one line per ensemble member;
- ``index.html``: the tables, flags and notes, and the plots; ``summary.json``: every number.

matplotlib draws with the Agg backend (no display needed) and is imported only here.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_dir
from .errors import InputError
from .data.bundle import TYPES
from .evaluate import LABELS, PREDICTORS, Evaluation, write_json
from .metrics import mean_se
from .typical import MIN_STEP

COLUMNS = ("predictor", "n", "PearsonΔ", "PCC", "|PCC|", "MSE", "KS D", "top-50 dir.",
           "median rank", "top-1", "top-10", "")
_KEYS = ("pearson_delta", "pcc", "abs_pcc", "mse", "ks_d", "top50_direction",
         "retrieval_median_rank", "retrieval_top1", "retrieval_top10")
_COLOURS = {"model": "#1f77b4", "mean": "#7f7f7f", "typical": "#c7c7c7", "ridge": "#ff7f0e", "ridge_effects": "#e377c2",
            "ridge_residual": "#bcbd22", "knn": "#2ca02c", "network": "#9467bd", "other_type": "#8c564b", "oracle_inputs": "#ff9896",
            "oracle": "#d62728"}


def _fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if key == "mse":
        return f"{v:.4f}"
    if key == "retrieval_median_rank":
        return f"{v:g}"
    return f"{v:.3f}"


def _note(name: str, m: dict, ts: dict) -> str:
    if name == "ridge" and "alpha" in m:
        return f"alpha {m['alpha']:g}"
    if name == "ridge_residual" and "correction" in m:
        c = m["correction"]
        return c["channels"] + (f", penalty {c['penalty']:g}" if c.get("penalty") else "")
    if name == "typical" and "fit" in m:
        f = m["fit"]
        return (f"one constant for every gene: step {max(f['size'], MIN_STEP):.2f}; held out on the training genes "
                f"{f['pearson_delta']:+.3f} ± {f['se']:.3f}")
    if name == "knn" and "k" in m:
        return f"k {m['k']}"
    if name == "network" and "coverage" in m:
        return f"{m['coverage']:.0%} have a measured neighbour"
    if name == "other_type" and "from" in m:
        src = ", ".join(f"{o} {c}" for o, c in m["from"].items())
        same = m.get("model_pearson_delta_same_genes")
        return f"from {src}; model PearsonΔ on these genes {_fmt('pearson_delta', same)}"
    if name == "model" and "pearson_delta_se" in m:
        return f"PearsonΔ s.e. {_fmt('pearson_delta', m['pearson_delta_se'])}"
    return ""


def table_rows(ts: dict) -> list[list[str]]:
    """One row per predictor of a type's summary (the columns of :data:`COLUMNS`)."""
    rows = []
    for name in PREDICTORS:
        m = ts.get(name)
        if m is None:
            continue
        note = _note(name, m, ts)
        lead = ""  # the paired differences, see tnfast.metrics.paired_lead
        if np.isfinite(m.get("model_lead_se", np.nan)):
            lead = f"model lead {m['model_lead']:+.3f} ± {m['model_lead_se']:.3f} (paired s.e.)"
        elif np.isfinite(m.get("model_pcc_lead_se", np.nan)):
            lead = f"model PCC lead {m['model_pcc_lead']:+.4f} ± {m['model_pcc_lead_se']:.4f} (paired s.e.)"
        if lead:
            note = f"{note}, {lead}" if note else lead
        rows.append([LABELS[name], str(m["n"]), *(_fmt(k, m.get(k)) for k in _KEYS), note])
    return rows


def strata_rows(ts: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): mean PearsonΔ of each predictor in each stratum, with the stratum sizes."""
    header, cols = ["predictor"], []
    names = {"measured_in_other_types": "other types", "degree_tertile": "degree"}
    for sname, groups in ts.get("strata", {}).items():
        for gname, g in groups.items():
            rng = g.get("degree_range")
            extra = f" {rng[0]}–{rng[1]}" if rng else ""
            header.append(f"{names.get(sname, sname)}: {gname}\n{extra.strip()} n={g['n']}".replace("\n ", "\n"))
            cols.append(g)
    rows = []
    for name in PREDICTORS:
        if name not in ts:
            continue
        rows.append([LABELS[name], *(_fmt("pearson_delta", g[name]["pearson_delta"]) if name in g else "–"
                                     for g in cols)])
    return header, rows


# --------------------------------------------------------------------------- plots

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_distributions(ev: Evaluation, path: Path) -> None:
    plt = _plt()
    types = list(ev.details)
    fig, axes = plt.subplots(len(types), 2, figsize=(12, 3.2 * len(types)), squeeze=False)
    for i, t in enumerate(types):
        d = ev.details[t]
        names = [n for n in PREDICTORS if n in d.scores]
        for j, (metric, label) in enumerate((("pcc", "PCC"), ("pearson_delta", "PearsonΔ"))):
            ax = axes[i, j]
            data = [d.scores[n][metric][np.isfinite(d.scores[n][metric])] for n in names]
            bp = ax.boxplot(data, patch_artist=True, showmeans=True, widths=0.6,
                            medianprops={"color": "black"},
                            meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                                       "markersize": 4})
            for patch, n in zip(bp["boxes"], names):
                patch.set_facecolor(_COLOURS[n])
                patch.set_alpha(0.45)
            ticks = [LABELS[n] if len(v) == len(d.gene_ids) else f"{LABELS[n]} (n={len(v)})"
                     for n, v in zip(names, data)]
            ax.set_xticks(range(1, len(names) + 1), ticks, rotation=20, ha="right", fontsize=8)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"{t}: per-signature {label} (n={len(d.gene_ids)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_degree(ev: Evaluation, path: Path) -> bool:
    types = [t for t in ev.details if "degree_tertile" in ev.details[t].strata]
    if not types:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(types), figsize=(5.5 * len(types), 3.8), squeeze=False)
    for ax, t in zip(axes[0], types):
        d = ev.details[t]
        groups = d.strata["degree_tertile"]
        names = [n for n in PREDICTORS if n in d.scores]
        width = 0.8 / len(names)
        for k, n in enumerate(names):
            pd = d.scores[n]["pearson_delta"]
            means, ses = [], []
            for rows in groups.values():
                v = pd[rows & np.isfinite(pd)]
                means.append(v.mean() if len(v) else np.nan)
                ses.append(mean_se(v))  # NaN (no bar) under two genes, not a false 0
            ax.bar(np.arange(len(groups)) + (k - (len(names) - 1) / 2) * width, means, width, yerr=ses,
                   color=_COLOURS[n], label=LABELS[n], capsize=2)
        labels = []
        for g, rows in groups.items():
            deg = d.degree[rows]
            labels.append(f"{g}\n{deg.min()}–{deg.max()} (n={rows.sum()})" if rows.any() else f"{g}\n(n=0)")
        ax.set_xticks(range(len(groups)), labels, fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{t}: PearsonΔ by total network degree", fontsize=10)
        ax.set_ylabel("mean PearsonΔ")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_scatter(ev: Evaluation, path: Path, per_type: int = 3) -> None:
    """Per type, three genes; for each, measured vs predicted values, raw and as deviations from the mean."""
    plt = _plt()
    types = list(ev.details)
    fig, axes = plt.subplots(len(types), 2 * per_type, figsize=(3.1 * 2 * per_type, 3.2 * len(types)),
                             squeeze=False)
    for i, t in enumerate(types):
        d = ev.details[t]
        pd = d.scores["model"]["pearson_delta"]
        order = np.argsort(pd, kind="stable")
        picks = [order[int(round(q * (len(order) - 1)))] for q in np.linspace(0.9, 0.1, per_type)]
        for j, r in enumerate(picks):
            for kind in (0, 1):
                ax = axes[i, 2 * j + kind]
                shift = d.mean if kind else 0.0
                x, y = d.truth[r] - shift, d.preds["model"][r] - shift
                if not kind:
                    ax.scatter(x, d.mean, s=3, color=_COLOURS["mean"], alpha=0.35, label="training mean")
                ax.scatter(x, y, s=3, color=_COLOURS["model"], alpha=0.6, label="model")
                lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
                ax.plot([lo, hi], [lo, hi], color="k", lw=0.5)
                if kind:
                    ax.axhline(0, color=_COLOURS["mean"], lw=0.8)
                    ax.set_title(f"− mean: PearsonΔ {pd[r]:.2f}", fontsize=8)
                    ax.set_xlabel("measured − mean", fontsize=8)
                else:
                    ax.set_title(f"{t} gene {d.gene_ids[r]}: PCC {d.scores['model']['pcc'][r]:.2f}", fontsize=8)
                    ax.set_xlabel("measured", fontsize=8)
                ax.tick_params(labelsize=7)
        axes[i, 0].set_ylabel("predicted", fontsize=8)
        axes[i, 0].legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_metrics_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a metrics.jsonl, one per line; unreadable lines are skipped."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _flat(rec: dict, prefix: str = "") -> dict:
    """Nested records (``{"valid": {"RNAi": {"pcc": ..}}}``) as ``valid.RNAi.pcc`` keys."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


# The panels of training_curves.png: a title and the metrics.jsonl keys it draws (nested keys
# flattened, as valid.RNAi.pearson_delta).
CURVE_PANELS = (
    ("losses", ("train_loss", "valid_loss", "signature_loss", "recon_loss")),
    ("valid PearsonΔ", tuple(f"valid.{t}.pearson_delta" for t in TYPES)),
    ("valid PCC − the training mean's", tuple(f"valid.{t}.pcc_over_mean" for t in TYPES)),
)


def plot_training_curves(records: list[dict], path: Path) -> dict[str, list[str]]:
    """The losses and each type's valid PearsonΔ and PCC lead of a run's metrics.jsonl records
    against their step, one line per ensemble member (each member's steps start again), with
    markers (a short run has a point or two). Returns what was drawn, {panel title: [keys]};
    empty, and no file, when the records hold none of it."""
    curves: dict[tuple[str, int], tuple[list, list]] = {}
    for r in records:
        step, flat = r.get("step"), _flat(r)
        if isinstance(step, bool) or not isinstance(step, int | float):
            continue
        for _, keys in CURVE_PANELS:
            for key in keys:
                v = flat.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
                    xs, ys = curves.setdefault((key, int(r.get("member", 0))), ([], []))
                    xs.append(step)
                    ys.append(v)
    drawn = {title: [k for k in keys if any(key == k for key, _ in curves)] for title, keys in CURVE_PANELS}
    drawn = {title: keys for title, keys in drawn.items() if keys}
    if not drawn:
        return {}
    members = sorted({m for _, m in curves})
    plt = _plt()
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.6 * len(drawn), 3.4), squeeze=False)
    for ax, (title, keys) in zip(axes[0], drawn.items()):
        for colour, key in enumerate(keys):
            label = key.split(".")[1] if key.startswith("valid.") else key
            for m in members:
                if (key, m) in curves:
                    ax.plot(*curves[key, m], marker="o", ms=2.5, lw=1, color=f"C{colour}",
                            alpha=1.0 if len(members) == 1 else 0.6, label=label if m == members[0] else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step" if len(members) == 1 else f"step (each of {len(members)} members from the start)",
                      fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


# --------------------------------------------------------------------------- HTML

def _html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _page(ev: Evaluation, images: list[tuple[str, str]], notes: list[str]) -> str:
    s = ev.summary
    src = s["source"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tnfast evaluation</title><style>",
        "body{font-family:sans-serif;margin:2em;max-width:1300px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}"
        "td:first-child,th:first-child{text-align:left}.flag{color:#b00}.note{color:#555}img{max-width:100%}",
        "</style></head><body>",
        "<h1>tnfast evaluation</h1>",
        f"<p>split: <b>{html.escape(str(s['split']))}</b>; predictions: {html.escape(str(src['predictions']))}; "
        f"run: {html.escape(str(src['run']))}; data: {html.escape(str(src['data']))}"
        + (f"; truth files: {html.escape(', '.join(src['truth_files']))}" if src["truth_files"] else "") + "</p>",
        "<p class='note'>Per signature, averaged per type. PearsonΔ = Pearson correlation of (prediction − "
        "training mean) with (truth − training mean): the training-mean signature scores 0 on it, however high "
        "its PCC. Retrieval ranks the true gene among all evaluated genes of the type by the Pearson similarity "
        "of deviations from the training mean (chance: median rank (n+1)/2).</p>",
    ]
    if s["flags"]:
        parts.append("<h2>Flags</h2><ul>" + "".join(f"<li class='flag'>{html.escape(f)}</li>" for f in s["flags"])
                     + "</ul>")
    all_notes = list(s.get("notes", [])) + notes
    if all_notes:
        parts.append("<ul>" + "".join(f"<li class='note'>{html.escape(n)}</li>" for n in all_notes) + "</ul>")
    for t, ts in s["types"].items():
        parts.append(f"<h2>{html.escape(t)} (n = {ts['n']})</h2>")
        parts.append(_html_table(list(COLUMNS), table_rows(ts)))
        header, rows = strata_rows(ts)
        if len(header) > 1:
            parts.append("<p>PearsonΔ by stratum:</p>" + _html_table(header, rows))
    for file, caption in images:
        parts.append(f"<h2>{html.escape(caption)}</h2><img src='{html.escape(file)}' alt='{html.escape(caption)}'>")
    parts.append("<p class='note'>Every number: <a href='summary.json'>summary.json</a>.</p></body></html>")
    return "\n".join(parts)


def check_report_dir(out: str | os.PathLike, overwrite: bool = True) -> Path:
    """``out`` as a Path if a report may be written there: absent, empty, or an earlier report
    (replaced only with ``overwrite``: --overwrite, as for every other output)."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise InputError(out, "exists and is not a directory")
        if any(out.iterdir()):
            if not (out / "index.html").is_file():
                raise InputError(out, "exists and is not an earlier report (no index.html); choose another --report")
            if not overwrite:
                raise InputError(out, "already exists (pass --overwrite to replace it)")
    return out


def write_report(ev: Evaluation, out: str | os.PathLike) -> tuple[Path, list[str]]:
    """Write the report folder ``out`` (replaced if it holds an earlier report; built atomically).

    Returns (``out``, notes on what was left out, e.g. training curves of a run without any).
    """
    out = check_report_dir(out)
    with atomic_dir(out, overwrite=True) as tmp:
        images: list[tuple[str, str]] = []
        notes: list[str] = []
        plot_distributions(ev, tmp / "distributions.png")
        images.append(("distributions.png", "PCC and PearsonΔ per signature: model vs baselines"))
        if plot_degree(ev, tmp / "degree_tertiles.png"):
            images.append(("degree_tertiles.png", "PearsonΔ by network-degree tertile"))
        else:
            notes.append("the bundle has no networks: no degree-tertile plot")
        plot_scatter(ev, tmp / "scatter.png")
        images.append(("scatter.png", "Predicted vs measured values for a few genes"))
        metrics = ev.run_dir / "metrics.jsonl" if ev.run_dir is not None else None
        if metrics is not None and metrics.is_file() and plot_training_curves(read_metrics_jsonl(metrics),
                                                                               tmp / "training_curves.png"):
            images.append(("training_curves.png", f"Training curves ({metrics})"))
        else:
            notes.append("no training curves: the run has no metrics.jsonl"
                         + ("" if metrics is None or not metrics.is_file() else " with numeric series"))
        write_json(ev.summary, tmp / "summary.json")
        (tmp / "index.html").write_text(_page(ev, images, notes), encoding="utf-8")
    return out, notes


TERMINAL_COLUMNS = ("", "n", "PearsonΔ", "PCC", "|PCC|", "MSE", "KS D", "dir50", "rank", "top1", "top10")
_SHORT = {"training mean": "mean", "network average": "network", "oracle (noise-free)": "oracle"}


def print_tables(summary: dict, console) -> None:
    """The evaluation as rich tables on ``console``: per type, every predictor, PearsonΔ first."""
    from rich import box
    from rich.table import Table

    from rich.console import Console

    if not console.is_terminal and console.width < 110:
        # Piped output (a file, a log) is 80 columns by default: too narrow for these tables.
        console = Console(file=console.file, width=110, no_color=console.no_color, highlight=False)
    width = console.width
    console.print(f"split: [bold]{summary['split']}[/bold]   data: {summary['source']['data']}",
                  highlight=False, soft_wrap=True)
    for t, ts in summary["types"].items():
        table = Table(*TERMINAL_COLUMNS, box=box.SIMPLE_HEAD, pad_edge=False,
                      title=f"{t} (n = {ts['n']}): per signature, averaged")
        notes = []
        for row in table_rows(ts):
            name = _SHORT.get(row[0], row[0])
            table.add_row(name, *row[1:-1], style="bold" if row[0] == LABELS["model"] else None)
            if row[-1]:
                notes.append(f"{name}: {row[-1]}")
        console.print(table, width=width)
        if notes:
            console.print("  " + "; ".join(notes), style="dim", highlight=False, width=width)
        header, rows = strata_rows(ts)
        if len(header) > 1:
            st = Table(*header, box=box.SIMPLE_HEAD, pad_edge=False, title=f"{t}: PearsonΔ by stratum")
            for row in rows:
                st.add_row(_SHORT.get(row[0], row[0]), *row[1:])
            console.print(st, width=width)
    console.print("dir50: sign agreement on the top-50 |value| landmarks; rank/top1/top10: retrieval of the "
                  "true gene among the evaluated ones (median rank; chance (n+1)/2)", style="dim",
                  highlight=False, width=width)
    for n in summary.get("notes", []):
        console.print(f"[dim]note:[/dim] {n}", highlight=False, soft_wrap=True)
    for f in summary.get("flags", []):
        console.print(f"[bold red]flag:[/bold red] {f}", highlight=False, soft_wrap=True)
