"""The report's charts, drawn with matplotlib's Agg backend (no display needed).

- ``robust_accuracy.png``: robust accuracy vs budget for every threat model and model on one
  figure (Linf-type budgets left, L2 budgets right; colour = threat model, line style = model;
  budget 0 is the clean accuracy);
- ``dual_heatmap.png``: accuracy over the eps_F x eps_B grid, one panel per model;
- ``lambda.png``: foreground score and accuracy vs lambda (seed 000, Fig. 3);
- ``transforms.png``: gray-box success rate of SAI-FGM vs I-FGM after each input transform
  (seed 001, Fig. 4-6 / Table 3);
- ``transfer_<attack>.png``: transfer matrices (source x target accuracy), with surrogates;
- ``detection.png``: detection rate of each attack's examples, with detectors;
- ``examples/<model>-<n>.png``: example grids (original, adversarial, magnified perturbation,
  mask, saliency), drawn by the same grid writer as ``foveal attack``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foveal.app.evaluation.config import budget_label

if TYPE_CHECKING:
    from foveal.app.evaluation.report import Report

__all__ = ["render_all"]

_STYLES: list[Any] = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P"]
_COLORS = {
    "PGD Linf": "#1f77b4",
    "AutoAttack Linf": "#17becf",
    "dual eps_F": "#d62728",
    "SIP (frozen)": "#2ca02c",
    "perceptual": "#9467bd",
    "PGD L2": "#1f77b4",
    "AutoAttack L2": "#17becf",
    "I-FGM": "#ff7f0e",
    "SAI-FGM": "#d62728",
}
DPI = 110


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"font.size": 10, "axes.titlesize": 11, "axes.grid": True, "grid.alpha": 0.3}
    )
    return plt


def _save(fig: Any, path: Path) -> Path:
    from foveal.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _acc(record: dict[str, Any]) -> float | None:
    value = record.get("metrics", {}).get("accuracy")
    return None if value is None else 100 * float(value)


def _clean(report: Report, model: str) -> float | None:
    found = report.select(model, "clean")
    return _acc(found[0]) if found else None


def _curves(report: Report, model: str) -> dict[str, list[tuple[float, float]]]:
    """Threat model -> [(budget, accuracy %)] for one model (Linf budgets in /255 units)."""
    d = report.config.dual
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in report.select(model):
        acc, s, fam = _acc(r), r.get("settings", {}), r["family"]
        if acc is None:
            continue
        if fam in ("pgd", "autoattack"):
            name = ("PGD" if fam == "pgd" else "AutoAttack") + (
                " Linf" if s["norm"] == "linf" else " L2"
            )
            x = s["eps"] * 255 if s["norm"] == "linf" else s["eps"]
            curves.setdefault(name, []).append((x, acc))
        elif (
            fam == "dual"
            and s["norm"] == "linf"
            and abs(s["eps_bg"] - d.sweep_eps_bg) < 1e-9
            and abs(s["lam"] - d.lam) < 1e-9
        ):
            curves.setdefault("dual eps_F", []).append((s["eps_fg"] * 255, acc))
        elif fam == "sip":
            curves.setdefault("SIP (frozen)", []).append((s["eps"] * 255, acc))
        elif fam == "perceptual":
            curves.setdefault("perceptual", []).append((s["eps"] * 255, acc))
        elif fam == "sai":
            name = "SAI-FGM" if s["attack"] == "sai-fgm" else "I-FGM"
            curves.setdefault(name, []).append((r["metrics"]["l2_budget"], acc))
    clean = _clean(report, model)
    for name, points in curves.items():
        if clean is not None and name != "dual eps_F" and all(x > 0 for x, _ in points):
            points.append((0.0, clean))
        points.sort()
    return curves


def robust_accuracy_chart(report: Report, path: Path) -> Path | None:
    """Robust accuracy vs budget, all threat models and models on one figure."""
    per_model = {m: _curves(report, m) for m in report.models}
    if not any(per_model.values()):
        return None
    plt = _plt()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
    linf_names = ["PGD Linf", "AutoAttack Linf", "dual eps_F", "SIP (frozen)", "perceptual"]
    l2_names = ["PGD L2", "AutoAttack L2", "I-FGM", "SAI-FGM"]
    used: list[str] = []
    for ax, names, xlabel, title in (
        (
            axes[0],
            linf_names,
            "Linf budget (x/255); dual: eps_F at eps_B = "
            f"{budget_label(report.config.dual.sweep_eps_bg)}",
            "Linf-type threat models",
        ),
        (
            axes[1],
            l2_names,
            "L2 budget (SAI-FGM / I-FGM: delta * sqrt(C*H*W) / 255)",
            "L2 threat models",
        ),
    ):
        drawn = False
        for mi, curves in enumerate(per_model.values()):
            for ni, name in enumerate(names):
                points = curves.get(name)
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs,
                    ys,
                    linestyle=_STYLES[mi % len(_STYLES)],
                    color=_COLORS[name],
                    marker=_MARKERS[ni % len(_MARKERS)],
                    markersize=5,
                    linewidth=1.8,
                )
                drawn = True
                if name not in used:
                    used.append(name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(-3, 103)
        if not drawn:
            ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes)
    marker_of = {
        n: _MARKERS[(l2_names if n in l2_names else linf_names).index(n) % len(_MARKERS)]
        for n in used
    }
    threat_handles = [
        Line2D([], [], color=_COLORS[n], marker=marker_of[n], linewidth=1.8, label=n) for n in used
    ]
    model_handles = [
        Line2D([], [], color="#444444", linestyle=_STYLES[i % len(_STYLES)], linewidth=1.8, label=m)
        for i, m in enumerate(per_model)
    ]
    fig.legend(
        handles=threat_handles,
        title="threat model",
        loc="upper left",
        bbox_to_anchor=(1.0, 0.95),
        frameon=False,
    )
    fig.legend(
        handles=model_handles,
        title="model",
        loc="lower left",
        bbox_to_anchor=(1.0, 0.08),
        frameon=False,
    )
    fig.suptitle("Robust accuracy vs budget (budget 0 = clean accuracy)")
    fig.tight_layout()
    return _save(fig, path)


def _dual_grid(report: Report, model: str) -> tuple[list[float], list[float], Any] | None:
    import numpy as np

    d = report.config.dual
    cells = [
        r
        for r in report.select(model, "dual")
        if abs(r["settings"]["lam"] - d.lam) < 1e-9 and r["settings"]["norm"] == d.norm
    ]
    fgs, bgs = sorted(set(d.eps_fg)), sorted(set(d.eps_bg))
    grid = np.full((len(fgs), len(bgs)), np.nan)
    for r in cells:
        s, acc = r["settings"], _acc(r)
        if s["eps_fg"] in fgs and s["eps_bg"] in bgs and acc is not None:
            grid[fgs.index(s["eps_fg"]), bgs.index(s["eps_bg"])] = acc
    clean = _clean(report, model)
    if 0.0 in fgs and 0.0 in bgs and clean is not None:  # no perturbation at all
        grid[fgs.index(0.0), bgs.index(0.0)] = clean
    if int(np.isfinite(grid).sum()) < 2:
        return None
    return fgs, bgs, grid


def dual_heatmap(report: Report, path: Path) -> Path | None:
    """Accuracy over the eps_F x eps_B grid, one panel per model."""
    grids = {m: g for m in report.models if (g := _dual_grid(report, m)) is not None}
    if not grids:
        return None
    import numpy as np

    plt = _plt()
    norm = report.config.dual.norm
    k = len(grids)
    fig, axes = plt.subplots(1, k, figsize=(4.6 * k + 1.2, 4.2), squeeze=False)
    image = None
    for i, (ax, (model, (fgs, bgs, grid))) in enumerate(zip(axes[0], grids.items(), strict=True)):
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, origin="lower", aspect="auto")
        ax.set_xticks(range(len(bgs)), [budget_label(b, norm) for b in bgs])
        ax.set_yticks(range(len(fgs)), [budget_label(f, norm) for f in fgs])
        ax.set_xlabel("background budget eps_B")
        if i == 0:
            ax.set_ylabel("foreground budget eps_F")
        ax.set_title(model)
        ax.grid(False)
        for i in range(len(fgs)):
            for j in range(len(bgs)):
                value = grid[i, j]
                if np.isnan(value):
                    continue
                ax.text(
                    j,
                    i,
                    f"{value:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="white" if value < 60 else "black",
                )
    fig.colorbar(image, ax=axes[0].tolist(), label="robust accuracy (%)", shrink=0.9)
    fig.suptitle(
        f"Dual-perturbation attack: accuracy over eps_F x eps_B "
        f"(lambda = {report.config.dual.lam:g})"
    )
    return _save(fig, path)


def lambda_chart(report: Report, path: Path) -> Path | None:
    """Foreground score and accuracy vs lambda at the sweep budgets (seed 000, Fig. 3)."""
    d = report.config.dual
    series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
    for model in report.models:
        for r in report.select(model, "dual"):
            s, m = r["settings"], r.get("metrics", {})
            if abs(s["eps_fg"] - d.sweep_eps_fg) > 1e-9 or abs(s["eps_bg"] - d.sweep_eps_bg) > 1e-9:
                continue
            acc = _acc(r)
            if acc is None:
                continue
            series.setdefault(model, []).append(
                (s["lam"], acc, m.get("foreground_score"), m.get("foreground_score_clean"))
            )
    series = {k: sorted(v) for k, v in series.items() if len({p[0] for p in v}) >= 2}
    if not series:
        return None
    plt = _plt()
    lams = sorted({p[0] for v in series.values() for p in v})
    pos = {lam: i for i, lam in enumerate(lams)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    clean_scores = [p[3] for v in series.values() for p in v if p[3] is not None]
    if clean_scores:  # the clean images and their masks are the same for every model
        left.axhline(clean_scores[0], color="#666666", linestyle=":", label="clean images")
    for i, (model, points) in enumerate(series.items()):
        xs = [pos[p[0]] for p in points]
        color = f"C{i}"
        fs = [p[2] for p in points]
        if all(v is not None for v in fs):
            left.plot(xs, fs, marker="o", color=color, label=model)
        right.plot(xs, [p[1] for p in points], marker="o", color=color, label=model)
    for ax in (left, right):
        ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
        ax.set_xlabel("salience weight lambda")
    left.set_ylabel("foreground score")
    left.set_title("Foreground score of the adversarial images (higher: background less salient)")
    right.set_ylabel("robust accuracy (%)")
    right.set_ylim(-3, 103)
    right.set_title("Accuracy under the dual attack")
    left.legend(fontsize=8, frameon=False)
    right.legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"Salience control at eps_F = {budget_label(d.sweep_eps_fg, d.norm)}, "
        f"eps_B = {budget_label(d.sweep_eps_bg, d.norm)}"
    )
    fig.tight_layout()
    return _save(fig, path)


def _reference_delta(report: Report) -> float | None:
    deltas = sorted({r["settings"]["delta"] for r in report.select(family="sai")})
    if not deltas:
        return None
    target = report.config.headline.sai_delta
    return min(deltas, key=lambda v: (abs(v - target), v))


def transforms_chart(report: Report, path: Path) -> Path | None:
    """Gray-box success rate of SAI-FGM vs I-FGM, plain and after each transform."""
    delta = _reference_delta(report)
    if delta is None:
        return None
    import numpy as np

    panels = []
    for model in report.models:
        rows: dict[str, dict[str, float | None]] = {}
        for r in report.select(model, "sai", delta=delta):
            name = "SAI-FGM" if r["settings"]["attack"] == "sai-fgm" else "I-FGM"
            rows[name] = {label: t.get("success_rate") for label, t in report.transform_results(r)}
        if rows:
            panels.append((model, rows))
    if not panels:
        return None
    plt = _plt()
    k = len(panels)
    fig, axes = plt.subplots(k, 1, figsize=(12, 3.6 * k), squeeze=False)
    for ax, (model, rows) in zip(axes[:, 0], panels, strict=True):
        labels = list(next(iter(rows.values())).keys())
        x = np.arange(len(labels))
        width = 0.8 / len(rows)
        for i, (name, values) in enumerate(sorted(rows.items(), key=lambda kv: kv[0] != "SAI-FGM")):
            ys = [100 * v if v is not None else 0.0 for v in (values.get(lb) for lb in labels)]
            bars = ax.bar(
                x + (i - (len(rows) - 1) / 2) * width, ys, width, label=name, color=_COLORS[name]
            )
            for bar, value in zip(bars, ys, strict=True):
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    value + 1,
                    f"{value:.0f}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(x, labels, rotation=15, ha="right")
        ax.set_ylim(0, 112)
        ax.set_ylabel("success rate (%)")
        ax.set_title(
            f"{model}: gray-box attack success after each input transform (delta = {delta:g})"
        )
        ax.legend(loc="upper right", frameon=False, ncols=2)
    fig.tight_layout()
    return _save(fig, path)


def transfer_charts(report: Report, directory: Path) -> dict[str, Path]:
    """One source x target accuracy matrix per transfer attack."""
    import numpy as np

    records = report.select(family="transfer")
    out: dict[str, Path] = {}
    for attack in sorted({r["settings"]["attack"] for r in records}):
        recs = [r for r in records if r["settings"]["attack"] == attack]
        sources = [r["model"] for r in recs]
        targets = report.models
        grid = np.full((len(sources), len(targets)), np.nan)
        for i, r in enumerate(recs):
            for j, t in enumerate(targets):
                res = (r.get("targets") or {}).get(t)
                if res and res.get("accuracy") is not None:
                    grid[i, j] = 100 * res["accuracy"]
        plt = _plt()
        fig, ax = plt.subplots(figsize=(1.8 * len(targets) + 3, 0.7 * len(sources) + 2))
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(targets)), targets)
        ax.set_yticks(range(len(sources)), sources)
        ax.set_xlabel("target model (evaluated)")
        ax.set_ylabel("source model (attacked)")
        ax.grid(False)
        for i in range(len(sources)):
            for j in range(len(targets)):
                if not np.isnan(grid[i, j]):
                    ax.text(
                        j,
                        i,
                        f"{grid[i, j]:.0f}%",
                        ha="center",
                        va="center",
                        color="white" if grid[i, j] < 60 else "black",
                    )
        fig.colorbar(image, ax=ax, label="target accuracy (%)")
        ax.set_title(f"Transfer matrix: {recs[0]['label'].split(' from ')[0]}")
        out[f"transfer_{attack}"] = _save(fig, directory / f"transfer_{attack}.png")
    return out


def detection_chart(report: Report, path: Path) -> Path | None:
    """Detection rate of each example attack's adversarial images, per detector and model."""
    import numpy as np

    panels = []
    for model in report.models:
        recs = [r for r in report.select(model) if r.get("examples") and r.get("detection")]
        if recs:
            panels.append((model, recs))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.8 * len(panels)), squeeze=False)
    for ax, (model, recs) in zip(axes[:, 0], panels, strict=True):
        detectors = sorted({d for r in recs for d in r["detection"]})
        x = np.arange(len(recs))
        width = 0.8 / max(len(detectors), 1)
        probe = report.select(model, "probe")
        fpr = (probe[0].get("detection") or {}) if probe else {}
        for i, det in enumerate(detectors):
            ys = [100 * (r["detection"].get(det, {}).get("rate") or 0.0) for r in recs]
            ax.bar(x + (i - (len(detectors) - 1) / 2) * width, ys, width, label=det, color=f"C{i}")
            clean = (fpr.get(det) or {}).get("false_positive_rate")
            if clean is not None:
                ax.axhline(
                    100 * clean,
                    color=f"C{i}",
                    linestyle="--",
                    linewidth=1.2,
                    label=f"{det}: clean images flagged",
                    zorder=3,
                )
        ax.set_xticks(x, [r["label"] for r in recs], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("detected (%)")
        ax.set_title(f"{model}: detection rate of adversarial examples")
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "model"


def example_grids(report: Report, directory: Path) -> dict[str, Path]:
    """Grid PNGs of the saved example rows, keyed ``examples:<cell key>``."""
    from safetensors.torch import load_file

    from foveal.app.grids import write_grid

    out: dict[str, Path] = {}
    for i, r in enumerate(report.results):
        rel = r.get("examples")
        if not rel:
            continue
        source = report.out / rel
        if not source.is_file():
            continue
        rows_u8 = load_file(str(source))["rows"]
        rows: Sequence[Any] = [row.float() / 255.0 for row in rows_u8]
        path = directory / "examples" / f"{_slug(r['model'])}-{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_grid(list(rows), path)
        out[f"examples:{r['key']}"] = path
    return out


def render_all(report: Report, directory: Path) -> dict[str, Path]:
    """Draw every chart that the finished cells support; returns name -> PNG path."""
    out: dict[str, Path] = {}
    for name, fn in (
        ("robust_accuracy", robust_accuracy_chart),
        ("dual_heatmap", dual_heatmap),
        ("lambda", lambda_chart),
        ("transforms", transforms_chart),
        ("detection", detection_chart),
    ):
        path = fn(report, directory / f"{name}.png")
        if path is not None:
            out[name] = path
    out.update(transfer_charts(report, directory))
    out.update(example_grids(report, directory))
    return out
