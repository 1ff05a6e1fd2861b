"""The built-in evaluation families (docs/evaluate.md, "What the suite runs"): ``clean``
(``probe``, ``clean``), ``pgd`` (``pgd``, ``autoattack``, ``sip``, ``perceptual``), ``dual``,
``sai`` and ``transfer``. Importing this package registers every module in it."""

from __future__ import annotations

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
