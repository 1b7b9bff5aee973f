"""The Diagram box in headless Chromium against the shared CPU app: the grammar's and the
regex's railroad diagrams appear when their tab opens and follow each edit, a hostile
grammar gets one line in its place, and the next edit draws again.

PLAYGROUND_SCREENSHOTS=1 refreshes docs/screenshots/railroad.png."""

import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT_MS = 60_000  # a page event on two cores, while the model loads beside it
LABELS_JS = """(sel) => [...document.querySelectorAll(sel + ' svg.railroad-diagram text')]
  .map(t => t.textContent)"""
WITH_PAIRS = """?start: pairs
pairs: pair ("," pair)*
pair: KEY "=" value
?value: NUMBER | "true" | "false"
KEY: /[a-z]+/
%import common.NUMBER
"""


@pytest.fixture(scope="module")
def page(app_url, browser):
    # The diagram needs no model: the page is enough.
    found = open_page(browser, app_url, 1000, "#engine-panel", 120_000)
    found.set_viewport_size({"width": 1280, "height": 1000})
    return found


def labels(page, mode: str) -> list[str]:
    return page.evaluate(LABELS_JS, f"#{mode}-diagram")


def wait_label(page, mode: str, label: str) -> None:
    page.wait_for_function(
        "([sel, label]) => [...document.querySelectorAll(sel + ' svg text')]"
        ".some(t => t.textContent === label)", arg=[f"#{mode}-diagram", label],
        timeout=WAIT_MS)


def set_grammar(page, text: str) -> None:
    page.locator("#grammar-constraint .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_browser_the_grammar_diagram_appears_and_follows_an_edit(page):
    page.get_by_role("tab", name="Lark grammar").click()
    wait_label(page, "grammar", "select_statement")  # the first preset: SQL SELECT
    before = labels(page, "grammar")
    assert before[0] == "?start" and '" FROM "' in before
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):  # the tab as a user first opens it
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1_000)
        page.locator("#tab-grammar").screenshot(path=SCREENSHOTS / "railroad.png")
    set_grammar(page, WITH_PAIRS)  # new rules, an alternative of three
    wait_label(page, "grammar", "pairs")
    after = labels(page, "grammar")
    assert {"pair", "KEY", '"true"', '"false"', "NUMBER"} <= set(after)
    assert "select_statement" not in after
    assert page.locator("#grammar-diagram svg.railroad-diagram").count() == 5
    # Another alternative typed at the end of a rule: the diagram follows.
    set_grammar(page, WITH_PAIRS.replace('| "false"', '| "false" | "null"'))
    wait_label(page, "grammar", '"null"')
    # Wide diagrams scroll inside their box, never widen the page.
    assert page.evaluate("() => document.documentElement.scrollWidth <= "
                         "document.documentElement.clientWidth + 1")


def test_browser_a_huge_grammar_gets_one_line_and_the_next_edit_draws(page):
    page.get_by_role("tab", name="Lark grammar").click()
    set_grammar(page, "start: " + " | ".join(f'"w{i}"' for i in range(2_000)))
    note = page.locator("#grammar-diagram .diagram-note")
    note.wait_for(timeout=WAIT_MS)
    assert "--max-diagram-nodes" in note.inner_text()
    assert "\n" not in note.inner_text()
    set_grammar(page, WITH_PAIRS)
    wait_label(page, "grammar", "pairs")


def test_browser_the_regex_diagram_appears_and_follows_an_edit(page):
    page.get_by_role("tab", name="Regex").click()
    wait_label(page, "regex", '"com"')  # the first preset: email
    assert {"\\w", '"@"', '"org"', '"net"'} <= set(labels(page, "regex"))
    box = page.locator("#regex-constraint textarea, #regex-constraint input").first
    box.fill(r"\w+@\w+\.(com|org|net|edu)")
    wait_label(page, "regex", '"edu"')
    box.fill(r"[A-Z]{2}-\d{4}")
    wait_label(page, "regex", "[A-Z]")
    assert {"2×", "4×", "\\d"} <= set(labels(page, "regex"))


def test_browser_a_picked_preset_is_drawn(page):
    page.get_by_role("tab", name="Lark grammar").click()
    page.locator("#grammar-preset input").click()
    page.get_by_role("option", name="Arithmetic expression", exact=True).click()
    wait_label(page, "grammar", "?product")
    assert {"?sum", "?atom", '"("', "NUMBER"} <= set(labels(page, "grammar"))
