"""The official JSON Schema Test Suite through the backends (`playground.doctor.conformance`):
what one group's answers come to, the shipped table against a fresh run of a few files,
the doctor's labels against the suite's table, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.cli import main
from playground.doctor import conformance, conformance_markdown
from playground.doctor.conformance import Case, Group

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "data" / "json-schema-test-suite"
SHIPPED = conformance.shipped()
CPU = ["validator", "xgrammar", "guidance", "outlines"]  # no vLLM: its import takes a minute

# (schema, instance, valid by the suite, backend, what the backend makes of it)
CASES = [
    # xgrammar applies a keyword only under its type: the suite's schemas rarely name one.
    ({"minLength": 2}, "f", False, "xgrammar", "under"),
    ({"type": "string", "minLength": 2}, "f", False, "xgrammar", None),
    ({"minLength": 2}, "f", False, "guidance", None),
    # Strict mode: no item past the prefixItems, though the schema allows any.
    ({"prefixItems": [{"type": "boolean"}]}, [True, 1], True, "xgrammar", "over"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1], False,
     "xgrammar", "under"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, [1, 1], False,
     "guidance", "refused"),
    ({"type": "string", "format": "date"}, "2021-02-29", False, "guidance", "under"),
    ({"type": "integer", "maximum": 3}, 4, False, "outlines", "under"),
    ({"maximum": 3}, 4, False, "outlines", "refused"),  # its regex needs a type
    ({"type": "string", "format": "email"}, "2962", True, "validator", "over"),
]


def _outcome(group: Group, backend: str) -> str | None:
    found = conformance.answers(backend, group)
    if "refused" in found:
        return "refused"
    return conformance._judged(group.cases[0], found["answers"][0])


@pytest.mark.parametrize(("schema", "data", "valid", "backend", "expected"), CASES)
def test_a_case_is_under_over_refused_or_as_labelled(schema, data, valid, backend, expected):
    group = Group("x.json", 0, "made here", schema, (Case("one", data, valid),))
    assert _outcome(group, backend) == expected


def test_a_whitespace_only_difference_names_its_form():
    group = Group("const.json", 0, "const with array", {"const": [False]},
                  (Case("same array is valid", [False], True),))
    result = conformance.judge_group(group, ["xgrammar"], 10.0, doctor=False)
    summary = conformance.summarize([group], [result], ["xgrammar"])
    assert summary["disagreements"] == [{
        "keyword": "const", "group": "const with array", "case": "same array is valid",
        "backend": "xgrammar", "kind": "over", "forms": "indented"}]
    assert summary["rows"]["const"]["backends"]["xgrammar"]["forms_differ"] == 1


# ---- the shipped table against a fresh run ------------------------------------------------

FRESH_FILES = ["minLength.json", "not.json", "if-then-else.json", "optional/format/date.json"]


@pytest.fixture(scope="module")
def fresh() -> dict:
    if SHIPPED is None:
        pytest.skip("no conformance.json shipped")
    return conformance.conformance(SUITE, CPU, jobs=2, files=FRESH_FILES)


@pytest.mark.parametrize("backend", CPU)
@pytest.mark.parametrize("file", FRESH_FILES)
def test_the_shipped_table_is_what_the_suite_gives_now(fresh, file, backend):
    keyword = file.removesuffix(".json")
    now, shipped = fresh["rows"][keyword], SHIPPED["rows"][keyword]
    assert now["backends"][backend] == shipped["backends"][backend]
    if backend != "validator":
        assert now.get("doctor", {}).get(backend) == shipped.get("doctor", {}).get(backend)


def test_every_row_of_the_shipped_table_adds_up():
    for keyword, row in SHIPPED["rows"].items():
        for backend, cell in row["backends"].items():
            parts = cell["agree"] + cell["under"] + cell["over"] + cell["refused"] \
                + cell["timeouts"]
            assert parts == cell["cases"] == row["cases"], (keyword, backend)


# ---- the doctor's labels against the suite's table ----------------------------------------

_FORMATS = ("llguidance's format regexes check a value's shape, not the calendar (29 "
            "February of a year that is not a leap year), a leap second off 23:59, a host "
            "name's overall length or its punycode (IDNA) labels; the doctor's one break "
            "per keyword is a plainly malformed string, which it stops")
_UNEVALUATED = ("the suite's instance rests on the rule that a property evaluated by a "
                "sibling of an `allOf` is still unevaluated inside it; the doctor's break, an "
                "unknown property, is stopped")

# (keyword, group, backend without `vllm:`) -> why the doctor and the suite differ there
# on whether the backend lets the keyword's breaks through.
EXPLAINED = {
    ("items", "items and subitems", "outlines"):
        "the instance outlines lets through breaks `required` of a referenced sub-item "
        "(`{}`), not `items`, whose rows the doctor labels",
    ("items", "items does not look in applicators, valid case", "xgrammar"):
        "xgrammar allows one item only here (it refuses the valid [5, 5] as well), so its "
        "refusing the suite's [3, 5] says nothing of `items`; the doctor's [3] goes through",
    ("multipleOf", "float division = inf", "xgrammar"):
        "the suite's one invalid instance is 1e308, which the integer grammar never writes; "
        "the doctor's -1, not a multiple of 0.123456789, goes through",
    ("multipleOf", "float division = inf", "outlines"):
        "the suite's one invalid instance is 1e308, which outlines' integer regex never "
        "matches; the doctor's -1, not a multiple of 0.123456789, goes through",
    ("not", "forbidden property", "xgrammar"):
        "xgrammar refuses the suite's invalid instance for its other property (`bar`: "
        "strict mode allows only named properties, so it refuses the valid instance "
        "too), not for `not`; the doctor's document with `foo` alone goes through",
    ("optional/format/date-time", "validation of date-time strings", "guidance"): _FORMATS,
    ("optional/format/date", "validation of date strings", "guidance"): _FORMATS,
    ("optional/format/hostname", "validation of host names", "guidance"): _FORMATS,
    ("optional/format/hostname", "validation of A-label (punycode) host names", "guidance"):
        _FORMATS,
    ("optional/format/time", "validation of time strings", "guidance"): _FORMATS,
    ("unevaluatedProperties",
     "nested unevaluatedProperties, outer true, inner false, properties outside",
     "outlines"): _UNEVALUATED,
    ("unevaluatedProperties", "in-place applicator siblings, allOf has unevaluated",
     "xgrammar"): _UNEVALUATED,
}


def test_the_doctor_agrees_with_the_suite_wherever_both_speak_but_where_explained():
    found = {(d["keyword"], d["group"], d["backend"].removeprefix("vllm:"))
             for d in SHIPPED["doctor_differences"]}
    assert found == set(EXPLAINED)
    agree = sum(cell["agree"] for row in SHIPPED["rows"].values()
                for cell in row.get("doctor", {}).values())
    assert agree > 10 * len(SHIPPED["doctor_differences"])  # both speak, mostly alike


@pytest.mark.parametrize(("keyword", "backend", "files"), [
    ("minLength", "xgrammar", ["minLength"]),
    ("format", "guidance", None),  # every format file summed
    ("then", "xgrammar", ["if-then-else"]),
    ("no such keyword", "xgrammar", []),
])
def test_a_coverage_row_finds_its_figure(keyword, backend, files):
    found = conformance.figure(keyword, backend)
    if files == []:
        assert found is None
        return
    assert files is None or found["files"] == files
    assert found["cases"] == sum(SHIPPED["rows"][f]["backends"][backend]["cases"]
                                 for f in found["files"])
    if keyword == "format":
        assert "format" in found["files"] and "optional/format/date" in found["files"]


# ---- docs and the command -----------------------------------------------------------------


def test_the_docs_hold_the_shipped_table():
    text = (ROOT / "docs" / "conformance.md").read_text(encoding="utf-8")
    begin, end = conformance_markdown.BEGIN, conformance_markdown.END
    between = text.partition(begin)[2].partition(end)[0]
    assert between.strip() == conformance_markdown.markdown(SHIPPED).strip()


def test_markdown_goes_between_the_markers_and_keeps_the_prose(tmp_path):
    target = tmp_path / "doc.md"
    begin, end = conformance_markdown.BEGIN, conformance_markdown.END
    target.write_text(f"# Title\n\nprose\n\n{begin}\nold\n{end}\n\nmore\n")
    conformance_markdown.write_markdown(target, SHIPPED)
    text = target.read_text()
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith("\n\nmore\n")
    assert "old" not in text and "| keyword | cases |" in text


def test_the_command_prints_the_table(capsys, tmp_path):
    report = tmp_path / "report.json"
    code = main(["conformance", str(SUITE), "--file", "minLength.json", "--backend",
                 "validator", "--backend", "guidance", "--jobs", "1", "--json", str(report)])
    assert code == 0
    table = json.loads(capsys.readouterr().out)
    assert table["rows"]["minLength"]["backends"]["validator"]["agree"] == 7
    assert "disagreements" not in table and "disagreements" in json.loads(report.read_text())


@pytest.mark.parametrize(("args", "message"), [
    (["conformance"], "give the suite's folder"),
    (["conformance", "/nonexistent"], "no draft2020-12 folder"),
    (["conformance", str(SUITE), "--file", "nothing.json"], "no nothing.json"),
    (["conformance", "--mask-diff", "presets/03-car.schema.json"], "give --text"),
])
def test_the_command_refuses_what_it_cannot_run(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err
