"""Screenshots of the built documentation site in headless Chromium: its home page and the
configuration reference. Build the site first (`make docs`), then
`python scripts/docs_screenshots.py OUT_DIR` (needs Chromium and `pip install playwright`)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

SITE = Path(__file__).resolve().parents[1] / "site"
PAGES = {"home.png": "", "configuration.png": "configuration/"}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(out: Path) -> None:
    if not (SITE / "index.html").is_file():
        sys.exit(f"no built site in {SITE}: run `make docs` first")
    chromium = os.environ.get("R1_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Chromium (apt-get install chromium, or R1_CHROMIUM=/path/to/chrome)")
    out.mkdir(parents=True, exist_ok=True)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            for name, path in PAGES.items():
                page.goto(f"http://127.0.0.1:{server.server_port}/{path}")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(out / name))
                print(out / name)
            browser.close()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "site-screenshots"))
