"""The Compare tab in headless Chromium against the shared CPU app: a 3 × 4 grid (three
variants as columns, four inputs as rows) runs, shows every cell and its totals, and
exports as JSONL, CSV and a run file; hostile grids are refused in one line before the
queue while a click in another tab completes.

PLAYGROUND_SCREENSHOTS=1 refreshes docs/screenshots/compare.png."""

from __future__ import annotations

import json
import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
READY = "#engine-panel:has-text('ready')"
RUN_TIMEOUT_MS = 300_000  # twelve short runs on two busy cores
WAIT_MS = 30_000
INPUTS = ["vLLM is wonderful!", "The build broke again.", "It works, I guess.",
          "Best tool I have used this year."]
TEMPLATES = {"B": "Is this review positive or negative? {input}",
             "C": "Classify the sentiment of this text.\nText: {input}\nSentiment:"}
BOTH_DONE_JS = """() => ['constrained', 'unconstrained'].every(side => {
  const b = document.querySelector(`#choice-${side}-verdict .badge`);
  return b && !b.classList.contains('running') })"""


def open_compare(browser, app_url, variants: int):
    page = open_page(browser, app_url, 1400, READY, 120_000)
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-count").get_by_text(str(variants), exact=True).click()
    page.wait_for_selector(f"#compare-template-{'ABCD'[variants - 1]} textarea",
                           timeout=WAIT_MS)
    return page


def fill_grid(page, inputs: list[str], templates: dict[str, str]) -> None:
    for name, template in templates.items():
        page.locator(f"#compare-template-{name} textarea").fill(template)
    page.locator("#compare-inputs textarea").fill("\n".join(inputs))


def test_browser_a_3_by_4_grid_runs_and_exports(browser, app_url):
    page = open_compare(browser, app_url, 3)
    fill_grid(page, INPUTS, TEMPLATES)
    page.locator("#compare-constraint-C .cm-content").click()  # a third answer for C
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text("Mixed\nPositive\nNegative")
    page.locator("#compare-run").click()
    page.wait_for_selector("#compare-status:has-text('Done: grid, 12 cells')",
                           timeout=RUN_TIMEOUT_MS)
    grid = page.locator("#compare-grid")
    assert grid.locator("thead th").count() == 2 + 3  # #, input, A, B, C
    assert grid.locator("tbody tr").count() == 4
    verdicts = grid.locator("tbody .badge").all_inner_texts()
    assert len(verdicts) == 12 and set(verdicts) <= {"valid", "truncated", "invalid"}
    assert "escaped" not in verdicts  # the constraint held in every cell
    assert grid.locator("tbody .cell-diff").count() == 8  # B and C, against A
    totals = grid.locator("tfoot td").all_inner_texts()[2:]
    assert len(totals) == 3 and all("valid" in t and "mean" in t for t in totals)

    links = page.locator("#compare-files [data-testid=download-link]")
    names = [links.nth(i).get_attribute("download") for i in range(links.count())]
    assert names == ["compare.jsonl", "compare.csv", "compare-history.json"]
    rows = [json.loads(line) for line in
            page.request.get(links.nth(0).get_attribute("href")).text().splitlines()]
    assert [(row["row"], row["variant"]) for row in rows] == [
        (r, v) for r in range(1, 5) for v in "ABC"]
    assert rows[4]["prompt"] == TEMPLATES["B"].replace("{input}", INPUTS[1])
    assert all(row["verdict"] == verdict for row, verdict in zip(rows, verdicts, strict=True))
    table = page.request.get(links.nth(1).get_attribute("href")).text()
    assert len(table.strip().splitlines()) >= 13  # a header and twelve cells
    runs = json.loads(page.request.get(links.nth(2).get_attribute("href")).text())
    assert runs["kind"] == "run" and len(runs["runs"]) == 12

    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=SCREENSHOTS / "compare.png", full_page=True)

    page.locator("#compare-rerun-column input").click()  # one cell again: B2
    page.get_by_role("option", name="B", exact=True).click()
    row = page.locator("#compare-rerun-row input")
    row.fill("2")
    row.press("Tab")
    page.locator("#compare-rerun").click()
    page.wait_for_selector("#compare-status:has-text('Done: cell B2, 1 cells')",
                           timeout=RUN_TIMEOUT_MS)
    assert page.locator("#compare-grid tbody .badge").count() == 12
    page.close()


HOSTILE = [  # (variants, inputs, templates, the box that says why, what it says)
    (4, [f"input {i}" for i in range(11)], {}, "#compare-inputs",
     "has 44 cells; the limit is 40"),
    (1, [f"input {i}" for i in range(21)], {}, "#compare-inputs",
     "the grid has 21 inputs; the limit is 20"),
    (1, ["x" * 10_001], {}, "#compare-inputs", "input 1 has 10,001 characters"),
    (2, ["fine"], {"B": "no slot here"}, "#compare-template-B",
     "variant B: template: put {input} where each input goes"),
]


def test_browser_hostile_grids_are_refused_while_a_click_elsewhere_completes(browser,
                                                                             app_url):
    running = open_compare(browser, app_url, 3)  # a real grid, holding the engine
    fill_grid(running, INPUTS, TEMPLATES)
    running.locator("#compare-run").click()
    running.wait_for_selector("#compare-status:has-text('cells done')", timeout=WAIT_MS)

    other = open_page(browser, app_url, 1000, READY, 120_000)  # the Choice tab
    other.locator("#choice-run").click()

    hostile = open_compare(browser, app_url, 1)
    for variants, inputs, templates, box, message in HOSTILE:
        hostile.locator("#compare-count").get_by_text(str(variants), exact=True).click()
        fill_grid(hostile, inputs, templates)
        hostile.locator("#compare-run").click()
        shown = hostile.locator(f"{box} div.validation-error", has_text=message)
        shown.wait_for(timeout=WAIT_MS)
        assert "\n" not in shown.inner_text().strip()
        assert not hostile.locator("#compare-grid table").count()  # nothing ran

    other.wait_for_function(BOTH_DONE_JS, timeout=RUN_TIMEOUT_MS)
    verdict = other.locator("#choice-constrained-verdict .badge").inner_text()
    assert verdict in {"valid", "truncated at max tokens"}
    running.wait_for_selector("#compare-status:has-text('Done: grid, 12 cells')",
                              timeout=RUN_TIMEOUT_MS)
    for page in (running, other, hostile):
        page.close()
