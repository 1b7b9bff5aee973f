"""The conformance report as the Markdown tables of docs/conformance.md
(`python -m playground conformance --markdown FILE`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

# The generated tables go between these lines of the file; the prose around them is kept.
BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"

def _cell(cell: dict[str, int] | None) -> str:
    if cell is None:
        return ""
    if cell["refused"] == cell["cases"] and cell["cases"]:
        return "refused"
    parts = [f"{'**' if kind == 'under' else ''}{cell[kind]} {kind}"
             f"{'**' if kind == 'under' else ''}"
             for kind in ("under", "over", "refused", "timeouts") if cell[kind]]
    return ", ".join(parts) or "ok"


def markdown(report: dict[str, Any]) -> str:
    """The tables of docs/conformance.md."""
    names = report["backends"]
    lines = [f"Draft 2020-12, {report['cases']} cases; {report['machine']}, "
             f"{report['jobs']} jobs: {report['time_s']:g} s. Versions: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v) + ".", "",
             "| backend | judged | agree | under (no `type`) | over | refused | timeouts | "
             "keywords without a miss |", "|---|---|---|---|---|---|---|---|"]
    for backend in names:
        total = report["totals"][backend]
        clean = sum(1 for row in report["rows"].values()
                    if (cell := row["backends"].get(backend)) and cell["cases"]
                    and cell["agree"] == cell["cases"])
        judged = total["cases"] - total["refused"] - total["timeouts"]
        lines.append(f"| {backend} | {judged} | {total['agree']} | {total['under']} "
                     f"({total['under_untyped']}) | "
                     f"{total['over']} | {total['refused']} | {total['timeouts']} | "
                     f"{clean} of {len(report['rows'])} |")
    lines += ["", "Per keyword (the suite's file): cases, then per backend the cases it "
              "let through though invalid (**under**), refused though valid (over), and "
              "could not judge because it refused the schema (refused); ok: every case as "
              "labelled.", "",
              "| keyword | cases | " + " | ".join(names) + " |",
              "|---|---|" + "---|" * len(names)]
    for keyword, row in report["rows"].items():
        skipped = f" ({row['skipped']} skipped)" if row["skipped"] else ""
        cells = [_cell(row["backends"].get(backend)) for backend in names]
        lines.append(f"| <a id=\"{_anchor(keyword)}\"></a>`{keyword}` | {row['cases']}"
                     f"{skipped} | " + " | ".join(cells) + " |")
    differences = report.get("doctor_differences", [])
    lines += ["", "The doctor against the suite, where both speak of a group's keyword: "
              f"{_doctor_agree(report)}."]
    if differences:
        lines += ["", "| keyword | group | backend | who sees a break let through |",
                  "|---|---|---|---|"]
        lines += [f"| `{d['keyword']}` | {d['group']} | {d['backend']} | "
                  f"{'the doctor only' if d['kind'] == 'doctor_only' else 'the suite only'} |"
                  for d in differences]
    return "\n".join(lines) + "\n"


def _doctor_agree(report: dict[str, Any]) -> str:
    counts: Counter[str] = Counter()
    for row in report["rows"].values():
        for cell in row.get("doctor", {}).values():
            counts.update({key: cell[key] for key in ("agree", "doctor_only", "suite_only")})
    return (f"{counts['agree']} agree, {counts['doctor_only']} only the doctor sees a break "
            f"let through, {counts['suite_only']} only the suite does")


def _anchor(keyword: str) -> str:
    return "kw-" + keyword.replace("/", "-").lower()


def write_markdown(path: str | Path, report: dict[str, Any]) -> None:
    """The tables into `path`: between its BEGIN and END lines where it has them (the
    prose around is kept), else the whole file."""
    target = Path(path)
    text = markdown(report)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    if BEGIN in old and END in old:
        head, _, rest = old.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = f"{head}{BEGIN}\n{text}{END}{tail}"
    target.write_text(text, encoding="utf-8")
