"""The doctor in the launched app: test strings in every tab and the coverage table, in
headless Chromium, and the /test_strings and /coverage endpoints. None of it waits for the
model: the page is served while it loads."""

import json
import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"
UNIQUE = {"type": "object", "required": ["tags"],
          "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                  "uniqueItems": True}}}


def test_test_strings_and_coverage_endpoints(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    results = client.predict("regex", r"\d+", [["42", True], ["٣", True]],
                             api_name="/test_strings")
    assert [r["validator"]["matches"] for r in results] == [True, False]
    assert results[1]["backends"]["guidance"]["matches"] is True  # Unicode \d
    assert results[1]["disagree"] and results[1]["unexpected"]
    rows = json.loads(client.predict(json.dumps(UNIQUE), api_name="/coverage"))
    row = next(r for r in rows if r["keyword"] == "uniqueItems")
    assert row["backends"]["xgrammar"] == "not enforced"
    assert row["backends"]["guidance"] == "rejected"
    # The Tool call tab's JSON, as `check --coverage --tools`: rows led by the tool's name.
    tools = {"tool_choice": "auto", "tools": [{"type": "function", "function": {
        "name": "tag", "description": "", "parameters": UNIQUE}}]}
    rows = json.loads(client.predict(json.dumps(tools), api_name="/tool_coverage"))
    row = next(r for r in rows if r["keyword"] == "uniqueItems")
    assert row["path"] == "tag: $.properties.tags"
    assert row["backends"]["xgrammar"] == "not enforced"
    with pytest.raises(Exception, match="tools"):  # a schema is no tool set
        client.predict(json.dumps(UNIQUE), api_name="/tool_coverage")


@pytest.fixture(scope="module")
def page(app_url, browser):
    return open_page(browser, app_url, 1400, "#engine-panel", 60_000)


# (mode, tab label, lines for the box, text the results must show)
TABS = [("choice", "Choice", "+ Positive\n- Maybe", "should not match"),
        ("regex", "Regex", "+ not an email", "not as expected"),
        ("json", "JSON Schema", "- {}", "should not match"),
        ("grammar", "Lark grammar", "+ SELECT", "no match")]


@pytest.mark.parametrize(("mode", "label", "lines", "shown"), TABS)
def test_browser_tests_strings_in_every_tab(page, mode, label, lines, shown):
    page.get_by_role("tab", name=label).click()
    tab = page.locator(f"#tab-{mode}")
    tab.get_by_text("Test strings", exact=True).click()
    page.locator(f"#{mode}-test-strings textarea").fill(lines)
    page.locator(f"#{mode}-test").click()
    results = page.locator(f"#{mode}-test-results")
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel)?.innerText.includes(text)",
        arg=[f"#{mode}-test-results", shown], timeout=60_000)
    text = results.inner_text()
    assert "xgrammar" in text and "guidance" in text and "validator" in text


def test_browser_opening_a_tab_fills_its_doctor_views(app_url, browser):
    """Nothing typed: the preset's coverage when the JSON tab opens, the converted grammar
    when its panel opens (neither is computed while the page is built)."""
    page = browser.new_page(viewport={"width": 1500, "height": 1400})
    try:
        page.goto(app_url)
        page.wait_for_selector("#engine-panel", timeout=60_000)
        page.get_by_role("tab", name="JSON Schema").click()
        page.wait_for_function(
            "() => document.querySelector('#json-coverage-summary')?.innerText"
            ".includes('Full coverage')", timeout=60_000)
        assert "required" in page.locator("#json-coverage").inner_text()
        page.get_by_role("tab", name="Lark grammar").click()
        page.locator("#tab-grammar").get_by_text("What the engine receives",
                                                 exact=True).click()
        page.wait_for_function(
            "() => document.querySelector('#grammar-sent')?.innerText.includes('::=')",
            timeout=60_000)
    finally:
        page.close()


def test_browser_coverage_table_follows_the_editor(page):
    page.get_by_role("tab", name="JSON Schema").click()
    editor = page.locator("#json-constraint .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(json.dumps(UNIQUE))
    page.wait_for_function(
        "() => document.querySelector('#json-coverage')?.innerText.includes('uniqueItems')",
        timeout=60_000)
    table = page.locator("#json-coverage").inner_text()
    assert "NOT ENFORCED" in table and "REJECTED" in table
    page.wait_for_function(
        "() => document.querySelector('#json-coverage-summary')?.innerText"
        ".includes('Not enforced here')", timeout=30_000)
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / "doctor.png", full_page=True)


@pytest.mark.parametrize(("strings", "words"), [
    ([None], "the text must be a string"),
    ([{"text": 123, "expect": True}], "the text must be a string"),
    ([{"text": "1", "expect": "yes"}], "expect must be true, false or null"),
    ([{"text": "1", "colour": 1}], "unknown key 'colour'"),
    (5, "give a list"),
])
def test_test_strings_endpoint_refuses_wrong_types(strings, words):
    from playground.web.doctor_panel import api_test_strings

    with pytest.raises(Exception, match=words):
        api_test_strings("regex", r"\d+", strings)
