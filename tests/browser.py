"""Open rendered HTML pages in headless Chromium (playwright) and list what is broken on them."""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

BROKEN_IMAGES = "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.getAttribute('src'))"
LINKS = "els => els.map(e => e.href)"
WIDTH = 1280  # a laptop's browser window: every page must read at this width without sideways scrolling
# What does not fit: the page itself, any scrolling box (a table wider than the page), and any figure shown at less
# than half its size (its numbers and labels would be too small to read).
SIDEWAYS = """() => {
  const found = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) found.push(`the page is ${root.scrollWidth} px wide`);
  for (const box of document.querySelectorAll('main *')) {
    if (box.scrollWidth > box.clientWidth + 1 && getComputedStyle(box).overflowX !== 'visible')
      found.push(`a ${box.tagName.toLowerCase()} scrolls sideways (${box.scrollWidth} px in ${box.clientWidth})`);
  }
  for (const img of document.querySelectorAll('img'))
    if (img.complete && img.clientWidth < 0.5 * img.naturalWidth)
      found.push(`${img.getAttribute('src')} is shown at ${Math.round(100 * img.clientWidth / img.naturalWidth)}% of its size`);
  return found;
}"""


def require_chromium() -> None:
    """Skip the calling test when no Chromium is usable; fail instead where REQUIRE_CHROMIUM=1 (CI)."""
    import pytest

    if chromium_available():
        return
    message = f"no headless Chromium usable through playwright ({CHROMIUM}); install Debian's chromium"
    if os.environ.get("REQUIRE_CHROMIUM") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


@functools.cache
def chromium_available() -> bool:
    """True if playwright is installed and can start the local Chromium."""
    try:
        from playwright.sync_api import sync_playwright
        with sync_playwright() as p:
            _launch(p).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable browser here
        return False


def _missing_local_target(href: str) -> str | None:
    url = urlsplit(href)
    if url.scheme == "file" and not Path(unquote(url.path)).exists():
        return unquote(url.path)
    return None


def check_pages(html_paths) -> list[str]:
    """Problems found on the pages (empty if none): load failures, broken images, console errors,
    requests that leave the local disk, links to local files that do not exist, and what does not fit a window
    WIDTH pixels wide (SIDEWAYS)."""
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as p:
        browser = _launch(p)
        for path in map(Path, html_paths):
            name = path.name
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on("console", lambda m, n=name: problems.append(f"{n}: console error: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e, n=name: problems.append(f"{n}: script error: {e}"))
            page.on("request", lambda r, n=name: problems.append(f"{n}: non-local request: {r.url}")
                    if not r.url.startswith(("file:", "data:", "about:")) else None)
            try:
                page.goto(path.resolve().as_uri(), wait_until="load", timeout=30_000)
            except Exception as e:  # noqa: BLE001 - report it, go on with the next page
                problems.append(f"{name}: failed to load: {e}")
                page.close()
                continue
            problems += [f"{name}: broken image: {src}" for src in page.eval_on_selector_all("img", BROKEN_IMAGES)]
            for href in page.eval_on_selector_all("a[href]", LINKS):
                if target := _missing_local_target(href):
                    problems.append(f"{name}: link to missing file: {target}")
            problems += [f"{name} at {WIDTH} px: {problem}" for problem in page.evaluate(SIDEWAYS)]
            page.close()
        browser.close()
    return problems


# Clicks the first column after the arm's (router, k and reference router and k) and reads its cells.
SORTABLE = """tables => tables.map(table => {
    const overflows = table.parentElement.scrollWidth > table.parentElement.clientWidth + 1;
    const headers = [...table.querySelectorAll('thead th')];
    const first = headers.findIndex(h => !['router', 'k', 'reference', 'reference k'].includes(h.textContent.trim()));
    headers[first].click();
    const sorted = [...table.tBodies[0].rows].map(row => row.cells[first].textContent.trim());
    return {overflows, sorted};
})"""


def sortable_tables(html_path, width: int = WIDTH) -> list[dict]:
    """Per sortable table of a page shown `width` pixels wide: whether it overflows its container sideways, and
    its first metric column's cells after a click on that column's header."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(Path(html_path).resolve().as_uri(), wait_until="load", timeout=30_000)
        tables = page.eval_on_selector_all("table.sortable", SORTABLE)
        browser.close()
    return tables
