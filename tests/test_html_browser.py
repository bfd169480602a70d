"""The HTML report in a real browser: headless Chromium loads it, every image decodes, the
page logs no error, and a screenshot is kept (``$VAE_BENCH_ARTIFACTS`` or the test's
temporary directory)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from vae_bench.report.html import write_html_report

DATA = Path(__file__).parent / "data"
BROWSER = next((b for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="Debian's chromium package is not installed (CI installs it)"
)

#: Added to a copy of the report only: records load errors and console errors, then the
#: state of every image, into the DOM that ``--dump-dom`` prints.
PROBE = """<script>
const problems = [];
window.addEventListener("error", e => problems.push("error: " + (e.message ||
    (e.target && e.target.tagName) || "?")), true);
const consoleError = console.error;
console.error = (...args) => { problems.push("console: " + args.join(" "));
                               consoleError(...args); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = `images=${images.length} broken=${broken} problems=${problems.length} `
                    + problems.join(" | ");
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", "--virtual-time-budget=10000", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_report_opens_in_chromium_with_every_image_and_no_error(tmp_path: Path) -> None:
    run = tmp_path / "paper"
    run.mkdir()
    results = pd.read_csv(DATA / "results_paper.csv", keep_default_na=False, na_values=[""])
    results.to_csv(run / "results.csv", index=False)
    report = write_html_report(run)
    text = report.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</head>", PROBE + "</head>", 1))

    dom = _chromium("--dump-dom", probed.as_uri())
    found = re.search(r"images=(\d+) broken=(\d+) problems=(\d+) ?(.*?)</pre>", dom.stdout)
    assert found, f"no probe result; chromium said: {dom.stderr[-2000:]}"
    images, broken, problems, what = found.groups()
    assert int(images) == text.count("<img ") > 0
    assert int(broken) == 0
    assert int(problems) == 0, what

    artifacts = Path(os.environ.get("VAE_BENCH_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report_screenshot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
