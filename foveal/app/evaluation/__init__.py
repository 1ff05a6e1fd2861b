"""``foveal evaluate``: one command, one unsuspicious-robustness report.

The suite (per model): clean accuracy; PGD Linf and L2 over an eps grid; the dual-perturbation
attack over an eps_F x eps_B grid and a lambda sweep with the foreground score of its examples
(Tong et al. 2020); SAI-FGM vs I-FGM over the delta grid, plain and after each input transform
(gray-box, Dong et al. 2020); PGD with the salient pixels frozen (SIP, Redgrave & Czajka 2024); the
perceptual ball (Elliott et al. 2019); optionally AutoAttack, transfer from surrogate models and
detection rates.

Each kind of cell is a :class:`Family` (:mod:`~foveal.app.evaluation.family`; the built-in ones
in :mod:`~foveal.app.evaluation.families`). The rest: :mod:`~foveal.app.evaluation.config` (the
validated config),
:mod:`~foveal.app.evaluation.cells` (running and measuring attacks),
:mod:`~foveal.app.evaluation.runner` (resumable ``results.jsonl``),
:mod:`~foveal.app.evaluation.results` and :mod:`~foveal.app.evaluation.report` (records, the
:class:`Report`), :mod:`~foveal.app.evaluation.sanity` (warnings) and
:mod:`~foveal.app.evaluation.render` (charts and ``report.html``).

Example::

    from foveal.app.evaluation import Report, evaluate

    report = evaluate(["runs/std", "runs/madry"], "shapes", out="runs/eval")
    print(report.table())
    report = Report.load("runs/eval")      # later: the same results, re-read from disk
    report.render()                        # charts, report.html, summary.json again
"""

from __future__ import annotations

import foveal.app.evaluation.families  # noqa: F401 - registers the built-in families
from foveal.app.evaluation.api import evaluate
from foveal.app.evaluation.config import FAMILIES, EvaluateConfig, build_config, load_config_file
from foveal.app.evaluation.family import Cell, Curve, Family, build_suite, register
from foveal.app.evaluation.models import Detector, default_models
from foveal.app.evaluation.report import Report, sanity_checks
from foveal.app.evaluation.results import Record
from foveal.app.evaluation.sanity import SanityWarning

__all__ = [
    "FAMILIES",
    "Cell",
    "Curve",
    "Detector",
    "EvaluateConfig",
    "Family",
    "Record",
    "Report",
    "SanityWarning",
    "build_config",
    "build_suite",
    "default_models",
    "evaluate",
    "load_config_file",
    "register",
    "sanity_checks",
]
