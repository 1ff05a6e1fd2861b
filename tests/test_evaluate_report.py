"""``foveal evaluate --quick`` on the built-in models, and its report in headless Chromium.

The quick models are trained once into the test cache (``FOVEAL_CACHE``, about a minute on two
cores) and reused afterwards. The browser test needs Debian's ``chromium``: without it the test
is skipped, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foveal.app.cli import app

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)

#: Appended to a copy of the page: marks the body with the number of images and broken ones.
PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", String(broken.length));
});
</script>"""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("quick")
    args = ["evaluate", "--quick", "--n", "24", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quick_run_writes_the_report(quick_run) -> None:
    out, output = quick_run
    assert "unsuspicious" in output and "report.html" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["preset"] == "quick"
    rows = {r["model"]: r for r in summary["headline"]}
    assert set(rows) == {"standard", "madry"}
    # Adversarial training helps against standard PGD (the quick models are small).
    assert (
        rows["madry"]["pgd"]["worst_case_accuracy"]
        >= rows["standard"]["pgd"]["worst_case_accuracy"]
    )
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"robust_accuracy.png", "dual_heatmap.png", "lambda.png", "transforms.png"} <= figures
    rerun = CliRunner().invoke(app, ["evaluate", "--quick", "--n", "24", "--out", str(out)])
    assert rerun.exit_code == 0 and "0 cells computed" in rerun.output


def _chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is required under CI=true (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return CHROMIUM


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _loaded(tmp_path: Path, page: str, name: str) -> tuple[str, int, int]:
    path = tmp_path / name
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _browser(tmp_path, "--virtual-time-budget=10000", "--dump-dom", path.as_uri()).stdout
    found = re.search(r'data-images="(\d+)"\s+data-broken="(\d+)"', dom)
    assert found, f"the probe did not run; chromium printed: {dom[:500]!r}"
    return dom, int(found.group(1)), int(found.group(2))


def test_report_renders_in_headless_chromium(quick_run, tmp_path: Path) -> None:
    out, _ = quick_run
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "http" not in page.split("<body>")[0]
    dom, images, broken = _loaded(tmp_path, page, "report.html")
    assert images >= 10 and broken == 0
    headline = re.search(r'<table class="headline" id="headline">(.*?)</table>', dom, re.S)
    assert headline and "standard" in headline.group(1) and "madry" in headline.group(1)
    # The probe does notice a broken image.
    bad = page.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    _, _, broken_bad = _loaded(tmp_path, bad, "broken.html")
    assert broken_bad == 1
    shot = tmp_path / "report.png"
    result = _browser(
        tmp_path, f"--screenshot={shot}", "--window-size=1400,4000", (out / "report.html").as_uri()
    )
    assert shot.is_file() and shot.stat().st_size > 50_000, result.stderr[-500:]
