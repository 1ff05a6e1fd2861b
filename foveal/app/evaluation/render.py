"""Rendering a report: the PNG charts (``figures/``), ``report.html`` and ``summary.json``.

Charts: ``robust_accuracy.png`` (robust accuracy vs budget, Linf-type budgets left, L2 right;
colour = threat model, line style = model; budget 0 is the clean accuracy; each family places
its records with ``Family.curve``), each family's own charts, ``detection.png`` (with detectors)
and the example grids ``examples/<model>-<n>.png`` (the grid writer of ``foveal attack``).
``report.html`` is one self-contained page (inline CSS, images as data URIs, no script): the
headline, the sanity checks, the robust-accuracy chart, each family's section in family order,
the examples, detection, every cell, the models and the config. Every string that reaches the
page goes through :func:`e`.
"""

from __future__ import annotations

import base64
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from foveal.app.evaluation.config import budget_label
from foveal.app.evaluation.family import HEADLINE_GROUPS, Curve, families
from foveal.app.evaluation.results import Results
from foveal.app.evaluation.sanity import CHECKS, SanityWarning, docs_link
from foveal.io import atomic_write_text

__all__ = ["e", "heatmap", "img", "num", "pct", "pyplot", "render", "save", "table"]

SUMMARY_FILE = "summary.json"
HTML_FILE = "report.html"

DPI = 110
_STYLES: list[Any] = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; border-bottom: 2px solid #e3e6eb; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 22px 0 8px; }
.meta { color: #5b6475; font-size: 14px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #d8dce3; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.headline td, table.headline th { font-size: 15px; padding: 8px 14px; }
.big { font-size: 18px; font-weight: 600; }
.warn { background: #fff4e0; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 6px 0; }
.ok { background: #e9f7ee; border-left: 4px solid #2a9d55; padding: 8px 12px; }
.note { color: #5b6475; font-size: 13px; }
img.chart { max-width: 100%; height: auto; display: block; margin: 8px 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px 28px; }
.card h4 { font-size: 13px; margin: 10px 0 4px; }
.grid-wrap { display: flex; align-items: stretch; gap: 6px; }
.grid-labels { display: flex; flex-direction: column; justify-content: space-around;
               font-size: 11px; color: #5b6475; text-align: right; width: 92px; }
img.grid { image-rendering: pixelated; height: 300px; width: auto; }
pre { background: #f3f4f7; padding: 10px; overflow-x: auto; font-size: 12px; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""

_GRID_ROWS = ("original", "adversarial", "perturbation, magnified", "mask", "fixation saliency")


def render(
    results: Results,
    headline: list[dict[str, Any]],
    warnings: list[SanityWarning],
    summary: dict[str, Any],
    target: Path,
) -> Path:
    """Write the charts, ``report.html`` and ``summary.json`` into ``target``; returns the
    path of ``report.html``."""
    directory = target / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    drawn = {"robust_accuracy": robust_accuracy_chart, "detection": detection_chart}
    figures = {n: p for n, fn in drawn.items() if (p := fn(results, directory / f"{n}.png"))}
    for f in (f for f in families() if results.select(family=f.name)):
        figures.update(f.charts(results, directory))
    figures.update(example_grids(results, directory))
    summary = {**summary, "figures": {k: str(v.relative_to(target)) for k, v in figures.items()}}
    atomic_write_text(target / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    html_path = target / HTML_FILE
    atomic_write_text(html_path, render_html(results, headline, warnings, figures))
    return html_path


# ------------------------------------------------------------------------------ helpers
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, with the report's style."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update(
        {"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3}
    )
    return pyplot


def save(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (atomically) and close it."""
    from foveal.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


def heatmap(ax: Any, grid: Any, columns: list[str], rows: list[str], **kwargs: Any) -> Any:
    """Draw ``grid`` (accuracy in %, NaN: no cell) with each value written in its cell;
    ``kwargs``: ``origin`` of the image, ``fontsize`` of the values."""
    import numpy as np

    origin, font = kwargs.pop("origin", "upper"), kwargs
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, origin=origin, aspect="auto")
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), rows)
    ax.grid(False)
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            color = "white" if value < 60 else "black"
            ax.text(j, i, f"{value:.0f}%", ha="center", va="center", color=color, **font)
    return image


def e(value: object) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def img(path: Path, alt: str, cls: str = "chart") -> str:
    """An ``<img>`` with the PNG at ``path`` embedded as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{e(cls)}" alt="{e(alt)}" src="data:image/png;base64,{e(data)}">'


def table(header: list[str], rows: list[list[str]], cls: str = "", numeric: int = 1) -> str:
    """A table whose cells are already-escaped HTML; columns from ``numeric`` on are numbers."""
    head = "".join(f"<th>{h}</th>" for h in header)

    def td(i: int, c: str) -> str:
        return f'<td class="num">{c}</td>' if i >= numeric else f"<td>{c}</td>"

    body = ["<tr>" + "".join(td(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    attr = f' class="{e(cls)}"' if cls else ""
    ident = ' id="headline"' if cls == "headline" else ""
    return (
        f"<table{attr}{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


# ------------------------------------------------------------------------------ charts
def _curves(results: Results, model: str) -> dict[Curve, list[tuple[float, float]]]:
    """Line -> [(budget, accuracy %)] for one model."""
    curves: dict[Curve, list[tuple[float, float]]] = {}
    found = {f.name: f for f in families()}
    for r in results.select(model):
        placed = found[r.family].curve(r, results.config) if r.family in found else None
        if placed is not None and r.accuracy is not None:
            curves.setdefault(placed[0], []).append((placed[1], 100 * r.accuracy))
    clean = results.accuracy(model, "clean")
    for curve, points in curves.items():
        if clean is not None and curve.clean and all(x > 0 for x, _ in points):
            points.append((0.0, 100 * clean))
        points.sort()
    return curves


def _style(curve: Curve) -> dict[str, Any]:
    return {"color": curve.color, "marker": _MARKERS[curve.rank % len(_MARKERS)], "linewidth": 1.8}


def robust_accuracy_chart(results: Results, path: Path) -> Path | None:
    """Robust accuracy vs budget, all threat models and models on one figure."""
    per_model = {m: _curves(results, m) for m in results.models}
    if not any(per_model.values()):
        return None
    plt = pyplot()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
    lines = sorted({c for curves in per_model.values() for c in curves}, key=lambda c: c.rank)
    used: list[Curve] = []
    for ax, panel, xlabel, title in (
        (axes[0], "linf", "Linf budget (x/255)", "Linf-type threat models"),
        (axes[1], "l2", "L2 budget", "L2 threat models"),
    ):
        notes = dict.fromkeys(c.note for c in lines if c.panel == panel and c.note)
        xlabel = "; ".join([xlabel, *notes])
        drawn = False
        for mi, curves in enumerate(per_model.values()):
            for curve in (c for c in lines if c.panel == panel and curves.get(c)):
                xs, ys = zip(*curves[curve], strict=True)
                ax.plot(xs, ys, linestyle=_STYLES[mi % len(_STYLES)], markersize=5, **_style(curve))
                drawn = True
                if curve not in used:
                    used.append(curve)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-3, 103)
        if not drawn:
            ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
    threat_handles = [Line2D([], [], label=c.name, **_style(c)) for c in used]
    model_handles = [
        Line2D([], [], color="#444444", linestyle=_STYLES[i % len(_STYLES)], linewidth=1.8, label=m)
        for i, m in enumerate(per_model)
    ]
    for handles, title, loc, anchor in (
        (threat_handles, "threat model", "upper left", (1.0, 0.95)),
        (model_handles, "model", "lower left", (1.0, 0.08)),
    ):
        fig.legend(handles=handles, title=title, loc=loc, bbox_to_anchor=anchor, frameon=False)
    fig.suptitle("Robust accuracy vs budget (budget 0 = clean accuracy)")
    fig.tight_layout()
    return save(fig, path)


def _false_positives(results: Results, model: str) -> dict[str, Any]:
    """Detector -> its false-positive rate on the clean images (the probe measures it)."""
    return {
        d: v
        for r in results.select(model)
        for d, v in (r.detection or {}).items()
        if "false_positive_rate" in v
    }


def detection_chart(results: Results, path: Path) -> Path | None:
    """Detection rate of each example attack's adversarial images, per detector and model."""
    import numpy as np

    panels = []
    for model in results.models:
        recs = [r for r in results.select(model) if r.examples and r.detection]
        if recs:
            panels.append((model, recs))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.8 * len(panels)), squeeze=False)
    for ax, (model, recs) in zip(axes[:, 0], panels, strict=True):
        detectors = sorted({d for r in recs for d in r.detection or {}})
        x = np.arange(len(recs))
        width = 0.8 / max(len(detectors), 1)
        fpr = _false_positives(results, model)
        for i, det in enumerate(detectors):
            ys = [100 * ((r.detection or {}).get(det, {}).get("rate") or 0.0) for r in recs]
            ax.bar(x + (i - (len(detectors) - 1) / 2) * width, ys, width, label=det, color=f"C{i}")
            clean = (fpr.get(det) or {}).get("false_positive_rate")
            line = {"linestyle": "--", "linewidth": 1.2, "label": f"{det}: clean images flagged"}
            if clean is not None:
                ax.axhline(100 * clean, color=f"C{i}", zorder=3, **line)
        ax.set_xticks(x, [r.label for r in recs], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("detected (%)")
        ax.set_title(f"{model}: detection rate of adversarial examples")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "model"


def example_grids(results: Results, directory: Path) -> dict[str, Path]:
    """Grid PNGs of the saved example rows, keyed ``examples:<cell key>``."""
    from safetensors.torch import load_file

    from foveal.app.grids import write_grid

    out: dict[str, Path] = {}
    for i, r in enumerate(results.results):
        source = results.out / r.examples if isinstance(r.examples, str) else None
        if source is None or not source.is_file():
            continue
        path = directory / "examples" / f"{_slug(r.model)}-{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_grid([row.float() / 255.0 for row in load_file(str(source))["rows"]], path)
        out[f"examples:{r.key}"] = path
    return out


# ------------------------------------------------------------------------------ the page
def _headline(results: Results, headline: list[dict[str, Any]]) -> str:
    h = results.config.headline
    header = [
        "model",
        "clean accuracy",
        e(f"standard PGD (Linf ≤ {budget_label(h.linf_eps)}, L2 ≤ {h.l2_eps:g})"),
        "unsuspicious attacks",
        "gap (points)",
        "strongest unsuspicious attack",
    ]
    has_aa = any(row["autoattack"]["cells"] for row in headline)
    if has_aa:
        header.insert(3, e(f"AutoAttack (≤ {budget_label(h.linf_eps)})"))
    rows = []
    for row in headline:
        uns, worst = row["unsuspicious"], [row[g]["worst_case_accuracy"] for g in HEADLINE_GROUPS]
        strongest = f"{e(uns['strongest'])} ({e(pct(uns['strongest_accuracy']))})"
        cells = [e(row["model"]), e(pct(row["clean_accuracy"]))]
        cells += [f'<span class="big">{e(pct(w))}</span>' for w in worst[:2]]
        cells += [e("-" if row["gap"] is None else f"{100 * row['gap']:+.1f}")]
        cells += [strongest if uns["strongest"] else "-"]
        if has_aa:
            cells.insert(3, e(pct(worst[2])))
        rows.append(cells)
    note = (
        '<p class="note">Worst case per image: an image counts as robust only if it is classified '
        "correctly clean and under every attack of the group. Unsuspicious attacks: the "
        f"dual-perturbation attack with foreground budget eps_F ≤ {e(budget_label(h.linf_eps))} "
        "(any background budget and lambda), PGD with the salient pixels frozen (SIP) and the "
        f"perceptual ball within {e(budget_label(h.linf_eps))}, and SAI-FGM with delta ≤ "
        f"{e(f'{h.sai_delta:g}')}. A large positive gap means standard Lp evaluation overstates "
        "this model's robustness against perturbations that people do not notice.</p>"
    )
    return table(header, rows, cls="headline") + note


def _warnings(warnings: list[SanityWarning]) -> str:
    if not warnings:
        return '<div class="ok">All sanity checks passed.</div>'
    return "".join(
        f'<div class="warn"><b>{e(CHECKS.get(w.check, w.check))}</b> [{e(w.model)}]: '
        f'{e(w.message)} — <a href="{e(docs_link(w.check))}">{e(w.anchor)}</a></div>'
        for w in warnings
    )


def _cells_table(results: Results, model: str) -> str:
    """Every cell of ``model`` that has an accuracy."""
    rows = []
    for r in (r for r in results.select(model) if "accuracy" in r.metrics):
        m, norms = r.metrics, sorted((r.metrics.get("norms") or {}).items())
        norm_text = ", ".join(f"{k}: {v['mean']:.3g}" for k, v in norms) or "-"
        scores = (
            pct(m.get("accuracy")),
            pct(m.get("success_rate")),
            num(m.get("foreground_score")),
        )
        rows.append([r.label, *scores, norm_text, f"{r.seconds:.1f}"])
    header = ["cell", "robust accuracy", "success rate", "foreground score"]
    header += ["mean perturbation size", "seconds"]
    return table(header, [[e(c) for c in row] for row in rows])


def _examples(results: Results, figures: dict[str, Path]) -> str:
    parts = []
    labels = "".join(f"<div>{e(lb)}</div>" for lb in _GRID_ROWS)
    for model in results.models:
        items = []
        for r in results.select(model):
            path = figures.get(f"examples:{r.key}")
            if path is not None:
                items.append(
                    f'<div class="card"><h4>{e(r.label)}</h4><div class="grid-wrap">'
                    f'<div class="grid-labels">{labels}</div>'
                    f"{img(path, f'{model}: {r.label}', 'grid')}</div></div>"
                )
        if items:
            parts.append(f'<h3>{e(model)}</h3><div class="cards">{"".join(items)}</div>')
    return "".join(parts)


def _detection(results: Results, figures: dict[str, Path]) -> str:
    if not results.detectors:
        return ""
    out = ["<h2>Detection</h2>"]
    if "detection" in figures:
        out.append(img(figures["detection"], "detection rates"))
    for model in results.models:
        fpr = _false_positives(results, model)
        rows = [[e(d), e(pct(v.get("false_positive_rate")))] for d, v in fpr.items()]
        for r in results.select(model):
            for d, v in (r.detection or {}).items():
                if "rate" in v:
                    rows.append([e(f"{d}: {r.label}"), e(pct(v.get("rate")))])
        out.append(f"<h3>{e(model)}</h3>")
        out.append(table(["detector: images (clean rows: false-positive rate)", "flagged"], rows))
    return "".join(out)


def render_html(
    results: Results,
    headline: list[dict[str, Any]],
    warnings: list[SanityWarning],
    figures: dict[str, Path],
) -> str:
    """The whole page as a string (see the module docstring)."""
    import foveal

    data, columns = results.suite["data"], ["name", "role", "source", "fingerprint"]
    model_rows = [[e(m[c]) for c in columns] for m in results.suite["models"]]
    status = (
        "complete"
        if results.complete
        else f"incomplete: {len(results.missing)} of {len(results.cells)} cells missing "
        "(re-run the same command to finish)"
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Unsuspicious-robustness report</h1>",
        f'<p class="meta">data <b>{e(data["name"])}</b> ({e(data["split"])} split, '
        f"{e(data['n'])} images, {e('x'.join(str(s) for s in data['image_shape']))}, masks: "
        f"{e('yes' if data['has_masks'] else 'no')}) · preset {e(results.config.preset)} · seed "
        f"{e(results.config.seed)} · foveal {e(foveal.__version__)} · {e(stamp)} · "
        f"{e(status)}</p>",
        "<h2>Headline</h2>",
        _headline(results, headline),
        "<h2>Sanity checks</h2>",
        _warnings(warnings),
        "<h2>Robust accuracy vs budget</h2>",
    ]
    if "robust_accuracy" in figures:
        body.append(img(figures["robust_accuracy"], "robust accuracy vs budget"))
    body += [f.html(results, figures) for f in families() if results.select(family=f.name)]
    body += [
        "<h2>Examples</h2>",
        '<p class="note">Rows: original, adversarial, perturbation magnified to the full range, '
        "the attack's mask (foreground, attention crop or frozen salient pixels) and the "
        "fixation saliency (spectral residual, square-root scaled) of the adversarial image."
        "</p>",
        _examples(results, figures),
        _detection(results, figures),
        "<h2>All cells</h2>",
    ]
    body += [f"<h3>{e(model)}</h3>{_cells_table(results, model)}" for model in results.models]
    body += [
        "<h2>Models</h2>",
        table(columns, model_rows, numeric=99),
        "<details><summary>Configuration</summary><pre>",
        e(json.dumps(results.config.model_dump(mode="json"), indent=2)),
        "</pre></details>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>foveal evaluate: {e(', '.join(results.models))}</title>"
        f"<style>{_CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n"
    )
