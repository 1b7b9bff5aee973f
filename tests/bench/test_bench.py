"""The benchmark's arithmetic, with the engine runs replaced by fixed rates."""

import asyncio

import pytest

from playground.bench import engine_bench as bench

RATES = {("raw", True): 90.0, ("playground", True): 99.0, ("raw", False): 100.0,
         ("playground", False): 110.0}


@pytest.fixture
def fixed_runs(monkeypatch):
    seen = []

    async def throughput(engine, constrained, path, lengths):
        seen.append((path, constrained, list(lengths)))
        tokens = [7] * len(lengths) if constrained else list(lengths)
        return {"tokens_per_s": RATES[path, constrained], "lengths": tokens}

    monkeypatch.setattr(bench, "throughput", throughput)
    return seen


def test_ratios_and_matched_free_lengths(fixed_runs):
    table = asyncio.run(bench.throughput_table(None, [4], reps=3, max_tokens=32,
                                               log=lambda message: None))
    # Two short warm-up bursts first (raw, then the playground), kept out of every ratio.
    assert fixed_runs[:2] == [("raw", True, [16] * 4), ("playground", True, [16] * 4)]
    del fixed_runs[:2]
    cell = table["4"]
    assert cell["throughput_ratio"] == pytest.approx(1.1)
    assert cell["constrained_free_ratio"] == pytest.approx(0.9)
    assert cell["raw_constrained_free_ratio"] == pytest.approx(0.9)
    assert cell["constrained_free_ratio_per_round"] == pytest.approx([0.9] * 3)
    assert cell["constrained_tokens_mean"] == 7
    # Constrained runs may use max_tokens; free runs get the constrained lengths.
    assert {tuple(lengths) for _, constrained, lengths in fixed_runs if constrained} == {
        (32,) * 4}
    assert {tuple(lengths) for _, constrained, lengths in fixed_runs if not constrained} == {
        (7,) * 4}
    assert len(fixed_runs) == 12  # four runs a round, back to back


@pytest.mark.parametrize("value, target, met", [(0.95, (">=", 0.9), True),
                                                (0.85, (">=", 0.9), False),
                                                (4.9, ("<", 5.0), True)])
def test_goal_comparison(value, target, met, monkeypatch):
    monkeypatch.setitem(bench.GOALS, "cpu_second_start_s", target)
    report = {"engine": "cpu", "latency_ratio": 1.0, "second_start_s": value,
              "single": {"json": {"playground": {"tokens_per_s": 40.0, "ttft_s": 0.1}}}}
    assert bench.goals(report)["cpu_second_start_s"]["met"] is met


@pytest.mark.parametrize("argv", [
    [],
    ["--engine", "vllm", "--dtype", "half", "--max-model-len", "2048", "--enforce-eager",
     "--tensor-parallel-size", "2", "--disable-any-whitespace"],
    ["--engine", "cpu", "--cpu-dtype", "fp32"],
])
def test_the_launched_app_gets_every_engine_flag(argv):
    from playground.engines.registry import defaults, engine_argv

    args = defaults(argv)
    assert defaults(engine_argv(args)) == args


def test_the_raw_path_is_the_engines_own(fake_engine):
    from playground.core.settings import SamplingSettings

    fake_engine.enqueue("a b c")
    run = asyncio.run(fake_engine.raw_request("p", None, SamplingSettings()))
    assert run["tokens"] == 3 and run["latency_s"] >= run["ttft_s"] >= 0


@pytest.mark.parametrize("reports_compile", [True, False])
def test_compile_time_from_the_engine_or_from_first_tokens(fake_engine, monkeypatch,
                                                           reports_compile):
    seen = []

    async def playground_request(engine, prompt, constraint, settings, judge):
        seen.append(("playground", constraint))
        return {"compile_s": 0.5 if reports_compile else None}

    async def raw_request(prompt, constraint, settings):
        seen.append(("raw", constraint))
        return {"ttft_s": 2.0 if len(seen) == 2 else 1.0}

    monkeypatch.setattr(bench, "playground_request", playground_request)
    monkeypatch.setattr(fake_engine, "raw_request", raw_request)
    found = asyncio.run(bench.compile_times(fake_engine))
    if reports_compile:
        assert (found["cold_s"], [path for path, _ in seen]) == (0.5, ["playground"] * 2)
    else:  # first tokens, with a schema the playground run has not already compiled
        assert (found["cold_s"], found["cached_s"]) == (2.0, 1.0)
        assert seen[1][1] != seen[0][1] and seen[1][1] == seen[2][1]


@pytest.mark.slow
def test_second_start_loads_the_cpu_engine_in_a_fresh_process():
    """The child's code is a string import-linter cannot see: it once named a module the
    package no longer had, and every `bench --engine cpu` failed."""
    (seconds,) = bench.second_start_s(["--engine", "cpu"], lambda line: None, runs=1)
    assert seconds > 0


def test_a_fresh_process_that_fails_says_why():
    with pytest.raises(RuntimeError, match="did not load in a fresh process: .*error"):
        bench.second_start_s(["--engine", "nonsense"], lambda line: None, runs=1)


def test_batching_goals_come_from_the_median_of_back_to_back_rounds():
    report = {"engine": "cpu", "latency_ratio": 1.0,
              "single": {"json": {"playground": {"tokens_per_s": 40.0, "ttft_s": 0.1}}},
              "batching": {"click": {"ratio": 0.58}, "sessions": {"ratio": 2.4}}}
    goals = bench.goals(report)
    assert goals["cpu_click_batched_serial"]["met"] is True
    assert goals["cpu_sessions_aggregate"]["met"] is False


def test_the_batching_section_is_left_out_where_the_engine_does_not_batch(fake_engine):
    from playground.bench import cpu_batching

    assert asyncio.run(cpu_batching.section(fake_engine, "cpu", True, print)) is None


@pytest.mark.slow
def test_the_batching_section_restores_the_engines_batch(embedded_engine, monkeypatch):
    from playground.bench import cpu_batching

    monkeypatch.setattr(cpu_batching, "CLICK_TOKENS", 4)
    seen = []
    original = cpu_batching._click

    async def click(engine, settings):
        seen.append(engine.decoder.max_batch)
        return await original(engine, settings)

    monkeypatch.setattr(cpu_batching, "_click", click)
    row = asyncio.run(cpu_batching.click(embedded_engine, 2, lambda message: None))
    assert seen == [4, 1, 4, 1, 4]  # warm-up, then one at a time and batched, alternating
    assert embedded_engine.decoder.max_batch == embedded_engine.max_batch == 4
    assert len(row["ratio_per_round"]) == 2 and row["tokens"] == [4, 4]
