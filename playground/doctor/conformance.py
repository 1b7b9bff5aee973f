"""The official JSON Schema Test Suite (draft 2020-12) through every backend, keyword by
keyword: `python -m playground conformance DIR` (docs/conformance.md).

The suite has one file per keyword (`minLength.json`, and `optional/...`), each a list of
groups `{description, schema, tests: [{description, data, valid}]}`. For every group and
backend, the schema is compiled (`playground.doctor.testers`: the compilers, vLLM's request
checks for the `vllm:` columns) and each test's instance is fed as text to the matcher,
twice: compact and `indent=2` (which also writes non-ASCII as `\\u` escapes). Against the
suite's `valid` label, a case is

- *under*: an invalid instance let through (in either form): the backend under-constrains;
- *over*: a valid instance refused (in either form): it over-constrains;
- *refused*: the backend refuses the schema, so none of its cases is judged.

The playground's own validator (`core.text_check.errors_in`) is a column too, judged the
same way. Each group runs in a worker process under a time limit
(`playground.judging.workers`); a group past it is run again one backend at a time, so
only the backend that hung is marked. Beside that, the doctor's coverage labels for the
file's keyword on the same schema are compared with what the suite found: both say the
backend lets that keyword's breaks through, or neither does (`doctor_vs_suite`).

The table shipped beside this module (`conformance.json`, written by the command's
`--json`) gives the doctor a figure per keyword and backend (`figure`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from playground.core.constraints import JsonSchema
from playground.doctor import testers
from playground.errors import ConstraintError, WorkerDied, WorkTimeout

DRAFT = "draft2020-12"
VALIDATOR = "validator"  # the playground's own validator, a column beside the backends
LABELS = ("enforced", "not enforced", "rejected", "untested")
KINDS = ("under", "over")
SHIPPED = "conformance.json"
MAX_JOBS = 32
# Markdown written between these lines of an existing file; the rest of it is kept.

# What the suite's harness serves at http://localhost:1234 (its remotes/ folder, not in
# the copy here) and the playground never fetches (`core.schema`: remote $refs are refused
# at the check): these groups are skipped everywhere, by name.
_NEEDS_REMOTE = "needs a document the suite serves at http://localhost:1234 (remotes/)"
REMOTE_FILES: dict[str, str] = {
    "refRemote.json": f"every group {_NEEDS_REMOTE}",
}
REMOTE_GROUPS: dict[tuple[str, str], str] = {
    ("dynamicRef.json", "strict-tree schema, guards against misspelled properties"):
        f"$ref tree.json {_NEEDS_REMOTE}",
    ("dynamicRef.json", "tests for implementation dynamic anchor and reference link"):
        f"$ref extendible-dynamic-ref.json {_NEEDS_REMOTE}",
    ("dynamicRef.json", "$ref and $dynamicAnchor are independent of order - $defs first"):
        f"$ref extendible-dynamic-ref.json {_NEEDS_REMOTE}",
    ("dynamicRef.json", "$ref and $dynamicAnchor are independent of order - $ref first"):
        f"$ref extendible-dynamic-ref.json {_NEEDS_REMOTE}",
    ("dynamicRef.json", "$ref to $dynamicRef finds detached $dynamicAnchor"):
        f"$ref detached-dynamicref.json {_NEEDS_REMOTE}",
    ("vocabulary.json", "schema that uses custom metaschema with with no validation "
                        "vocabulary"):
        f"its $schema, a meta-schema without the validation vocabulary, {_NEEDS_REMOTE}",
    ("optional/cross-draft.json", "refs to historic drafts are processed as historic drafts"):
        f"$ref draft2019-09/ignore-prefixItems.json {_NEEDS_REMOTE}",
}
# The doctor's coverage rows a file speaks of, where the file is not named after one.
_DOCTOR_KEYWORDS: dict[str, tuple[str, ...]] = {"if-then-else": ("then", "else")}


@dataclass(frozen=True)
class Case:
    description: str
    data: Any
    valid: bool


@dataclass(frozen=True)
class Group:
    """One schema of the suite with its test instances."""

    file: str  # relative to the draft's folder: "minLength.json", "optional/format/email.json"
    index: int  # its place in the file
    description: str
    schema: Any
    cases: tuple[Case, ...]

    @property
    def keyword(self) -> str:
        """The table's row: the file's name without `.json` ("optional/format/email")."""
        return self.file.removesuffix(".json")

    @property
    def skipped(self) -> str | None:
        """Why the group is not run (it needs a remote document), or None."""
        return REMOTE_FILES.get(self.file) or REMOTE_GROUPS.get((self.file, self.description))


def doctor_keywords(keyword: str) -> tuple[str, ...]:
    """The coverage rows a file's groups are about (`format` for every format file)."""
    if keyword == "format" or keyword.startswith("optional/format/"):
        return ("format",)
    return _DOCTOR_KEYWORDS.get(keyword, (keyword,))


def draft_folder(folder: str | Path) -> Path:
    """The draft 2020-12 folder under `folder`: the suite's checkout, its `tests/`, or the
    draft's folder itself."""
    root = Path(folder)
    for candidate in (root, root / DRAFT, root / "tests" / DRAFT):
        if candidate.name == DRAFT and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no {DRAFT} folder in {folder} (expected {folder}/tests/{DRAFT})")


def load_suite(folder: str | Path, files: Iterable[str] | None = None) -> list[Group]:
    """Every group of the draft's files (optional/ included), in file order; `files`: only
    these (relative names, with or without `.json`)."""
    draft = draft_folder(folder)
    wanted = None if files is None else {f if f.endswith(".json") else f"{f}.json"
                                         for f in files}
    groups: list[Group] = []
    for path in sorted(draft.rglob("*.json")):
        name = path.relative_to(draft).as_posix()
        if wanted is not None and name not in wanted:
            continue
        for index, group in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            cases = tuple(Case(t["description"], t["data"], bool(t["valid"]))
                          for t in group["tests"])
            groups.append(Group(name, index, group["description"], group["schema"], cases))
    if wanted is not None and (missing := wanted - {g.file for g in groups}):
        raise FileNotFoundError(f"no {', '.join(sorted(missing))} in {draft}")
    return groups


def texts(data: Any) -> tuple[str, str]:
    """The two forms an instance is fed in: compact as a model might write it (non-ASCII
    kept), and indented with ASCII escapes (whitespace and `\\u` escapes in one)."""
    return testers.text_of(data), json.dumps(data, indent=2)


# ---- one group, in a worker ------------------------------------------------------------


def answers(backend: str, group: Group) -> dict[str, Any]:
    """{"refused": why} or {"answers": [[compact matches, indented matches], ...]}."""
    if backend == VALIDATOR:
        from playground.core.text_check import errors_in

        constraint = JsonSchema(group.schema)
        found = []
        for case in group.cases:
            try:
                found.append([not errors_in(constraint, text) for text in texts(case.data)])
            except Exception as exc:  # e.g. re.error: a pattern neither RE2 nor `re` reads
                return {"refused": f"the validator raised {type(exc).__name__}: {exc}"[:300]}
        return {"answers": found}
    reason = testers.refusal(backend, group.schema)
    if reason is not None:
        return {"refused": reason[:300]}
    try:  # accepted by the compiler's check, yet its matcher may not build (a `true` schema)
        tester = testers.compile_tester(backend, group.schema)
    except ConstraintError as exc:
        return {"refused": str(exc).removeprefix("json: ")[:300]}
    return {"answers": [[tester.test(text).matches for text in texts(case.data)]
                        for case in group.cases]}


def doctor_labels(group: Group, backends: list[str], time_limit_s: float
                  ) -> dict[str, dict[str, int]]:
    """Per backend, how many of the coverage rows for the file's keyword got each label."""
    from playground.doctor.coverage import coverage

    wanted = doctor_keywords(group.keyword)
    rows = [row for row in coverage(group.schema, backends, time_limit_s).rows
            if row.keyword in wanted]
    return {backend: dict(Counter(row.backends[backend] for row in rows
                                  if backend in row.backends)) for backend in backends}


def judge_group(group: Group, backends: list[str], time_limit_s: float,
                doctor: bool = True) -> dict[str, Any]:
    """The group's answers from every backend, and the doctor's labels (if `doctor`)."""
    out: dict[str, Any] = {"file": group.file, "index": group.index,
                           "group": group.description,
                           "backends": {backend: answers(backend, group) for backend in backends}}
    compilers = [backend for backend in backends if backend != VALIDATOR]
    if doctor and compilers:
        try:
            out["doctor"] = doctor_labels(group, compilers, time_limit_s)
        except Exception as exc:  # the doctor's own failure on an odd schema is a finding
            out["doctor_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return out


def bounded_group(group: Group, backends: list[str], time_limit_s: float,
                  doctor: bool = True) -> dict[str, Any]:
    """`judge_group` in a worker killed past its limit (the coverage's, and as long again
    for compiling and matching); past it, one backend at a time, so that a compiler that
    never returns costs its own column only."""
    from playground.judging import workers

    def call(names: list[str], with_doctor: bool) -> dict[str, Any]:
        found: dict[str, Any] = workers.call(
            judge_group, group, names, time_limit_s, with_doctor,
            timeout=2 * time_limit_s + 30, setup=partial(testers.warm, names))
        return found

    try:
        return call(backends, doctor)
    except (WorkTimeout, WorkerDied) as exc:
        first = str(exc)
    out: dict[str, Any] = {"file": group.file, "index": group.index,
                           "group": group.description, "backends": {},
                           "doctor_error": f"not asked: the group ran past its limit ({first})"}
    for backend in backends:
        try:
            out["backends"][backend] = call([backend], False)["backends"][backend]
        except (WorkTimeout, WorkerDied) as exc:
            out["backends"][backend] = {"timeout": str(exc)}
    return out


# ---- the whole suite -------------------------------------------------------------------


def default_jobs() -> int:
    """Groups at once: every core (the main process only waits on the workers), at most
    MAX_JOBS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def run_all(groups: list[Group], backends: list[str], time_limit_s: float = 20.0,
            jobs: int = 1, doctor: bool = True,
            progress: Callable[[int, int, Group], Any] = lambda done, total, group: None
            ) -> list[dict[str, Any]]:
    """`bounded_group` for every group not skipped, `jobs` at a time; results in order."""
    from playground.judging import workers

    todo = [group for group in groups if group.skipped is None]
    jobs = max(1, min(jobs, len(todo) or 1))
    results: list[dict[str, Any] | None] = [None] * len(todo)
    default_workers = workers.MAX_WORKERS
    workers.resize(max(default_workers, jobs))  # the pool grows for this run only
    try:
        if jobs == 1:  # in this thread: the worker is forked from it (no fork server)
            for index, group in enumerate(todo):
                results[index] = bounded_group(group, backends, time_limit_s, doctor)
                progress(index + 1, len(todo), group)
            return results  # type: ignore[return-value]
        pool = ThreadPoolExecutor(jobs, thread_name_prefix="conformance")
        futures = {pool.submit(bounded_group, group, backends, time_limit_s, doctor): index
                   for index, group in enumerate(todo)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                progress(done, len(todo), todo[futures[future]])
        except BaseException:  # Ctrl-C: stop now, not when every running group ends
            pool.shutdown(wait=False, cancel_futures=True)
            workers.stop_all()
            raise
        pool.shutdown()
        return results  # type: ignore[return-value]
    finally:
        workers.resize(default_workers)


def _empty_cell() -> dict[str, int]:
    # under_untyped: of the under, those whose schema names no `type` at its root (most of
    # the suite's: xgrammar applies a keyword only under the type it belongs to).
    return {"cases": 0, "agree": 0, "under": 0, "under_untyped": 0, "over": 0, "refused": 0,
            "timeouts": 0, "forms_differ": 0}


def _judged(case: Case, answer: list[bool]) -> str | None:
    """"under", "over", or None where every form got the label's answer."""
    if case.valid and not all(answer):
        return "over"
    if not case.valid and any(answer):
        return "under"
    return None


def summarize(groups: list[Group], results: list[dict[str, Any]], backends: list[str]
              ) -> dict[str, Any]:
    """The table: per keyword (file) and backend, cases / agree / under / over / refused /
    timeouts, and the doctor against the suite; with the cases behind each under and
    over ("disagreements")."""
    by_name = {(g.file, g.index): g for g in groups}
    rows: dict[str, dict[str, Any]] = {}
    disagreements: list[dict[str, Any]] = []
    doctor_differences: list[dict[str, Any]] = []
    for group in groups:  # every row, even one whose groups were all skipped
        rows.setdefault(group.keyword, {"cases": 0, "skipped": 0, "backends": {}})
        if group.skipped is not None:
            rows[group.keyword]["skipped"] += len(group.cases)
        else:
            rows[group.keyword]["cases"] += len(group.cases)
    for result in results:
        group = by_name[(result["file"], result["index"])]
        row = rows[group.keyword]
        untyped = isinstance(group.schema, dict) and "type" not in group.schema
        for backend in backends:
            cell = row["backends"].setdefault(backend, _empty_cell())
            found = result["backends"].get(backend, {"timeout": "not run"})
            cell["cases"] += len(group.cases)
            if "timeout" in found:
                cell["timeouts"] += len(group.cases)
                continue
            if "refused" in found:
                cell["refused"] += len(group.cases)
                continue
            for case, answer in zip(group.cases, found["answers"], strict=True):
                kind = _judged(case, answer)
                cell["forms_differ"] += answer[0] != answer[1]
                if kind is None:
                    cell["agree"] += 1
                    continue
                cell[kind] += 1
                cell["under_untyped"] += kind == "under" and untyped
                disagreements.append({
                    "keyword": group.keyword, "group": group.description,
                    "case": case.description, "backend": backend, "kind": kind,
                    "forms": "both" if answer[0] == answer[1] else
                             "compact" if answer[0] != case.valid else "indented"})
        _compare_doctor(group, result, backends, row, doctor_differences)
    totals = {backend: _empty_cell() for backend in backends}
    for row in rows.values():
        for backend, cell in row["backends"].items():
            for key, value in cell.items():
                totals[backend][key] += value
    skipped = [{"keyword": g.keyword, "group": g.description, "cases": len(g.cases),
                "reason": g.skipped} for g in groups if g.skipped is not None]
    return {"rows": rows, "totals": totals, "skipped": skipped,
            "disagreements": disagreements, "doctor_differences": doctor_differences}


def _compare_doctor(group: Group, result: dict[str, Any], backends: list[str],
                    row: dict[str, Any], differences: list[dict[str, Any]]) -> None:
    """Where both speak of this group's keyword for a backend (the doctor labelled it
    enforced or not enforced; the suite had an invalid instance for an accepted schema),
    whether they agree that the backend lets its breaks through."""
    labels = result.get("doctor")
    if labels is None:
        if "doctor_error" in result:
            row.setdefault("doctor_errors", []).append(
                {"group": group.description, "error": result["doctor_error"]})
        return
    for backend in backends:
        if backend not in labels:
            continue
        counts = labels[backend]
        doctor = row.setdefault("doctor", {}).setdefault(
            backend, {**{label: 0 for label in LABELS}, "agree": 0, "doctor_only": 0,
                      "suite_only": 0})
        for label, count in counts.items():
            doctor[label] += count
        found = result["backends"].get(backend, {})
        invalid = [case for case in group.cases if not case.valid]
        if not (counts.get("enforced") or counts.get("not enforced")) \
                or "answers" not in found or not invalid:
            continue
        doctor_through = bool(counts.get("not enforced"))
        suite_through = any(_judged(case, answer) == "under"
                            for case, answer in zip(group.cases, found["answers"], strict=True))
        if doctor_through == suite_through:
            doctor["agree"] += 1
            continue
        kind = "doctor_only" if doctor_through else "suite_only"
        doctor[kind] += 1
        differences.append({"keyword": group.keyword, "group": group.description,
                            "backend": backend, "kind": kind})


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("xgrammar", "llguidance", "outlines_core", "vllm", "jsonschema"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> str:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return f"{platform.machine()} CPU, {cores} cores, {platform.system()}"


def conformance(folder: str | Path, backends: list[str] | None = None, jobs: int | None = None,
                files: Iterable[str] | None = None, time_limit_s: float = 20.0,
                doctor: bool = True) -> dict[str, Any]:
    """The whole report (see `summarize`), with what it ran on and how long it took."""
    start = time.monotonic()
    groups = load_suite(folder, files)
    names = backends or [VALIDATOR, *testers.available_backends()]
    jobs = jobs or default_jobs()

    def progress(done: int, total: int, group: Group) -> None:
        print(f"[{done}/{total}] {group.file}: {group.description}", file=sys.stderr,
              flush=True)

    results = run_all(groups, names, time_limit_s, jobs, doctor, progress)
    report = {"suite": str(draft_folder(folder)), "draft": DRAFT, "backends": names,
              "cases": sum(len(g.cases) for g in groups), "jobs": jobs, "machine": machine(),
              "versions": versions(), **summarize(groups, results, names),
              "time_s": round(time.monotonic() - start, 1)}
    return report


def table(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the list of cases: what stdout shows, and what is shipped as
    `conformance.json`."""
    return {key: value for key, value in report.items() if key != "disagreements"}


# ---- what the doctor reads -------------------------------------------------------------


def shipped() -> dict[str, Any] | None:
    """The table shipped with the package (the command's `--json`), or None."""
    try:
        text = importlib.resources.files("playground.doctor").joinpath(SHIPPED).read_text(
            encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    return json.loads(text)  # type: ignore[no-any-return]


def figure(keyword: str, backend: str, report: dict[str, Any] | None = None
           ) -> dict[str, Any] | None:
    """The suite's figure for a coverage row: its keyword's file (`format`: the format
    files summed), for this backend, from `report` or the shipped table; None if none.
    `{"cases", "agree", "under", "over", "refused", "timeouts", "files"}`."""
    report = report if report is not None else shipped()
    if report is None:
        return None
    total: dict[str, Any] = {}
    files = []
    for name, row in report["rows"].items():
        if keyword not in doctor_keywords(name) or backend not in row["backends"]:
            continue
        files.append(name)
        for key, value in row["backends"][backend].items():
            total[key] = total.get(key, 0) + value
    return {**total, "files": files} if files else None
