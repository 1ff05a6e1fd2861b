"""``foveal evaluate``: one command, one unsuspicious-robustness report.

The suite (per model): clean accuracy; PGD Linf and L2 over an eps grid; the dual-perturbation
attack over an eps_F x eps_B grid and a lambda sweep with the foreground score of its examples
(seed 000); SAI-FGM vs I-FGM over the delta grid, plain and after each input transform
(gray-box, seed 001); PGD with the salient pixels frozen (SIP, seed 003); the perceptual ball
(seed 004); optionally AutoAttack, transfer from surrogate models and detection rates.

Pieces (one responsibility each):

- :mod:`~foveal.app.evaluation.family` — the plug-in interface: a :class:`Family` owns one kind
  of cell (its config section, cells, computation, headline group, sanity checks, charts and
  HTML section); :mod:`~foveal.app.evaluation.families` holds the built-in ones;
- :mod:`~foveal.app.evaluation.config` — presets and the validated config (YAML/JSON/TOML);
- :mod:`~foveal.app.evaluation.suite` — the cells a config describes, and their keys;
- :mod:`~foveal.app.evaluation.cells` — running and measuring an attack on the images;
- :mod:`~foveal.app.evaluation.runner` — resumable, atomic ``results.jsonl``;
- :mod:`~foveal.app.evaluation.results`, :mod:`~foveal.app.evaluation.report` — typed records,
  the :class:`Report` (queries, headline, sanity checks, summary);
- :mod:`~foveal.app.evaluation.sanity` — AutoAttack-style warnings with docs links;
- :mod:`~foveal.app.evaluation.render`, :mod:`~foveal.app.evaluation.draw` — the PNG charts and
  ``report.html``.

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

from foveal.app.evaluation import families as _families  # noqa: F401 - registers the built-ins
from foveal.app.evaluation.api import evaluate
from foveal.app.evaluation.config import FAMILIES, EvaluateConfig, build_config, load_config_file
from foveal.app.evaluation.family import Cell, Curve, Family, register
from foveal.app.evaluation.models import Detector, default_models
from foveal.app.evaluation.report import Report, sanity_checks
from foveal.app.evaluation.results import Record
from foveal.app.evaluation.sanity import SanityWarning
from foveal.app.evaluation.suite import build_suite

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
