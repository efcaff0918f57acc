"""Open a run's Snakemake report in a real headless browser, as a person would, and keep what it shows.

    snakemake --cores 2 --config data_dir=... experiment=bench-scifact --report results/bench-scifact/report.html
    python benchmarks/report_screenshots.py results/bench-scifact/report.html --out docs/report \
        --json benchmarks/results/report-screenshots.json

Chromium (Debian's ``chromium`` package) loads the report; for each view a small script appended to a copy
of the page clicks through the menu (a category, then a result's "eye" button) before the screenshot, so the
pictures are the report's own rendering (its JavaScript app, the embedded figures), not the figure files.
The rendered DOM of each view is checked for what it must show; the JSON records the checks and the files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

# (picture name, menu entry, result to open or None, texts the rendered page must hold)
VIEWS = [
    ("report-home.png", None, None, ["Iterative knowledge distillation", "Quality", "Summary", "Training", "Statistics"]),
    ("report-summary.png", "Summary", "summary.html", ["summary.html"]),
    ("report-ndcg.png", "Quality", "ndcg-per-iteration.svg", ["ndcg-per-iteration.svg"]),
    ("report-quality-speed.png", "Quality", "quality-speed.svg", ["quality-speed.svg"]),
    ("report-training.png", "Training", "training-curves.svg", ["training-curves.svg"]),
    ("report-statistics.png", "Statistics", None, ["Runtimes"]),
]

CLICKS = """<script>
function byText(text) {
  for (const e of document.querySelectorAll("a, td")) { if (e.textContent.trim() === text) return e; }
  for (const e of document.querySelectorAll("a, td")) { if (e.childElementCount === 0 && e.textContent.trim().endsWith(text)) return e; }
  return null;
}
window.addEventListener("load", () => setTimeout(() => {
  const menu = MENU, result = RESULT;
  if (menu) { const e = byText(menu); if (e) e.click(); }
  setTimeout(() => {
    if (!result) return;
    const cell = byText(result);
    const eye = cell && cell.parentElement.querySelector('a[iconname="eye"]');
    if (eye) eye.click();
  }, 1500);
}, 1500));
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no Chromium: apt-get install chromium")


def render(page: Path, picture: Path | None, size: str = "1400,900") -> str:
    """Load ``page`` headless (its scripts get 10 s of virtual time); screenshot it to ``picture``; return
    the rendered DOM."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=10000", f"--window-size={size}"]
    if picture:
        subprocess.run([*base, f"--screenshot={picture}", page.as_uri()], check=True, capture_output=True, timeout=180)
    return subprocess.run([*base, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True,
                          timeout=180).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    page = args.report.read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    results, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for picture, menu, result, must_show in VIEWS:
            script = CLICKS.replace("MENU", json.dumps(menu)).replace("RESULT", json.dumps(result))
            view = Path(tmp) / f"{picture}.html"
            cut = page.rindex("</body>")
            view.write_text(page[:cut] + script + page[cut:])
            dom = render(view, args.out / picture)
            missing = [text for text in must_show if text not in dom]
            # an opened figure is shown inline: its <img>/<object> (or an iframe for HTML) is in the DOM
            shown = result is None or any(tag in dom for tag in ("<img", "<iframe", "<object", "<svg"))
            ok &= not missing and shown
            results.append({"view": picture, "menu": menu, "opened": result, "missing": missing,
                            "dom_bytes": len(dom), "screenshot_bytes": (args.out / picture).stat().st_size})
            print(f"{picture}: {'ok' if not missing and shown else 'MISSING ' + ', '.join(missing)}")
    version = subprocess.run([chromium(), "--version"], capture_output=True, text=True).stdout.strip()
    if args.json:
        args.json.write_text(json.dumps({"report": str(args.report), "browser": version, "views": results,
                                         "all_shown": ok}, indent=2) + "\n")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
