"""``foveal evaluate``: one command, one unsuspicious-robustness report.

The suite (per model): clean accuracy; PGD Linf and L2 over an eps grid; the dual-perturbation
attack over an eps_F x eps_B grid and a lambda sweep with the foreground score of its examples
(seed 000); SAI-FGM vs I-FGM over the delta grid, plain and after each input transform
(gray-box, seed 001); PGD with the salient pixels frozen (SIP, seed 003); the perceptual ball
(seed 004); optionally AutoAttack, transfer from surrogate models and detection rates.

Pieces (one responsibility each):

- :mod:`~foveal.app.evaluation.config` — presets and the validated config (YAML/JSON/TOML);
- :mod:`~foveal.app.evaluation.suite` — the cells a config describes, and their keys;
- :mod:`~foveal.app.evaluation.cells` — computing one cell;
- :mod:`~foveal.app.evaluation.runner` — resumable, atomic ``results.jsonl``;
- :mod:`~foveal.app.evaluation.sanity` — AutoAttack-style warnings with docs links;
- :mod:`~foveal.app.evaluation.report`, :mod:`~foveal.app.evaluation.charts`,
  :mod:`~foveal.app.evaluation.html` — the :class:`Report`, its PNG charts and ``report.html``.

Example::

    import foveal
    from foveal.app.evaluation import Report

    report = evaluate(["runs/std", "runs/madry"], "shapes", out="runs/eval")
    print(report.table())
    report = Report.load("runs/eval")      # later: the same results, re-read from disk
    report.render()                        # charts, report.html, summary.json again

``foveal.app.evaluation`` (the attribute of the top-level package) is the function; import the
module's other names from ``foveal.app.evaluation`` as above.
"""

from __future__ import annotations

from foveal.app.evaluation.api import evaluate
from foveal.app.evaluation.config import EvaluateConfig, build_config, load_config_file
from foveal.app.evaluation.models import Detector, default_models
from foveal.app.evaluation.report import Report
from foveal.app.evaluation.sanity import SanityWarning, sanity_checks
from foveal.app.evaluation.suite import Cell, build_suite

__all__ = [
    "Cell",
    "Detector",
    "EvaluateConfig",
    "Report",
    "SanityWarning",
    "build_config",
    "build_suite",
    "default_models",
    "evaluate",
    "load_config_file",
    "sanity_checks",
]
