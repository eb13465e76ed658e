"""What ``maskgit sweep`` writes and prints: sweep.csv, sweep.json, sweep.png and the table of cells."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from maskgit_cli.evaluation.score import finite_or_none
from maskgit_cli.weights import atomic_path

CSV_COLUMNS = (
    "sampler",
    "schedule",
    "total_iter",
    "sweet_spot",
    "fid",
    "kid",
    "psnr_hole",
    "ssim_hole",
    "psnr",
    "ssim",
    "seconds",
    "images_per_second",
    "best",
    "same_as",
)


@dataclass
class SweepResult:
    output: str
    count: int
    metric: str  # "fid" or "psnr_hole": what ranks the cells
    metric_note: str  # one line: the metric used and, for PSNR, why FID was skipped
    cells: list[dict[str, Any]]
    best: dict[str, Any]
    command: str  # the best setting as a ready-to-run `maskgit inpaint` line
    fid_command: str  # and the `maskgit fid` line that scores its results in the sweep's FID mode
    skipped: list[tuple[int, int]]  # (T, S) pairs left out because S > T
    files: dict[str, str]
    encode_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    fid: dict[str, Any] | None = None


def result_dict(result: SweepResult) -> dict[str, Any]:
    d = asdict(result)
    d["skipped"] = [{"total_iter": t, "sweet_spot": s} for t, s in result.skipped]
    return finite_or_none(d)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in CSV_COLUMNS})


_LABELS = {
    "fid": "FID (lower is better)",
    "psnr_hole": "PSNR over the holes, dB (higher is better)",
    "psnr": "PSNR, dB (higher is better)",
}


_SHORT = {"fid": "FID", "psnr_hole": "hole PSNR", "psnr": "PSNR"}


def _samplers(rows) -> list[str]:
    return list(dict.fromkeys(r.get("sampler", "confidence") for r in rows))


def _series(r) -> str:
    """A row's line in the plot: its schedule under the confidence sampler; the sampler's name otherwise (the
    halton sampler ignores the schedule)."""
    sampler = r.get("sampler", "confidence")
    return r["schedule"] if sampler == "confidence" else sampler


def plot_sweep(result: SweepResult, path: Path) -> Path:
    """The ranking metric per schedule: vs T (best sweet spot per T) when several T were swept, else a bar per
    schedule; plus the metric vs sweet spot at the best T when several sweet spots were swept. Best cell starred.
    """
    # matplotlib only here, where the plot is drawn (about 0.5 s to import), as in viz.plot_curves
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key, rows, best = result.metric, result.cells, result.best
    schedules = list(dict.fromkeys(_series(r) for r in rows))
    ts = sorted({r["total_iter"] for r in rows})
    all_ss = sorted({r["sweet_spot"] for r in rows})

    def spots(t: int) -> list[int]:
        return sorted({r["sweet_spot"] for r in rows if r["total_iter"] == t})

    # the sweet-spot panel: at the best cell's T, or at the T with the most sweet spots if that has only one
    t2 = best["total_iter"] if len(spots(best["total_iter"])) > 1 else max(ts, key=lambda t: (len(spots(t)), t))
    ss = spots(t2)
    lower = key == "fid"
    colors = {name: f"C{i % 10}" for i, name in enumerate(schedules)}

    def better(a, b):
        if b is None or b[key] is None:
            return a
        if a is None or a[key] is None:
            return b
        return a if (a[key] < b[key] if lower else a[key] > b[key]) else b

    panels = 2 if len(ss) > 1 else 1
    fig = Figure(figsize=(6.0 * panels, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    if len(ts) > 1:
        for name in schedules:
            pts = []
            for t in ts:
                pick = None
                for r in rows:
                    if _series(r) == name and r["total_iter"] == t:
                        pick = better(pick, r)
                if pick is not None and pick[key] is not None:
                    pts.append((t, pick[key]))
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, "o-", color=colors[name], label=name, linewidth=1.4, markersize=4)
        ax.set_xlabel("total_iter T" + (" (best sweet spot per T)" if len(all_ss) > 1 else ""))
        ax.set_xticks(ts)
        ax.plot([best["total_iter"]], [best[key]], "*", color="black", markersize=16, zorder=5)
        ax.legend(fontsize=7, ncol=2)
    else:
        best_per = {name: None for name in schedules}
        for r in rows:
            best_per[_series(r)] = better(best_per[_series(r)], r)
        order = sorted(
            (name for name in schedules if best_per[name] and best_per[name][key] is not None),
            key=lambda name: best_per[name][key],
            reverse=not lower,
        )
        values = [best_per[name][key] for name in order]
        bars = ax.barh(range(len(order)), values, color=[colors[name] for name in order])
        ax.set_yticks(range(len(order)), order)
        ax.invert_yaxis()
        for i, name in enumerate(order):
            if name == _series(best):
                bars[i].set_edgecolor("black")
                bars[i].set_linewidth(2)
            ax.text(values[i], i, f" {values[i]:.2f}" + (" *best" if name == _series(best) else ""), va="center")
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.3 or abs(hi) * 0.05 or 1.0
        ax.set_xlim(max(0.0, lo - pad) if lower or lo > 0 else lo - pad, hi + pad)
        ax.set_xlabel(_LABELS[key])
        t = ts[0]
        ax.set_title(f"T = {t}" + (" (best sweet spot per schedule)" if len(all_ss) > 1 else ""), fontsize=10)
    if len(ts) > 1:
        ax.set_ylabel(_LABELS[key])
        ax.set_title("by schedule and T", fontsize=10)
    ax.grid(alpha=0.3)
    if panels == 2:
        ax2 = fig.add_subplot(1, 2, 2)
        t = t2
        for name in schedules:
            pts = [
                (r["sweet_spot"], r[key])
                for r in rows
                if _series(r) == name and r["total_iter"] == t and r[key] is not None
            ]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax2.plot(xs, ys, "o-", color=colors[name], label=name, linewidth=1.4, markersize=4)
        if best["total_iter"] == t:
            ax2.plot([best["sweet_spot"]], [best[key]], "*", color="black", markersize=16, zorder=5)
        ax2.set_xticks(ss)
        ax2.set_xlabel(f"sweet spot S (steps run) at T = {t}")
        ax2.set_ylabel(_LABELS[key])
        ax2.set_title("by sweet spot", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, ncol=2)
    sampler = "" if _samplers(rows) == ["confidence"] else f"{best.get('sampler', 'confidence')} "
    fig.suptitle(
        f"maskgit sweep: {result.count} images; best {sampler}{best['schedule']} T={best['total_iter']} "
        f"S={best['sweet_spot']} ({_SHORT[key]} {best[key]:.3f})",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path


def best_line(result: SweepResult) -> str:
    """``best: --schedule X --total-iter T --sweet-spot S (FID 41.2)``, with ``--sampler Y`` first when the sweep
    compared samplers or used another than confidence."""
    b = result.best
    scores = [f"{_SHORT[result.metric]} {_fmt(b[result.metric], 3)}"]
    scores += [f"{label} {_fmt(b[k], d)}" for k, label, d in _COLUMNS if k != result.metric and b[k] is not None]
    sampler = "" if _samplers(result.cells) == ["confidence"] else f"--sampler {b.get('sampler', 'confidence')} "
    return (
        f"best: {sampler}--schedule {b['schedule']} --total-iter {b['total_iter']} --sweet-spot {b['sweet_spot']} "
        f"({', '.join(scores)})"
    )


def _fmt(value, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


_COLUMNS = (
    ("fid", "FID", 3),
    ("kid", "KID", 5),
    ("psnr_hole", "PSNR hole", 2),
    ("ssim_hole", "SSIM hole", 4),
    ("psnr", "PSNR", 2),
    ("ssim", "SSIM", 4),
)


def render_table(result: SweepResult, console) -> None:
    """A Rich table of the cells (best row highlighted) on ``console``."""
    rows = result.cells
    has = {k: any(r[k] is not None for r in rows) for k in ("fid", "kid", "psnr_hole", "ssim_hole", "psnr", "ssim")}
    caption = None
    if any(r.get("same_as") for r in rows):
        caption = "same_as: computed once, the images are those of that cell (S = 1: one step fills every token"
        caption += ", whatever the sampler, schedule and T; halton: only S matters)"
    samplers = _samplers(rows) != ["confidence"]
    table = Table(
        title=f"maskgit sweep: {len(rows)} cells x {result.count} images", title_style="bold", caption=caption
    )
    if samplers:
        table.add_column("sampler")
    table.add_column("schedule")
    table.add_column("T", justify="right")
    table.add_column("S", justify="right")
    columns = [c for c in _COLUMNS if has[c[0]]]
    for k, title, _ in columns:
        table.add_column(title + (" *" if k == result.metric else ""), justify="right")
    table.add_column("s", justify="right")
    table.add_column("img/s", justify="right")
    for r in rows:
        table.add_row(
            *([r.get("sampler", "confidence")] if samplers else []),
            r["schedule"] + (" (best)" if r["best"] else ""),
            str(r["total_iter"]),
            str(r["sweet_spot"]),
            *[_fmt(r[k], d) for k, _, d in columns],
            f"{r['seconds']:.1f}",
            f"{r['images_per_second']:.1f}",
            style="bold green" if r["best"] else None,
        )
    console.print(table)
