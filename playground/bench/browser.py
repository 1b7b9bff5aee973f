"""`bench --browser`: does the page slow the model? The same preset run through a real page
(headless Chromium, driven by Playwright) and through the API (gradio_client), on one app
launched for the purpose; the runs alternate so slow drifts of the machine hit both alike.

On a machine where browser and model share the cores (a laptop, the 2-core CI box), every
redraw of the page is time the model does not get; the figure is the constrained decode
speed in the page over that through the API (goal: at least 0.8).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from playground.bench.launch import chromium, launched_app
from playground.core.constraints import MODE_LABELS
from playground.core.presets import load_presets

PRESET = "Iconic 90s car"
GOAL = 0.8
# The decode speed of one side, read from the page's metrics table ("–" while running).
_RATE_JS = """([mode, column]) => {
  const rows = document.querySelectorAll(`#${mode}-metrics tr`);
  for (const row of rows) {
    const cells = row.querySelectorAll('td, th');
    if (cells.length > column && cells[0].innerText.trim() === 'tokens/s (decode)')
      return cells[column].innerText.trim();
  }
  return null;
}"""


def api_run(url: str, preset: Any) -> dict[str, float | None]:
    from gradio_client import Client

    result = Client(url, verbose=False).predict(
        preset.mode, preset.constraint_text, preset.prompt, preset.settings.model_dump(),
        api_name="/generate")
    return {"constrained": result["constrained"]["tokens_per_s"],
            "unconstrained": result["unconstrained"]["tokens_per_s"]}


def page_run(page: Any, mode: str, limit_ms: int = 300_000) -> dict[str, float | None]:
    """One click of Run; the speeds the page shows once both sides have finished."""
    page.locator(f"#{mode}-run").click()
    page.wait_for_function(f"() => ({_RATE_JS})(['{mode}', 1]) === '–'", timeout=limit_ms)
    page.wait_for_function(
        f"() => [1, 2].every(c => /^[0-9.]+$/.test(({_RATE_JS})(['{mode}', c]) || ''))",
        timeout=limit_ms)
    rates = [page.evaluate(f"({_RATE_JS})(['{mode}', {c}])") for c in (1, 2)]
    return {"constrained": float(rates[0]), "unconstrained": float(rates[1])}


def open_page(browser: Any, url: str, preset: Any) -> Any:
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(url)
    page.wait_for_selector("#engine-panel:has-text('ready')", timeout=600_000)
    page.get_by_role("tab", name=MODE_LABELS[preset.mode]).click()
    dropdown = page.locator(f"#{preset.mode}-preset input")
    dropdown.click()
    page.get_by_role("option", name=preset.name, exact=True).click()
    return page


def measure(engine_argv: list[str], reps: int, log: Any = print) -> dict[str, Any]:

    preset = load_presets()[PRESET]
    api: list[dict[str, float | None]] = []
    page_runs: list[dict[str, float | None]] = []
    with launched_app(engine_argv) as app:
        app.wait_served()
        app.wait_ready()
        with chromium() as browser:
            page = open_page(browser, app.url, preset)
            api_run(app.url, preset)  # warm: compile caches, first-run allocations
            page_run(page, preset.mode)
            for rep in range(reps):
                api.append(api_run(app.url, preset))
                page_runs.append(page_run(page, preset.mode))
                log(f"  round {rep + 1}: api {api[-1]['constrained']:.1f} tok/s, page "
                    f"{page_runs[-1]['constrained']:.1f} tok/s (constrained)")

    def median(runs: list[dict[str, float | None]], side: str) -> float:
        return statistics.median(run[side] or 0.0 for run in runs)

    report: dict[str, Any] = {"preset": PRESET, "rounds": reps, "api_runs": api,
                              "page_runs": page_runs}
    for side in ("constrained", "unconstrained"):
        report[side] = {"api_tokens_per_s": median(api, side),
                        "page_tokens_per_s": median(page_runs, side)}
        report[side]["ratio"] = (report[side]["page_tokens_per_s"]
                                 / report[side]["api_tokens_per_s"])
    report["goal"] = {"value": report["constrained"]["ratio"], "target": f">= {GOAL}",
                      "met": report["constrained"]["ratio"] >= GOAL}
    return report


def main(args: argparse.Namespace, engine_argv: list[str]) -> dict[str, Any]:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    reps = 3 if args.quick else 5
    log(f"page (headless Chromium) vs API (gradio_client), preset {PRESET!r}, {reps} rounds:")
    report = measure(engine_argv, reps, log)
    print(f"\n{'side':14} {'api tok/s':>10} {'page tok/s':>11} {'page/api':>9}")
    for side in ("constrained", "unconstrained"):
        row = report[side]
        print(f"{side:14} {row['api_tokens_per_s']:10.1f} {row['page_tokens_per_s']:11.1f} "
              f"{row['ratio']:9.3f}")
    goal = report["goal"]
    print(f"goal: page/api {goal['value']:.3f} {goal['target']}: "
          f"{'met' if goal['met'] else 'NOT met'} (medians over {reps} rounds)")
    return report
