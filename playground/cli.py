"""`python -m playground check|run|presets|serve|suite|bench`: JSON on stdout; exit 2 on
bad input."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any, TypeAlias

from playground import log as logs
from playground.backends.names import DEFAULT_BACKEND, DOCTOR_BACKENDS, MATCHER_BACKENDS
from playground.core import limits
from playground.core.constraints import MODES
from playground.core.limits import LIMIT_FLAGS
from playground.core.text_fields import check_text
from playground.engines.registry import add_engine_flags
from playground.errors import (
    ConstraintError,
    EngineNotReady,
    InputError,
    LimitError,
    UserError,
)
from playground.run.service import parse_constraint


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _constraint_text(args: argparse.Namespace) -> str:
    """The constraint as an editor would hold it, from the flags of its mode."""
    if args.mode == "choice":
        if not args.choice:
            raise InputError("choice: give --choice at least once")
        return "\n".join(args.choice)
    if args.mode == "regex":
        if args.regex is None:
            raise InputError("regex: give --regex")
        return args.regex
    flag = {"json": "schema", "tool": "tools"}.get(args.mode, "grammar")
    path = getattr(args, flag)
    if path is None:
        raise InputError(f"{args.mode}: give --{flag}")
    return read_constraint_file(args.mode, path)


def read_constraint_file(mode: str, path: str) -> str:
    """The file's text, reading at most one character past the constraint limit (the file
    may be /dev/zero or a pipe that never ends)."""
    limit = limits.active().max_constraint_chars
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(limit + 1)
    except UnicodeDecodeError as exc:
        raise InputError(f"{mode}: {path} is not UTF-8 text (byte {exc.start:,} cannot be "
                         "read); give a text file") from None
    except OSError as exc:
        raise InputError(f"{mode}: cannot read {path}: {exc.strerror or exc}") from None
    if len(text) > limit:
        raise LimitError(limits.active().message("max_constraint_chars",
                                                 what=f"{mode}: {path}"))
    return text


def _add_constraint_flags(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--mode", choices=MODES, required=required)
    parser.add_argument("--choice", action="append", help="one allowed output (repeat)")
    parser.add_argument("--regex")
    parser.add_argument("--schema", help="file holding a JSON Schema")
    parser.add_argument("--grammar", help="file holding a Lark grammar")
    parser.add_argument("--tools", help="file holding the Tool call tab's JSON: "
                                        '{"tool_choice": ..., "tools": [...]}')


# argparse has no public name for what add_subparsers returns.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m playground")
    commands = parser.add_subparsers(dest="command", required=True)
    # In this order: it is the order `--help` lists them.
    for add in (_add_check, _add_run, _add_presets, _add_suite, _add_conformance, _add_bench,
                _add_serve):
        add(commands)
    return parser


def _add_check(commands: Commands) -> None:
    check = commands.add_parser("check", help="check a constraint (and --output) without a model")
    _add_constraint_flags(check, required=True)
    check.add_argument("--output", help="text to validate against the constraint")
    check.add_argument("--cut", action="store_true",
                       help="judge --output as if generation had stopped at max tokens: "
                            "truncated while still on the way to a match, else invalid")
    check.add_argument("--backend", choices=MATCHER_BACKENDS, default=DEFAULT_BACKEND,
                       help="whose token matcher judges a --cut output (default xgrammar)")
    check.add_argument("--engine", choices=["none", "cpu", "vllm"], default="none",
                       help="also ask that engine's compiler (vllm: its request validation)")
    check.add_argument("--coverage", action="store_true",
                       help="the doctor: per keyword and backend, enforced / not enforced / "
                            "rejected (\"coverage\"), and regex dialect differences")
    check.add_argument("--coverage-backend", action="append", metavar="NAME",
                       choices=DOCTOR_BACKENDS,
                       help="only these backends (xgrammar, guidance, outlines, "
                            "vllm:xgrammar, ...; repeat); default every one installed")
    check.add_argument("--test-string", action="append", metavar="S", default=[],
                       help="a string that should match: validator and each backend's "
                            "matcher say whether it does (repeat)")
    check.add_argument("--test-string-not", action="append", metavar="S", default=[],
                       help="a string that should not match (repeat)")
    for flags, options in LIMIT_FLAGS:
        check.add_argument(*flags, **options)
    logs.add_flags(check)


def _add_run(commands: Commands) -> None:
    run = commands.add_parser("run", help="generate constrained and unconstrained output")
    _add_constraint_flags(run, required=False)
    run.add_argument("--preset", help="start from this preset (flags override it)")
    run.add_argument("--prompt")
    run.add_argument("--max-tokens", type=int)
    run.add_argument("--temperature", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--inspect", action="store_true",
                     help="token inspector: per token, what the constraint allowed and the "
                          "model's own top 5 (\"tokens\", \"inspect_summary\" per side)")
    run.add_argument("--compare-backends", action="store_true",
                     help="with the inspector: where xgrammar's and llguidance's masks differ "
                          "along the constrained output (\"mask_diff\")")
    run.add_argument("--lenient", action="store_true",
                     help="generate anyway: send what the backend can enforce of a JSON "
                          "Schema, judge by the full one (\"not_enforced\" lists the rest)")
    run.add_argument("--export", choices=["python", "openai", "curl"],
                     help="print this as vLLM code (offline API, openai client, curl) instead "
                          "of running; loads no model")
    add_engine_flags(run)
    logs.add_flags(run)


def _add_presets(commands: Commands) -> None:
    commands.add_parser("presets", help="list the presets")


def _add_suite(commands: Commands) -> None:
    suite = commands.add_parser("suite", help="the doctor over a folder of JSONSchemaBench "
                                              "files: compiles, coverage, compile times")
    suite.add_argument("dir", help="folder of JSONSchemaBench files (tests/data/jsonschemabench)")
    suite.add_argument("--limit", type=positive_int,
                       help="a sample of this many files, spread evenly")
    suite.add_argument("--jsonl", help="write one line per schema to this file")
    suite.add_argument("--backend", action="append", metavar="NAME", choices=DOCTOR_BACKENDS,
                       help=f"only these backends ({', '.join(DOCTOR_BACKENDS)}; repeat); "
                            "default every one installed")
    suite.add_argument("--vllm", action=argparse.BooleanOptionalAction, default=None,
                       help="add vLLM's request validation columns (default: if installed)")
    suite.add_argument("--time-limit-s", type=float, default=20.0,
                       help="coverage time per schema")
    suite.add_argument("--jobs", type=int, metavar="N",
                       help="schemas at once, each in its own worker process (default: the "
                            "cores but one, at most 32)")
    suite.add_argument("--max-tokens", type=int, default=256,
                       help="with a model: tokens per generated document")
    add_engine_flags(suite)
    for action in suite._actions:  # no model unless asked for one
        if action.dest == "engine":
            action.choices, action.default = ["none", "auto", "cpu", "vllm", "openai"], "none"


def _add_conformance(commands: Commands) -> None:
    conformance = commands.add_parser(
        "conformance", help="the official JSON Schema Test Suite (draft 2020-12) through "
                            "the validator and every backend: per keyword, cases let "
                            "through, refused, schemas refused")
    conformance.add_argument("dir", nargs="?",
                             help="the suite's checkout (its tests/draft2020-12 is read)")
    conformance.add_argument("--backend", action="append", metavar="NAME",
                             choices=["validator", *DOCTOR_BACKENDS],
                             help="only these (validator, xgrammar, guidance, outlines, "
                                  "vllm:xgrammar, ...; repeat); default every one installed")
    conformance.add_argument("--file", action="append", metavar="NAME",
                             help="only this file of the draft (minLength.json, "
                                  "optional/format/email.json; repeat)")
    conformance.add_argument("--jobs", type=positive_int, metavar="N",
                             help="groups at once, each in a worker process (default: the "
                                  "cores, at most 32)")
    conformance.add_argument("--time-limit-s", type=float, default=20.0,
                             help="the doctor's coverage time per group; compiling and "
                                  "matching get as long again")
    conformance.add_argument("--json", metavar="FILE",
                             help="write the report with every case let through or refused")
    conformance.add_argument("--markdown", metavar="FILE",
                             help="write the tables (between the conformance markers where "
                                  "FILE has them)")
    conformance.add_argument("--mask-diff", metavar="SCHEMA_FILE",
                             help="instead: replay --text's tokens through xgrammar and "
                                  "llguidance under this schema; each step their masks differ")
    conformance.add_argument("--text", help="with --mask-diff: the output to replay")
    conformance.add_argument("--tokenizer", metavar="NAME_OR_DIR",
                             help="with --mask-diff: a Hugging Face tokenizer (default: the "
                                  "CPU model's)")
    logs.add_flags(conformance)


def _add_bench(commands: Commands) -> None:
    bench = commands.add_parser("bench", help="playground path vs raw engine, side by side")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions and levels")
    bench.add_argument("--rounds", type=positive_int, metavar="N",
                       help="rounds per concurrency level (default: 5 on vLLM, 3 with "
                            "--quick; 3 and 1 on the CPU): single bursts swing by ±10 %% "
                            "on the H200, so more rounds give a steadier median")
    bench.add_argument("--json", help="write the full report to this file")
    bench.add_argument("--plot", help="write a PNG plot to this file")
    bench.add_argument("--browser", action="store_true",
                       help="only this: a preset's decode speed through a real page (headless "
                            "Chromium) against the API, on the same launched app")
    add_engine_flags(bench)
    logs.add_flags(bench)


def _add_serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="serve the web playground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--history-dir", metavar="DIR",
                       help="also keep each browser session's history in DIR, one file per "
                            "session named by a random id (default: in the session only)")
    for flags, options in limits.SERVE_FLAGS:
        serve.add_argument(*flags, **options)
    add_engine_flags(serve)
    logs.add_flags(serve)


def cmd_check(args: argparse.Namespace) -> dict[str, Any]:
    from playground.judging.judge import judge_blocking

    constraint, warnings = parse_constraint(args.mode, _constraint_text(args))
    result: dict[str, Any] = {"constraint_ok": True, "verdict": None, "errors": [],
                              "warnings": warnings}
    if args.engine == "cpu":
        from playground.backends.xgrammar import to_grammar

        try:
            to_grammar(constraint)
            result["xgrammar_accepts"], result["xgrammar_message"] = True, None
        except ConstraintError as exc:
            result["xgrammar_accepts"], result["xgrammar_message"] = False, str(exc)
    elif args.engine == "vllm":
        from playground.backends.vllm import vllm_check

        # stdout carries only the JSON: whatever vLLM prints at import or check goes to stderr
        # (its logger is sent there by log.configure; this catches plain prints too).
        with contextlib.redirect_stdout(sys.stderr):
            result["vllm_accepts"], result["vllm_message"] = vllm_check(constraint)
    if args.coverage:
        result.update(doctor_report(constraint, args.coverage_backend))
    cases = [(text, True) for text in args.test_string] + \
        [(text, False) for text in args.test_string_not]
    for number, (text, _) in enumerate(cases, start=1):
        check_text(f"test string {number}", text, nul=True)
    if cases:
        from playground.doctor.test_strings import test_strings

        result["test_strings"] = test_strings(constraint, cases)
    if args.output is not None:
        check_text("--output", args.output, nul=True)
        # Bounded as on the server: RE2, or a worker killed past --validation-timeout-s.
        verdict = judge_blocking(constraint, args.output, "length" if args.cut else "stop",
                                 backend=args.backend)
        result["verdict"], result["errors"] = verdict.status, verdict.errors
    return result


def doctor_report(constraint: Any, backends: list[str] | None) -> dict[str, Any]:
    """`check --coverage`: the coverage table (JSON Schema, or each tool's parameters) and
    dialect notes."""
    from playground.core.constraints import JsonSchema, ToolCalls
    from playground.doctor.coverage import coverage, tool_schemas, tools_coverage
    from playground.doctor.dialect import bounded_dialect_lines

    report: dict[str, Any] = {"dialect": bounded_dialect_lines(
        constraint, limits.active().compile_timeout_s)}
    limit_s = limits.active().compile_timeout_s * 2
    if isinstance(constraint, JsonSchema | ToolCalls):
        # A tool set: each allowed tool's parameters, paths led by its name, one limit.
        table = (coverage(constraint.schema, backends, limit_s)
                 if isinstance(constraint, JsonSchema) else
                 tools_coverage(tool_schemas(constraint), backends, limit_s))
        report["coverage"] = table.as_list()
        report["coverage_notes"] = table.notes
    return report


def cmd_run(args: argparse.Namespace) -> dict[str, Any] | str:
    from playground.core.presets import load_presets
    from playground.engines.registry import engine_from_flags
    from playground.run.service import run_request

    mode, constraint_text, prompt, options = args.mode, None, args.prompt, {}
    if args.preset:
        presets = load_presets()
        if args.preset not in presets:
            raise InputError(f"no preset {args.preset!r}; see `python -m playground presets`")
        preset = presets[args.preset]
        mode = mode or preset.mode
        constraint_text = preset.constraint_text if mode == preset.mode else None
        prompt = prompt or preset.prompt
        options = preset.settings.model_dump()
    if mode is None:
        raise InputError("give --mode or --preset")
    args.mode = mode
    if any(getattr(args, flag) is not None for flag in ("choice", "regex", "schema", "grammar",
                                                          "tools")) \
            or constraint_text is None:
        constraint_text = _constraint_text(args)
    if not prompt:
        raise InputError("give --prompt or --preset")
    for key in ("max_tokens", "temperature", "seed"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    constraint, _ = parse_constraint(mode, constraint_text)  # fail before loading a model
    if args.export:
        from playground.run.export import from_args

        return from_args(args, constraint, prompt, options)
    engine = engine_from_flags(args, log=lambda message: print(message, file=sys.stderr))
    engine.load(lambda fraction, message: print(f"[{fraction:4.0%}] {message}", file=sys.stderr))
    if args.inspect:  # a request option, not a sampling setting (export leaves it out)
        options = {**options, "inspect": True}
    if args.compare_backends:
        options = {**options, "compare_backends": True}
    if args.lenient:
        options = {**options, "lenient": True}
    return asyncio.run(run_request(engine, mode, constraint_text, prompt, options))


def cmd_suite(args: argparse.Namespace) -> dict[str, Any]:
    from playground.bench.suite import main as suite

    try:
        return suite(args)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None


def cmd_conformance(args: argparse.Namespace) -> dict[str, Any] | list[dict[str, Any]]:
    if args.mask_diff is not None:
        if args.text is None:
            raise InputError("--mask-diff: give --text, the output to replay")
        import transformers

        from playground.doctor.mask_diff import mask_diff

        constraint, _ = parse_constraint("json", read_constraint_file("json", args.mask_diff))
        if args.tokenizer:
            tokenizer = transformers.AutoTokenizer.from_pretrained(args.tokenizer)
        else:
            from playground.engines.cpu_models import checkpoint_folder

            tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint_folder(None))
        ids = tokenizer(args.text, add_special_tokens=False)["input_ids"]
        return [step.as_dict() for step in mask_diff(constraint, tokenizer,
                                                     [*ids, tokenizer.eos_token_id])]
    from playground.doctor import conformance

    if args.dir is None:
        raise InputError("conformance: give the suite's folder (or --mask-diff)")
    try:
        report = conformance.conformance(args.dir, args.backend, args.jobs, args.file,
                                         args.time_limit_s)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1)
            file.write("\n")
    if args.markdown:
        from playground.doctor.conformance_markdown import write_markdown

        write_markdown(args.markdown, report)
    return conformance.table(report)


def cmd_presets(args: argparse.Namespace) -> list[dict[str, Any]]:
    from playground.core.presets import load_presets

    return [{"name": p.name, "mode": p.mode, "description": p.description,
             "prompt": p.prompt} for p in load_presets().values()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    limits.configure(limits.Limits.from_args(args))
    log = logs.configure(getattr(args, "log_level", "INFO"), getattr(args, "log_prompts", False))
    if args.command == "bench":
        from playground.bench.engine_bench import main as bench

        bench(args)
        return 0
    if args.command == "serve":
        from playground.web.app import serve

        try:
            return serve(args)
        except (RuntimeError, ValueError) as exc:  # e.g. --engine vllm without a GPU
            print(f"error: {exc}", file=sys.stderr)
            return 2
    command = {"check": cmd_check, "run": cmd_run, "presets": cmd_presets,
               "suite": cmd_suite, "conformance": cmd_conformance}[args.command]
    try:
        # Libraries that print (vLLM, transformers) must not mix into the JSON.
        with contextlib.redirect_stdout(sys.stderr):
            result = command(args)
        print(result if isinstance(result, str) else json.dumps(result, indent=2),
              end="" if isinstance(result, str) else "\n")
    except UserError as exc:  # the user's input: InputError, ConstraintError, PresetError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # never a traceback for a user; the reason in one line
        if isinstance(exc, EngineNotReady | RuntimeError | OSError | ValueError):
            log.debug("the command failed", exc_info=True)  # --log-level DEBUG shows where
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise
    return 0
