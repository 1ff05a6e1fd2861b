"""Sanity checks in the manner of AutoAttack: signs that an evaluation cannot be trusted.

Each check reads only the records (the ``probe`` cell of each model holds what the model-level
checks need), so a report re-rendered from disk shows the same warnings. Every warning names its
check (:data:`CHECKS`), whose section in ``docs/evaluate.md`` (the anchor of the same name)
explains the cause and what to do. The families say what to compare (``Family.warnings``,
``series`` and ``stronger``); this module says when a difference counts and words the warning:
only if it exceeds ``max(0.02, 3 / n)`` on ``n`` images and, where the records hold per-image
correctness, McNemar's test on the images where the two cells disagree rejects chance at the 5%
level (``(b - c)^2 / (b + c) > 3.84``), so attack noise on a few images raises no warning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from foveal.app.evaluation.results import Record

__all__ = [
    "CHECKS",
    "Comparison",
    "Point",
    "SanityWarning",
    "docs_link",
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
        return {**asdict(self), "docs": self.anchor}


class Point(NamedTuple):
    """One cell of a budget series: its budget, accuracy, budget text and per-image results."""

    budget: float
    accuracy: float
    text: str
    correct: str | None


@dataclass(frozen=True)
class Comparison:
    """A weaker attack (``label``: ``accuracy`` on ``model``) and the cell whose set contains
    it (``stronger``; None: no such cell ran), with the reason it should not win."""

    model: str
    label: str
    accuracy: float
    correct: str | None
    stronger: Record | None
    why: str


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


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def series_warning(model: str, name: str, points: list[Point], tol: float) -> SanityWarning | None:
    """Warn about the largest significant rise of the accuracy with the budget."""
    points = sorted(points, key=lambda p: (p.budget, p.accuracy))
    worst: tuple[float, int, int] | None = None
    for i in range(len(points)):
        for j in range(i + 1, len(points)):
            if points[j].budget <= points[i].budget:
                continue
            rise = points[j].accuracy - points[i].accuracy
            if rise <= tol or not significant(points[i].correct, points[j].correct):
                continue
            if worst is None or rise > worst[0]:
                worst = (rise, i, j)
    if worst is None:
        return None
    _, i, j = worst
    return SanityWarning(
        "accuracy-rises-with-eps",
        model,
        f"{name}: accuracy {pct(points[j].accuracy)} at {points[j].text} is higher than "
        f"{pct(points[i].accuracy)} at {points[i].text}; a larger budget cannot help a working "
        "attack",
    )


def comparison_warning(c: Comparison, tol: float) -> SanityWarning | None:
    """Warn when the weaker attack of ``c`` significantly beats the stronger one."""
    strong_acc = None if c.stronger is None else c.stronger.accuracy
    if c.stronger is None or strong_acc is None or c.accuracy >= strong_acc - tol:
        return None
    if not significant(c.correct, c.stronger.correct):
        return None
    return SanityWarning(
        "weaker-attack-wins",
        c.model,
        f"{c.label} leaves {pct(c.accuracy)} accuracy, less than {c.stronger.label} "
        f"({pct(strong_acc)}), although {c.why}",
    )
