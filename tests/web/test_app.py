"""The app as users meet it: launched as a process, called through gradio_client and
driven in headless Chromium (Debian's, with Playwright)."""

import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOTS = ROOT / "docs" / "screenshots"


def test_generate_endpoint_through_gradio_client(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = client.predict("choice", "Positive\nNegative",
                            "Classify this sentiment: vLLM is wonderful!", {"max_tokens": 8},
                            api_name="/generate")
    assert result["mode"] == "choice"
    assert result["engine"]["model"] == "SmolLM2-135M-Instruct"
    assert result["constrained"]["verdict"] == "valid"
    assert result["constrained"]["text"] in {"Positive", "Negative"}
    assert result["unconstrained"]["verdict"] in {"valid", "invalid", "truncated"}


def test_bad_constraint_is_a_clear_error_and_the_app_keeps_serving(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="unterminated subpattern at position 1"):
        client.predict("regex", "a(", "p", {}, api_name="/generate")
    result = client.predict("regex", "[0-9]+", "Count to three", {"max_tokens": 4},
                            api_name="/generate")
    assert result["constrained"]["verdict"] in {"valid", "truncated"}


@pytest.fixture(scope="module")
def page(app_url, browser):
    return open_page(browser, app_url, 1100, "#engine-panel:has-text('ready')", 120_000)


TABS = [("choice", "Choice", "Sentiment"), ("regex", "Regex", "Email address"),
        ("json", "JSON Schema", "Iconic 90s car"), ("grammar", "Lark grammar", "SQL SELECT")]


def pick_preset(page, mode: str, label: str, preset: str) -> None:
    """Open the mode's tab and choose a preset from its dropdown."""
    page.get_by_role("tab", name=label).click()
    page.locator(f"#{mode}-preset input").click()
    page.get_by_role("option", name=preset, exact=True).click()


@pytest.mark.parametrize(("mode", "label", "preset"), TABS)
def test_browser_picks_a_preset_runs_it_and_reads_the_verdict(page, mode, label, preset):
    pick_preset(page, mode, label, preset)
    page.locator(f"#{mode}-run").click()
    verdict = page.locator(f"#{mode}-constrained-verdict .badge")
    page.wait_for_function(
        "sel => { const b = document.querySelector(sel); return b && !b.classList.contains"
        "('running') && document.querySelector(sel.replace('-constrained-', '-unconstrained-'))"
        " && !document.querySelector(sel.replace('-constrained-', '-unconstrained-'))"
        ".classList.contains('running') }",
        arg=f"#{mode}-constrained-verdict .badge", timeout=120_000)
    assert verdict.inner_text() in {"valid", "truncated at max tokens"}
    assert "tokens/s" in page.locator(f"#{mode}-metrics").inner_text()
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"{mode}.png", full_page=True)


def test_browser_runs_a_batch_and_offers_downloads(page):
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-mode").get_by_text("choice", exact=True).click()
    editor = page.locator("#batch-constraint .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("yes\nno")
    prompts = page.locator("#batch-prompts textarea")
    prompts.fill("Is the sky blue?\nIs fire cold?\nIs water wet?")
    page.locator("#batch-run").click()
    page.wait_for_selector("#batch-totals:has-text('Validity')", timeout=120_000)
    totals = page.locator("#batch-totals").inner_text()
    assert "of 3" in totals and "Throughput" in totals
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.screenshot(path=SCREENSHOTS / "batch.png", full_page=True)
    table = page.locator("#batch-table")
    for prompt in ("Is the sky blue?", "Is fire cold?", "Is water wet?"):
        assert table.get_by_text(prompt, exact=True).count() >= 1
    page.wait_for_function("() => ['batch.jsonl', 'batch.csv'].every("
                           "name => document.body.innerHTML.includes(name))", timeout=30_000)


def test_generate_endpoint_inspects_tokens_when_asked(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    result = client.predict("choice", "yes\nno", "Is water wet? Answer yes or no.",
                            {"max_tokens": 8, "inspect": True}, api_name="/generate")
    tokens = result["constrained"]["tokens"]
    assert tokens[-1]["kind"] == "forced" and len(tokens[0]["top"]) == 5
    assert result["constrained"]["inspect_summary"]["backend"] == "xgrammar"
    assert "left_format_at" in result["unconstrained"]


@pytest.mark.parametrize(("mode", "label", "preset"), TABS)
def test_browser_inspects_tokens_and_shows_alternatives_on_hover(page, mode, label, preset):
    pick_preset(page, mode, label, preset)
    page.locator(f"#{mode}-inspect input").check()
    page.locator(f"#{mode}-run").click()
    for side in ("constrained", "unconstrained"):
        page.wait_for_selector(f"#{mode}-{side}-verdict .tokstrip", timeout=600_000)
    summary = page.locator(f"#{mode}-constrained-verdict .inspect-summary").inner_text()
    assert "forced" in summary and "narrowed" in summary and "overrides" in summary
    free = page.locator(f"#{mode}-unconstrained-verdict .inspect-summary").inner_text()
    assert "left the format" in free
    strip = page.locator(f"#{mode}-constrained-verdict .tokstrip")
    overrides = strip.locator(".tok.override")
    token = overrides.first if overrides.count() else strip.locator(".tok").first
    tip = token.locator(".tip")
    assert not tip.is_visible()
    token.hover()
    tip.wait_for(state="visible", timeout=5_000)
    text = tip.inner_text()
    assert "without the constraint: rank" in text and "top choices" in text
    assert tip.locator("tr").count() == 5 and "%" in text
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"inspect-{mode}.png", full_page=True)
    page.locator(f"#{mode}-inspect input").uncheck()  # the other tests run without it


def test_browser_stop_keeps_the_partial_output_and_frees_the_model(page):
    page.get_by_role("tab", name="Regex").click()
    page.locator("#regex-prompt textarea").fill("Write a very long story about a dragon.")
    page.locator("#regex-constraint textarea, #regex-constraint input").first.fill("[a-z ,.]+")
    tab = page.locator("#tab-regex")
    tab.get_by_text("Sampling").click()
    tab.get_by_label("Max tokens").fill("2000")
    page.locator("#regex-run").click()
    # The click clears the last run's results first; only then is the text this run's.
    page.wait_for_selector("#regex-constrained-verdict .badge.running", timeout=30_000)
    page.wait_for_function(
        "() => (document.querySelector('#regex-constrained-text textarea') || {}).value"
        "?.length > 10", timeout=120_000)
    page.locator("#regex-stop").click()
    page.wait_for_selector("#regex-constrained-verdict .badge.stopped", timeout=30_000)
    assert page.locator("#regex-constrained-verdict .badge").inner_text() == "stopped by user"
    assert "partial" in page.locator("#regex-constrained-verdict").inner_text()
    assert len(page.locator("#regex-constrained-text textarea").input_value()) > 10
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):
        page.screenshot(path=SCREENSHOTS / "stopped.png", full_page=True)
    tab.get_by_label("Max tokens").fill("8")  # the model is free again: a short run finishes
    page.locator("#regex-run").click()
    page.wait_for_function(
        "() => { const b = document.querySelector('#regex-unconstrained-verdict .badge');"
        " return b && !b.classList.contains('running') && !b.classList.contains('stopped') }",
        timeout=120_000)


def test_building_the_page_imports_no_model_library():
    """What runs before the page is served stays light: torch (through xgrammar or
    transformers) took seconds there on the GPU machine. The model loads after."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from playground import cli\n"
        "from playground.web.app import build_ui, create_engine, load_presets\n"
        "args = cli.build_parser().parse_args(['serve', '--engine', 'cpu'])\n"
        "build_ui(create_engine(args), load_presets())\n"
        "print(sorted(m for m in ('torch', 'xgrammar', 'transformers', 'vllm', 'llguidance')"
        " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
