"""Open every page of the built site in headless Chromium, as a reader would.

The test builds nothing: run `make book` first (`make test` does). It serves
_build/html on localhost, blocks every request that leaves the machine (the site
must work with no network), and for each page in _toc.yml asserts its title, its
figures loaded, no error output, its math typeset and no JavaScript errors. A
full-page screenshot of each page goes to _build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import os
import pathlib
import shutil
import threading
import urllib.request

import pytest
import yaml
from notebook_hygiene import toc_files

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
# Debian's chromium by default; CHROMIUM names another Chromium-based browser.
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
PAGES = toc_files(ROOT / "_toc.yml")
# Flags for a root, headless Chromium on a machine with no network: without the
# background-networking ones it tries to reach Google's services at every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        message = f"no built site in {SITE.relative_to(ROOT)}: run `make book` first"
        if os.environ.get("CI"):
            pytest.fail(message + " (under CI, `make test` builds it)")
        pytest.skip(message)
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not pathlib.Path(CHROMIUM).is_file():
        message = (
            f"Chromium is not installed ({CHROMIUM} not found), so the browser test cannot run. "
            "Install Debian's package with `sudo apt-get install chromium` (make test does this "
            "when run as root), or point CHROMIUM at another Chromium-based browser."
        )
        if os.environ.get("CI"):
            pytest.fail(message + " Under CI the browser test must run.")
        pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, url):
    """Load a page with every off-machine request blocked; return (page, blocked, js_errors)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    js_errors: list[str] = []

    def route(r):
        if r.request.url.startswith("http://127.0.0.1:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.goto(url, wait_until="load")
    return page, blocked, js_errors


@pytest.mark.parametrize("entry", PAGES)
def test_page_renders(browser, site_url, entry):
    page, blocked, js_errors = _open(browser, f"{site_url}/{entry}.html")
    try:
        heading = page.locator("main h1").first.inner_text().strip().rstrip("#").strip()
        assert heading, f"{entry}: the page has no title heading"
        assert page.title().startswith(heading), f"{entry}: <title> {page.title()!r} does not start with {heading!r}"

        # Figures: every image in the page body decoded, none broken.
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('main img')).every(i => i.complete)", timeout=15_000
        )
        broken = page.eval_on_selector_all(
            "main img", "imgs => imgs.filter(i => i.naturalWidth === 0).map(i => i.src)"
        )
        assert not broken, f"{entry}: images failed to load: {broken}"

        # No error output, except in cells tagged raises-exception (a seed's code run as
        # published, where the error is the lesson).
        errors = page.eval_on_selector_all(
            "main .output.traceback, main .output.error",
            "outs => outs.filter(o => !o.closest('.tag_raises-exception')).map(o => o.innerText)",
        )
        assert not errors, f"{entry}: error output outside raises-exception cells: {errors[:1]}"

        # Math: every formula typeset by the site's own MathJax, with no TeX errors.
        n_math = page.locator("main .math").count()
        if n_math:
            page.wait_for_function(
                "n => document.querySelectorAll('main mjx-container').length >= n", arg=n_math, timeout=30_000
            )
            assert page.locator("main mjx-merror, main mjx-container [data-mjx-error]").count() == 0, (
                f"{entry}: MathJax reported a TeX error"
            )

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{entry.replace('/', '__')}.png"), full_page=True)
        assert not js_errors, f"{entry}: JavaScript errors: {js_errors}"
        assert not blocked, f"{entry}: the page tried to fetch from the network: {blocked}"
    finally:
        page.close()


def test_preface_has_figure_math_and_notebook_buttons(browser, site_url):
    """The preface shows a plotted figure and typeset math, and offers its notebook
    for download and to open in Colab (its Colab edition, colab/) and Binder at the
    configured repository."""
    page, blocked, _ = _open(browser, f"{site_url}/notebooks/00_preface.html")
    try:
        assert page.locator("main img").count() >= 1
        assert page.eval_on_selector_all("main img", "imgs => imgs.every(i => i.naturalWidth > 100)")
        page.wait_for_function("() => document.querySelectorAll('main mjx-container').length > 0", timeout=30_000)
        hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.href)")
        owner_repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
        branch = CONFIG["repository"]["branch"]
        assert any(
            f"colab.research.google.com/github/{owner_repo}/blob/{branch}/colab/00_preface.ipynb" in h
            for h in hrefs
        )
        assert any(f"mybinder.org/v2/gh/{owner_repo}/{branch}" in h for h in hrefs)
        download = [h for h in hrefs if h.endswith("00_preface.ipynb") and h.startswith(site_url)]
        assert download, "no download link for the notebook"
        with urllib.request.urlopen(download[0], timeout=10) as response:
            assert b'"cells"' in response.read()
        assert not blocked
    finally:
        page.close()
