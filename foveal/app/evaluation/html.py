"""``report.html``: one self-contained page (inline CSS, images as base64 PNG data URIs).

Every string that reaches the page — model names, labels, settings, messages, the config — goes
through :func:`html.escape`, so a model called ``<script>`` shows as text. The page needs no
script and no network access.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from foveal.app.evaluation.config import budget_label
from foveal.app.evaluation.sanity import CHECKS, docs_link

if TYPE_CHECKING:
    from foveal.app.evaluation.report import Report

__all__ = ["render_html"]

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


def e(value: object) -> str:
    """Escape any value for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _img(path: Path, alt: str, cls: str = "chart") -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{e(cls)}" alt="{e(alt)}" src="data:image/png;base64,{e(data)}">'


def _table(header: list[str], rows: list[list[str]], cls: str = "", numeric: int = 1) -> str:
    """A table whose cells are already-escaped HTML; columns from ``numeric`` on are numbers."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i >= numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{e(cls)}"' if cls else ""
    ident = ' id="headline"' if cls == "headline" else ""
    return (
        f"<table{attr}{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _headline(report: Report) -> str:
    h = report.config.headline
    header = [
        "model",
        "clean accuracy",
        e(f"standard PGD (Linf ≤ {budget_label(h.linf_eps)}, L2 ≤ {h.l2_eps:g})"),
        "unsuspicious attacks",
        "gap (points)",
        "strongest unsuspicious attack",
    ]
    has_aa = any(row["autoattack"]["cells"] for row in report.headline())
    if has_aa:
        header.insert(3, e(f"AutoAttack (≤ {budget_label(h.linf_eps)})"))
    rows = []
    for row in report.headline():
        uns = row["unsuspicious"]
        strongest = (
            f"{e(uns['strongest'])} ({e(_pct(uns['strongest_accuracy']))})"
            if uns["strongest"]
            else "-"
        )
        cells = [
            e(row["model"]),
            e(_pct(row["clean_accuracy"])),
            f'<span class="big">{e(_pct(row["pgd"]["worst_case_accuracy"]))}</span>',
            f'<span class="big">{e(_pct(uns["worst_case_accuracy"]))}</span>',
            e("-" if row["gap"] is None else f"{100 * row['gap']:+.1f}"),
            strongest,
        ]
        if has_aa:
            cells.insert(3, e(_pct(row["autoattack"]["worst_case_accuracy"])))
        rows.append(cells)
    table = _table(header, rows, cls="headline")
    note = (
        '<p class="note">Worst case per image: an image counts as robust only if it is classified '
        "correctly clean and under every attack of the group. Unsuspicious attacks: the "
        f"dual-perturbation attack with foreground budget eps_F ≤ {e(budget_label(h.linf_eps))} "
        "(any background budget and lambda), PGD with the salient pixels frozen (SIP) and the "
        f"perceptual ball within {e(budget_label(h.linf_eps))}, and SAI-FGM with delta ≤ "
        f"{e(f'{h.sai_delta:g}')}. A large positive gap means standard Lp evaluation overstates "
        "this model's robustness against perturbations that people do not notice.</p>"
    )
    return table + note


def _warnings(report: Report) -> str:
    warnings = report.warnings
    if not warnings:
        return '<div class="ok">All sanity checks passed.</div>'
    items = []
    for w in warnings:
        link = docs_link(w.check)
        items.append(
            f'<div class="warn"><b>{e(CHECKS.get(w.check, w.check))}</b> [{e(w.model)}]: '
            f'{e(w.message)} — <a href="{e(link)}">{e(w.anchor)}</a></div>'
        )
    return "".join(items)


def _cells_table(report: Report, model: str) -> str:
    rows = []
    for r in report.select(model):
        fam = r["family"]
        if fam in ("probe", "transfer"):
            continue
        m = r.get("metrics", {})
        norms = m.get("norms") or {}
        norm_text = ", ".join(f"{k}: {v['mean']:.3g}" for k, v in sorted(norms.items()))
        rows.append(
            [
                e(r["label"]),
                e(_pct(m.get("accuracy"))),
                e(_pct(m.get("success_rate"))),
                e(_num(m.get("foreground_score"))),
                e(norm_text or "-"),
                e(f"{r.get('seconds', 0):.1f}"),
            ]
        )
    header = [
        "cell",
        "robust accuracy",
        "success rate",
        "foreground score",
        "mean perturbation size",
        "seconds",
    ]
    return _table(header, rows)


def _sai_table(report: Report, model: str) -> str:
    recs = report.select(model, "sai")
    if not recs:
        return ""
    labels = [label for label, _ in report.transform_results(recs[0])]
    rows = []
    for r in recs:
        values = dict(report.transform_results(r))
        cells = [e(_pct((values.get(lb) or {}).get("success_rate"))) for lb in labels]
        rows.append([e(r["label"]), *cells])
    return _table(["attack", *[e(lb) for lb in labels]], rows)


def _examples(report: Report, figures: dict[str, Path]) -> str:
    parts = []
    labels = "".join(f"<div>{e(lb)}</div>" for lb in _GRID_ROWS)
    for model in report.models:
        items = []
        for r in report.select(model):
            path = figures.get(f"examples:{r['key']}")
            if path is None:
                continue
            alt = f"{model}: {r['label']}"
            items.append(
                f'<div class="card"><h4>{e(r["label"])}</h4><div class="grid-wrap">'
                f'<div class="grid-labels">{labels}</div>{_img(path, alt, "grid")}</div></div>'
            )
        if items:
            parts.append(f'<h3>{e(model)}</h3><div class="cards">{"".join(items)}</div>')
    return "".join(parts)


def _transfer(report: Report, figures: dict[str, Path]) -> str:
    recs = report.select(family="transfer")
    if not recs:
        return ""
    out = [
        "<h2>Transfer from surrogate models</h2>",
        '<p class="note">Rows: the model the attack was computed on; columns: the evaluated '
        "model's accuracy on those images (the diagonal is white-box).</p>",
    ]
    for name, path in figures.items():
        if name.startswith("transfer_"):
            out.append(_img(path, name))
    rows = []
    for r in recs:
        cells = [e(r["label"])]
        for t in report.models:
            res = (r.get("targets") or {}).get(t) or {}
            cells.append(e(_pct(res.get("accuracy"))))
        rows.append(cells)
    out.append(_table(["attack (source)", *[e(t) for t in report.models]], rows))
    return "".join(out)


def _detection(report: Report, figures: dict[str, Path]) -> str:
    if not report.detectors:
        return ""
    out = ["<h2>Detection</h2>"]
    if "detection" in figures:
        out.append(_img(figures["detection"], "detection rates"))
    for model in report.models:
        probe = report.select(model, "probe")
        fpr = (probe[0].get("detection") or {}) if probe else {}
        rows = [[e(d), e(_pct(v.get("false_positive_rate")))] for d, v in fpr.items()]
        for r in report.select(model):
            for d, v in (r.get("detection") or {}).items():
                if "rate" in v:
                    rows.append([e(f"{d}: {r['label']}"), e(_pct(v.get("rate")))])
        out.append(f"<h3>{e(model)}</h3>")
        out.append(_table(["detector: images (clean rows: false-positive rate)", "flagged"], rows))
    return "".join(out)


def _section_figure(figures: dict[str, Path], name: str, alt: str) -> str:
    return _img(figures[name], alt) if name in figures else ""


def render_html(report: Report, figures: dict[str, Path]) -> str:
    """The whole page as a string (see the module docstring)."""
    import foveal

    data = report.suite["data"]
    model_rows = [
        [e(m["name"]), e(m["role"]), e(m["source"]), e(m["fingerprint"])]
        for m in report.suite["models"]
    ]
    status = (
        "complete"
        if report.complete
        else f"incomplete: {len(report.missing)} of {len(report.cells)} cells missing "
        "(re-run the same command to finish)"
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Unsuspicious-robustness report</h1>",
        f'<p class="meta">data <b>{e(data["name"])}</b> ({e(data["split"])} split, '
        f"{e(data['n'])} images, {e('x'.join(str(s) for s in data['image_shape']))}, masks: "
        f"{e('yes' if data['has_masks'] else 'no')}) · preset {e(report.config.preset)} · seed "
        f"{e(report.config.seed)} · foveal {e(foveal.__version__)} · {e(stamp)} · "
        f"{e(status)}</p>",
        "<h2>Headline</h2>",
        _headline(report),
        "<h2>Sanity checks</h2>",
        _warnings(report),
        "<h2>Robust accuracy vs budget</h2>",
        _section_figure(figures, "robust_accuracy", "robust accuracy vs budget"),
        "<h2>Dual-perturbation attack (foreground / background budgets)</h2>",
        _section_figure(figures, "dual_heatmap", "eps_F x eps_B heatmap"),
        _section_figure(figures, "lambda", "foreground score and accuracy vs lambda"),
        "<h2>SAI-FGM vs I-FGM under input transforms (gray-box)</h2>",
        '<p class="note">Success rate: among the images the model behind the transform '
        "classifies correctly when clean, the fraction whose adversarial version it "
        "misclassifies. The adversarial images are computed on the undefended model.</p>",
        _section_figure(figures, "transforms", "SAI-FGM vs I-FGM under transforms"),
    ]
    for model in report.models:
        table = _sai_table(report, model)
        if table:
            body.append(f"<h3>{e(model)}: success rate per delta and transform</h3>{table}")
    body += [
        "<h2>Examples</h2>",
        '<p class="note">Rows: original, adversarial, perturbation magnified to the full range, '
        "the attack's mask (foreground, attention crop or frozen salient pixels) and the "
        "fixation saliency (spectral residual, square-root scaled) of the adversarial image."
        "</p>",
        _examples(report, figures),
        _transfer(report, figures),
        _detection(report, figures),
        "<h2>All cells</h2>",
    ]
    for model in report.models:
        body.append(f"<h3>{e(model)}</h3>{_cells_table(report, model)}")
    body += [
        "<h2>Models</h2>",
        _table(["name", "role", "source", "fingerprint"], model_rows, numeric=99),
        "<details><summary>Configuration</summary><pre>",
        e(json.dumps(report.config.model_dump(mode="json"), indent=2)),
        "</pre></details>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>foveal evaluate: {e(', '.join(report.models))}</title>"
        f"<style>{_CSS}</style></head><body><main>{''.join(body)}</main></body></html>\n"
    )
