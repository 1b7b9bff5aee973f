"""The Tool call tab in headless Chromium against the shared CPU app: a preset runs, and
both sides show their parsed calls (name, arguments, errors) under the verdict; the
constrained side's calls are valid. PLAYGROUND_SCREENSHOTS=1 refreshes
docs/screenshots/tool-call.png."""

from __future__ import annotations

import os

import pytest
from support import ROOT, open_page

pytestmark = pytest.mark.slow
SCREENSHOT = ROOT / "docs" / "screenshots" / "tool-call.png"
READY = "#engine-panel:has-text('ready')"
RUN_MS = 240_000  # the CPU model writes both sides on two busy cores


def test_browser_runs_a_tool_preset_and_reads_the_calls(browser, app_url):
    page = open_page(browser, app_url, 1400, READY, 120_000)
    page.get_by_role("tab", name="Tool call").click()
    page.locator("#tool-preset input").click()
    page.get_by_role("option", name="SQL query (tool call)").click()
    page.wait_for_timeout(500)
    assert "run_sql" in page.locator("#tool-constraint .cm-content").inner_text()
    page.locator("#tool-run").click()
    verdict = page.locator("#tool-constrained-verdict")
    verdict.locator(".badge.valid, .badge.truncated, .badge.invalid").wait_for(timeout=RUN_MS)
    page.locator("#tool-unconstrained-verdict .badge:not(.running)").wait_for(timeout=RUN_MS)
    badge = verdict.locator(".badge").inner_text()
    assert badge in ("valid", "truncated at max tokens"), badge
    calls = verdict.locator(".tool-calls")
    if badge == "valid":  # a named tool: exactly one call of it, its arguments valid
        assert calls.get_attribute("data-calls") == "1"
        assert verdict.locator(".tool-call .tool-name").all_inner_texts() == ["run_sql"]
        assert verdict.locator(".tool-call .good").inner_text() == "valid"
    # The free side is judged by the same tools: its calls (or none) are listed too.
    assert page.locator("#tool-unconstrained-verdict .tool-calls").count() == 1
    if os.environ.get("PLAYGROUND_SCREENSHOTS"):  # not on every run: it rewrites docs/
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#tab-tool").screenshot(path=SCREENSHOT)
    page.close()
