"""Share link in headless Chromium against the shared CPU app: for every mode tab, a changed
prompt, constraint and settings go into the page's URL, and the link opened in a new page
shows the same tab with the same values and no run started. A bad link says why in one
line and leaves the defaults.

PLAYGROUND_SCREENSHOTS=1 refreshes docs/screenshots/share-link.png."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest
from support import ROOT, open_page

from playground.core.constraints import MODES

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
READY = "#engine-panel:has-text('ready')"
WAIT_MS = 30_000  # a page event on two busy cores
# Per tab: its label, then a prompt and constraint unlike its presets'.
EDITS = {
    "choice": ("Choice", "Is this review happy? 'Loved it'", "happy\nsad\nunsure"),
    "regex": ("Regex", "A US zip code, please", r"[0-9]{5}(-[0-9]{4})?"),
    "json": ("JSON Schema", "Describe a cat in JSON.",
             '{"type": "object", "properties": {"name": {"type": "string"}}}'),
    "grammar": ("Lark grammar", "Say yes or no, loudly.", 'start: WORD "!"\nWORD: "YES" | "NO"'),
    "tool": ("Tool call", "Ring Ada at noon.",
             '{"tool_choice": "required", "tools": [{"type": "function", "function": '
             '{"name": "call_person", "description": "Phone someone", "parameters": '
             '{"type": "object", "properties": {"who": {"type": "string"}}}}}]}'),
}
SETTINGS = {"Max tokens": "33", "number input for Temperature": "0.7",
            "Seed (empty: random)": "4242"}


def set_constraint(page, mode: str, text: str) -> None:
    if mode in ("choice", "regex"):
        page.locator(f"#{mode}-constraint textarea").fill(text)
        return
    page.locator(f"#{mode}-constraint .cm-content").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def constraint_of(page, mode: str) -> str:
    if mode in ("choice", "regex"):
        return page.locator(f"#{mode}-constraint textarea").input_value()
    return page.locator(f"#{mode}-constraint .cm-content").inner_text()


def open_settings(page, mode: str):
    tab = page.locator(f"#tab-{mode}")
    tab.get_by_text("Sampling", exact=True).click()
    return tab


def test_every_mode_tab_is_round_tripped():
    assert set(EDITS) == set(MODES)


@pytest.mark.parametrize("mode", list(EDITS))
def test_browser_share_link_round_trips_the_tab(browser, app_url, mode):
    label, prompt, constraint = EDITS[mode]
    page = open_page(browser, app_url, 1000, READY, 120_000)
    page.get_by_role("tab", name=label).click()
    page.locator(f"#{mode}-prompt textarea").fill(prompt)
    set_constraint(page, mode, constraint)
    tab = open_settings(page, mode)
    for name, value in SETTINGS.items():
        box = tab.get_by_label(name, exact=True)
        box.fill(value)
        box.press("Tab")  # a number box sends its value when it loses focus
    page.locator(f"#{mode}-share").click()
    shown = page.locator(f"#{mode}-share-link input")
    page.wait_for_function("sel => document.querySelector(sel).value.startsWith('http')",
                           arg=f"#{mode}-share-link input", timeout=WAIT_MS)
    link = shown.input_value()
    assert page.url == link and parse_qs(urlsplit(link).query)["share"][0].startswith("v1.")
    if os.environ.get("PLAYGROUND_SCREENSHOTS") and mode == "json":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(500)
        page.screenshot(path=SCREENSHOTS / "share-link.png", full_page=True)
    page.close()

    opened = open_page(browser, link, 1000, READY, 120_000)
    try:
        opened.wait_for_function(
            "([sel, text]) => document.querySelector(sel)?.value === text",
            arg=[f"#{mode}-prompt textarea", prompt], timeout=WAIT_MS)
        assert opened.get_by_role("tab", name=label).get_attribute("aria-selected") == "true"
        assert constraint_of(opened, mode) == constraint
        tab = open_settings(opened, mode)
        for name, value in SETTINGS.items():
            assert float(tab.get_by_label(name, exact=True).input_value()) == float(value)
        opened.wait_for_timeout(1000)  # a run, had one started, would show by now
        for side in ("constrained", "unconstrained"):
            assert opened.locator(f"#{mode}-{side}-text textarea").input_value() == ""
            assert opened.locator(f"#{mode}-{side}-verdict").inner_text().strip() == ""
        assert opened.locator(f"#{mode}-metrics").inner_text().strip() == ""
    finally:
        opened.close()


@pytest.mark.parametrize(("token", "words"), [
    ("v1.not!base64", "not base64url text"),
    ("v1." + "A" * 9000, "its token has 9,003 characters; the limit is 8,000"),
    ("v7.abc", "another version of the app"),
])
def test_browser_bad_link_says_why_and_leaves_the_defaults(browser, app_url, token, words):
    page = open_page(browser, f"{app_url}?share={token}", 1000, READY, 120_000)
    try:
        page.wait_for_selector(f"#choice-check:has-text('{words}')", timeout=WAIT_MS)
        check = page.locator("#choice-check").inner_text().strip()
        assert check.startswith("share link: ") and "\n" not in check, check
        assert page.get_by_role("tab", name="Choice").get_attribute("aria-selected") == "true"
        assert page.locator("#choice-preset input").input_value() == "Sentiment"
        assert words in page.locator("[data-testid=toast-body]").first.inner_text()
    finally:
        page.close()
