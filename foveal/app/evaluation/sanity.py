"""Sanity checks in the manner of AutoAttack: signs that an evaluation cannot be trusted.

Each check reads only the records of ``results.jsonl`` (the ``probe`` cell of each model holds
the measurements the model-level checks need), so a report re-rendered from disk shows the same
warnings. Every warning names its check, whose section in ``docs/evaluate.md`` (the anchor of
the same name) explains the cause and what to do:

- ``vanishing-gradients``: some images have an all-zero input gradient (gradient masking,
  quantisation, a detached input); gradient attacks then fail without the model being robust.
- ``probabilities``: the model returns probabilities instead of logits (rows in [0,1] summing to
  1); cross-entropy on them saturates and attacks are weakened.
- ``randomized-model``: two forward passes on the same input differ; use attacks with an
  expectation over the randomness (AutoAttack's ``rand`` version, the dual attack's EOT).
- ``non-finite-outputs``: NaN or infinite logits.
- ``accuracy-rises-with-eps``: robust accuracy increases with the budget along a sweep (a larger
  set contains the smaller one, so a working attack cannot do worse).
- ``weaker-attack-wins``: an attack on a subset of another attack's set (SIP, dual, perceptual
  vs PGD; I-FGM and SAI-FGM vs PGD L2; PGD vs AutoAttack), or a black-box transfer attack,
  lowers the accuracy more than the stronger white-box attack.

A difference is reported only if it exceeds ``max(0.02, 3 / n)`` on ``n`` images and, where the
records hold per-image correctness, McNemar's test on the images where the two cells disagree
rejects chance at the 5% level (``(b - c)^2 / (b + c) > 3.84``), so attack noise on a few
images does not raise a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKS",
    "DOCS_PAGE",
    "SanityWarning",
    "docs_link",
    "sanity_checks",
    "significant",
    "tolerance",
]

#: The page the warnings link to (anchors are the check names).
DOCS_PAGE = "docs/evaluate.md"

#: Check name -> one-line description (the docs explain each under the same anchor).
CHECKS = {
    "vanishing-gradients": "input gradients vanish on some images",
    "probabilities": "the model outputs probabilities, not logits",
    "randomized-model": "the model's outputs are random",
    "non-finite-outputs": "the model outputs NaN or infinite values",
    "accuracy-rises-with-eps": "robust accuracy rises with the budget",
    "weaker-attack-wins": "a weaker or black-box attack beats a stronger white-box attack",
}


@dataclass(frozen=True)
class SanityWarning:
    """One failed check: its name (the docs anchor), the model and what was observed."""

    check: str
    model: str
    message: str

    @property
    def anchor(self) -> str:
        return f"{DOCS_PAGE}#{self.check}"

    def __str__(self) -> str:
        return f"[{self.model}] {self.message} (see {self.anchor})"

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "model": self.model,
            "message": self.message,
            "docs": self.anchor,
        }


def docs_link(check: str) -> str:
    """A link to the docs section of ``check``: the local file when it exists, else its path."""
    local = Path(__file__).resolve().parents[3] / DOCS_PAGE
    if local.is_file():
        return f"{local.as_uri()}#{check}"
    return f"{DOCS_PAGE}#{check}"


def tolerance(n: int) -> float:
    """Accuracy differences at or below this are treated as sampling noise."""
    return max(0.02, 3.0 / max(n, 1))


def significant(low: str | None, high: str | None) -> bool:
    """McNemar's test that the cell with per-image correctness ``low`` (the lower accuracy)
    really beats the one with ``high``: ``b`` images only it gets wrong, ``c`` only the other.
    Without both strings (of equal length) only the accuracy tolerance applies: True."""
    if not low or not high or len(low) != len(high):
        return True
    b = sum(1 for lo, hi in zip(low, high, strict=True) if lo == "0" and hi == "1")
    c = sum(1 for lo, hi in zip(low, high, strict=True) if lo == "1" and hi == "0")
    return b > c and (b - c) ** 2 / (b + c) > 3.84


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _acc(record: dict[str, Any]) -> float | None:
    value = record.get("metrics", {}).get("accuracy")
    return None if value is None else float(value)


def _probe_checks(record: dict[str, Any]) -> list[SanityWarning]:
    m, model = record.get("metrics", {}), record["model"]
    out = []
    zero = m.get("zero_gradient_fraction")
    if zero:
        out.append(
            SanityWarning(
                "vanishing-gradients",
                model,
                f"{_pct(zero)} of {m.get('images')} probed images have an all-zero input "
                "gradient of the cross-entropy loss; gradient-based attacks cannot make progress "
                "there, so their robust accuracy overstates robustness",
            )
        )
    if m.get("looks_like_probabilities"):
        out.append(
            SanityWarning(
                "probabilities",
                model,
                f"the outputs lie in [{m.get('output_min'):.3g}, {m.get('output_max'):.3g}] and "
                "each row sums to 1: the model seems to return probabilities; attacks need "
                "logits (remove the final softmax)",
            )
        )
    nondet = m.get("nondeterminism") or 0.0
    scale = max(1.0, abs(m.get("output_max") or 0.0), abs(m.get("output_min") or 0.0))
    if nondet > 1e-5 * scale:
        out.append(
            SanityWarning(
                "randomized-model",
                model,
                f"two forward passes on the same images differ by up to {nondet:.3g}: the model "
                "is randomised, so single-sample gradients are noisy; evaluate it with "
                "expectation over the randomness (EOT)",
            )
        )
    if m.get("finite") is False:
        out.append(
            SanityWarning(
                "non-finite-outputs",
                model,
                "the model returns NaN or infinite values on clean images",
            )
        )
    return out


Point = tuple[float, float, str, str | None]


def _series_warning(model: str, name: str, points: list[Point], tol: float) -> SanityWarning | None:
    """points: (budget, accuracy, budget text, correct). Warn about the largest significant
    rise of the accuracy with the budget."""
    points = sorted(points, key=lambda p: (p[0], p[1]))
    worst: tuple[float, int, int] | None = None
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if points[j][0] <= points[i][0]:
                continue
            rise = points[j][1] - points[i][1]
            if rise <= tol or not significant(points[i][3], points[j][3]):
                continue
            if worst is None or rise > worst[0]:
                worst = (rise, i, j)
    if worst is None:
        return None
    _, i, j = worst
    return SanityWarning(
        "accuracy-rises-with-eps",
        model,
        f"{name}: accuracy {_pct(points[j][1])} at {points[j][2]} is higher than "
        f"{_pct(points[i][1])} at {points[i][2]}; a larger budget cannot help a working attack",
    )


def _eps_text(value: float, norm: str = "linf") -> str:
    from foveal.app.evaluation.config import budget_label

    return budget_label(value, norm)


def _series(records: Sequence[dict[str, Any]], tol: float) -> list[SanityWarning]:
    groups: dict[tuple[Any, ...], list[Point]] = {}
    names: dict[tuple[Any, ...], str] = {}

    def add(group: tuple[Any, ...], name: str, point: Point) -> None:
        groups.setdefault(group, []).append(point)
        names[group] = name

    for r in records:
        acc = _acc(r)
        if acc is None:
            continue
        s, fam, model = r.get("settings", {}), r["family"], r["model"]
        correct = r.get("correct")
        if fam in ("pgd", "autoattack"):
            norm = s["norm"]
            label = "PGD" if fam == "pgd" else "AutoAttack"
            point = (s["eps"], acc, _eps_text(s["eps"], norm), correct)
            add((model, fam, norm), f"{label} {norm}", point)
        elif fam in ("sip", "perceptual"):
            add((model, fam), fam, (s["eps"], acc, _eps_text(s["eps"]), correct))
        elif fam == "sai":
            point = (s["delta"], acc, f"delta={s['delta']:g}", correct)
            add((model, fam, s["attack"]), s["attack"], point)
        elif fam == "dual":
            norm = s["norm"]
            fixed = (s["lam"], s["steps"], s["masks"], norm)
            add(
                (model, fam, "fg", s["eps_bg"], *fixed),
                f"dual (eps_B={_eps_text(s['eps_bg'], norm)}, lam={s['lam']:g})",
                (s["eps_fg"], acc, f"eps_F={_eps_text(s['eps_fg'], norm)}", correct),
            )
            add(
                (model, fam, "bg", s["eps_fg"], *fixed),
                f"dual (eps_F={_eps_text(s['eps_fg'], norm)}, lam={s['lam']:g})",
                (s["eps_bg"], acc, f"eps_B={_eps_text(s['eps_bg'], norm)}", correct),
            )
    out = []
    for group, points in groups.items():
        warning = _series_warning(group[0], names[group], points, tol)
        if warning is not None:
            out.append(warning)
    return out


def _containing(pgd: list[dict[str, Any]], norm: str, bound: float) -> dict[str, Any] | None:
    """The PGD cell of ``norm`` with the smallest budget >= ``bound``."""
    fits = [
        r for r in pgd if r["settings"]["norm"] == norm and r["settings"]["eps"] >= bound - 1e-9
    ]
    return min(fits, key=lambda r: r["settings"]["eps"]) if fits else None


def _weaker_wins(records: Sequence[dict[str, Any]], tol: float) -> list[SanityWarning]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_model.setdefault(r["model"], []).append(r)
    out: list[SanityWarning] = []

    def compare(
        model: str,
        weak: tuple[str, float, str | None],
        strong: dict[str, Any] | None,
        why: str,
    ) -> None:
        weak_label, weak_acc, weak_correct = weak
        if strong is None:
            return
        strong_acc = _acc(strong)
        if strong_acc is None or weak_acc >= strong_acc - tol:
            return
        if not significant(weak_correct, strong.get("correct")):
            return
        out.append(
            SanityWarning(
                "weaker-attack-wins",
                model,
                f"{weak_label} leaves {_pct(weak_acc)} accuracy, less than "
                f"{strong['label']} ({_pct(strong_acc)}), although {why}",
            )
        )

    for model, recs in by_model.items():
        pgd = [r for r in recs if r["family"] == "pgd" and _acc(r) is not None]
        for r in recs:
            acc, s, fam = _acc(r), r.get("settings", {}), r["family"]
            if acc is None:
                continue
            why = "its perturbations lie inside the stronger attack's set"
            weak = (r["label"], acc, r.get("correct"))
            if fam in ("sip", "perceptual"):
                compare(model, weak, _containing(pgd, "linf", s["eps"]), why)
            elif fam == "dual" and s["norm"] == "linf":
                bound = max(s["eps_fg"], s["eps_bg"])
                compare(model, weak, _containing(pgd, "linf", bound), why)
            elif fam == "sai":
                budget = r.get("metrics", {}).get("l2_budget")
                if budget is not None:
                    compare(model, weak, _containing(pgd, "l2", budget), why)
            elif fam == "pgd":
                matches = [
                    a
                    for a in recs
                    if a["family"] == "autoattack"
                    and a["settings"]["norm"] == s["norm"]
                    and abs(a["settings"]["eps"] - s["eps"]) < 1e-9
                ]
                aa_why = "AutoAttack includes a stronger PGD (APGD)"
                compare(model, weak, matches[0] if matches else None, aa_why)
    pgd_all = [r for r in records if r["family"] == "pgd" and _acc(r) is not None]
    for r in records:
        if r["family"] != "transfer":
            continue
        s = r["settings"]
        bound = s["eps"] if s["attack"] == "pgd" else max(s["eps_fg"], s["eps_bg"])
        for target, res in (r.get("targets") or {}).items():
            if target == r["model"] or res.get("accuracy") is None:
                continue
            strong = _containing([p for p in pgd_all if p["model"] == target], "linf", bound)
            compare(
                target,
                (f"black-box {r['label']}", float(res["accuracy"]), res.get("correct")),
                strong,
                "white-box PGD on the target itself should be stronger than transfer",
            )
    return out


def sanity_checks(records: Sequence[dict[str, Any]], *, n: int) -> list[SanityWarning]:
    """All warnings for the records of one run (``n``: the number of evaluation images)."""
    tol = tolerance(n)
    out: list[SanityWarning] = []
    for r in records:
        if r["family"] == "probe":
            out.extend(_probe_checks(r))
    out.extend(_series(records, tol))
    out.extend(_weaker_wins(records, tol))
    return out
