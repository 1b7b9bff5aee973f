"""The JSON tab's live trees in headless Chromium against the shared CPU app: the
constrained side's partial document is redrawn while the run streams, not only at its end,
and the free side says where it left JSON.

PLAYGROUND_SCREENSHOTS=1 refreshes docs/screenshots/json-tree.png."""

import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
PRESET = "Recipe card"  # nested, and long enough on the CPU model for several redraws
RUN_TIMEOUT_MS = 180_000

# Kept in the page, so Python's round trips do not thin the samples: every ~100 ms, the
# constrained tree's HTML when it changed, with whether that side was still running.
SAMPLE_JS = """() => {
  window.__trees = [];
  window.__sampler = setInterval(() => {
    const box = document.querySelector('#json-constrained-tree');
    const html = box ? box.innerHTML : '';
    const running = !!document.querySelector('#json-constrained-verdict .badge.running');
    const last = window.__trees[window.__trees.length - 1];
    if (!last || last.html !== html) window.__trees.push({html, running});
  }, 100);
}"""
BOTH_DONE_JS = """() => ['constrained', 'unconstrained'].every(side => {
  const b = document.querySelector(`#json-${side}-verdict .badge`);
  return b && !b.classList.contains('running') })"""

LIVE_JS = """(n) => window.__trees.filter(s => s.running && s.html.includes('jt-tree'))
  .length >= n"""
BOX_JS = """() => {
  const r = id => document.querySelector(id).getBoundingClientRect();
  const top = r('#json-constrained-text'), a = r('#json-constrained-tree'),
        b = r('#json-unconstrained-tree');
  const y = top.top + window.scrollY - 60, x = Math.min(top.left, a.left) - 10;
  return {x, y, width: Math.max(a.right, b.right) + 10 - x,
          height: Math.max(a.bottom, b.bottom) + window.scrollY + 10 - y} }"""


@pytest.fixture(scope="module")
def page(app_url, browser):
    return open_page(browser, app_url, 1100, "#engine-panel:has-text('ready')", 120_000)


def test_browser_the_partial_tree_updates_during_a_run(page):
    page.get_by_role("tab", name="JSON Schema").click()
    page.locator("#json-preset input").click()
    page.get_by_role("option", name=PRESET, exact=True).click()
    page.wait_for_function("() => document.querySelector('#json-prompt textarea').value"
                           ".includes('pancake')", timeout=30_000)
    page.evaluate(SAMPLE_JS)
    page.locator("#json-run").click()
    page.wait_for_selector("#json-constrained-verdict .badge.running", timeout=30_000)
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):  # mid-run: still viable, a value open
        page.wait_for_function(LIVE_JS, arg=12, timeout=RUN_TIMEOUT_MS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # The outputs and the trees under them, in page coordinates (a full-page clip).
        page.screenshot(path=SCREENSHOTS / "json-tree.png", full_page=True,
                        clip=page.evaluate(BOX_JS))
    page.wait_for_function(BOTH_DONE_JS, timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(500)  # the last redraw
    samples = page.evaluate("() => { clearInterval(window.__sampler); return window.__trees }")
    live = {s["html"] for s in samples if s["running"] and "jt-tree" in s["html"]}
    assert len(live) >= 3, [s["html"][:200] for s in samples]
    print(f"{len(live)} distinct live trees in {len(samples)} samples")
    assert all("still viable" in html for html in live)
    assert any("jt-open" in html for html in live)  # the value being written, marked
    final = page.locator("#json-constrained-tree").inner_text()
    assert "still viable" not in final
    assert final.split(" · ")[0].split(":")[0] in {"valid", "truncated", "invalid"}
    free = page.locator("#json-unconstrained-tree").inner_text()
    assert "left JSON at character" in free or "JSON" in free
