"""The built-in evaluation families; importing this package registers every module in it.

``clean`` (``probe``, ``clean``), ``pgd`` (``pgd``, ``autoattack``), ``dual``, ``sip``, ``sai``,
``perceptual`` and ``transfer``: see docs/evaluate.md, "What the suite runs".
"""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
