"""The output validator against the official JSON Schema Test Suite, draft 2020-12: every
`valid` label of every file (optional/ too), as `instance_errors` reads the instance and as
`errors_in` reads its text (compact, and indented with `\\u` escapes).

Groups that need a document the suite serves from its remotes/ folder are skipped by name
(`conformance.REMOTE_FILES`, `REMOTE_GROUPS`). Every other disagreement is listed below
with its count and why; a count that changes (a fix, or a new break) fails the test.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from playground.core.constraints import JsonSchema
from playground.core.schema import instance_errors
from playground.core.text_check import errors_in
from playground.doctor.conformance import Case, Group, load_suite, texts

SUITE = Path(__file__).resolve().parents[1] / "data" / "json-schema-test-suite"
GROUPS = load_suite(SUITE)
FILES = sorted({group.file for group in GROUPS})

_ANNOTATION = ("2020-12 makes `format` an annotation by default (format-annotation "
               "vocabulary); the playground's validator asserts formats on purpose, as the "
               "backends do, and is judged by optional/format/ instead")
_DEPENDENCIES = ("`dependencies` is draft 7's keyword (2019-09 split it into "
                 "dependentRequired and dependentSchemas); jsonschema's 2020-12 validator "
                 "ignores it, which the spec allows: this file is optional")
_RE2_S = ("RE2's `\\s` is [\\t\\n\\f\\r ] (ASCII); ECMA-262's adds \\v, U+00A0, U+FEFF and "
          "the Unicode spaces and line separators")
_NO_PROPERTY_NAMES = ("RE2 knows Unicode categories by their short names (`\\p{L}`, "
                      "`\\p{Nd}`), not the long `\\p{Letter}` / `\\p{digit}`, and Python `re` "
                      "knows neither: the validator raises re.error (the schema check "
                      "refuses such a schema first: the meta-schema's `format: regex`)")
_NO_CONTROL = ("`\\cC` control escapes: neither RE2 nor Python `re` has them (re.error; the "
               "schema check refuses such a schema first)")
_REGEX_FORMAT = ("the `regex` format is checked with Python `re.compile` (jsonschema), not "
                 "an ECMA-262 parser")

# (file, group) -> (cases where the validator disagrees with the label, why).
EXPLAINED: dict[tuple[str, str], tuple[int, str]] = {
    **{("format.json", f"{name} format"): (1, _ANNOTATION) for name in (
        "date", "date-time", "duration", "email", "hostname", "idn-email", "idn-hostname",
        "ipv4", "ipv6", "iri", "iri-reference", "json-pointer", "regex",
        "relative-json-pointer", "time", "uri", "uri-reference", "uri-template", "uuid")},
    **{("optional/dependencies-compatibility.json", group): (count, _DEPENDENCIES)
       for group, count in (("boolean subschemas", 2),
                            ("dependencies with escaped characters", 2),
                            ("multiple dependents required", 3),
                            ("schema dependencies with escaped characters", 3),
                            ("single dependency", 1), ("single schema dependency", 3))},
    ("optional/ecmascript-regex.json", "ECMA 262 \\S matches everything but whitespace"):
        (5, _RE2_S),
    ("optional/ecmascript-regex.json", "ECMA 262 \\s matches whitespace"): (5, _RE2_S),
    ("optional/ecmascript-regex.json",
     "ECMA 262 regex escapes control codes with \\c and lower letter"): (2, _NO_CONTROL),
    ("optional/ecmascript-regex.json",
     "ECMA 262 regex escapes control codes with \\c and upper letter"): (2, _NO_CONTROL),
    ("optional/ecmascript-regex.json", "pattern with non-ASCII digits"):
        (3, _NO_PROPERTY_NAMES),
    ("optional/ecmascript-regex.json", "patternProperties with non-ASCII digits"):
        (3, _NO_PROPERTY_NAMES),
    ("optional/ecmascript-regex.json", "patterns always use unicode semantics with pattern"):
        (4, _NO_PROPERTY_NAMES),
    ("optional/ecmascript-regex.json",
     "patterns always use unicode semantics with patternProperties"): (4, _NO_PROPERTY_NAMES),
    ("pattern.json", "pattern with Unicode property escape requires unicode mode"):
        (3, _NO_PROPERTY_NAMES),
    ("patternProperties.json", "patternProperties with Unicode property escape"):
        (2, _NO_PROPERTY_NAMES),
    **{("optional/format/ecmascript-regex.json", group): (count, _REGEX_FORMAT)
       for group, count in (("ECMA 262 character classes and escapes", 3),
                            ("ECMA 262 lookbehind is valid, including variable width", 1),
                            ("ECMA 262 named groups and backreferences are valid", 2),
                            ("Python-specific regular expression syntax is not valid ECMA 262",
                             3),
                            ("\\a is not an ECMA 262 control escape", 1),
                            ("global inline flag groups are not valid ECMA 262", 2))},
    # jsonschema's format checkers, and the packages behind them (jsonschema[format-nongpl]).
    ("optional/format/date-time.json", "validation of date-time strings"):
        (3, "rfc3339-validator refuses leap seconds (:60) and its regex's `$` lets a "
            "trailing newline through"),
    ("optional/format/duration.json", "validation of duration strings"):
        (10, "isoduration parses ISO 8601 durations, wider than RFC 3339's ABNF (fractions, "
             "signs, weeks with other units, Y and D without M)"),
    ("optional/format/email.json", "validation of e-mail addresses"):
        (10, "jsonschema's email check is `\"@\" in instance`"),
    ("optional/format/hostname.json", "validation of A-label (punycode) host names"):
        (23, "fqdn checks the ASCII shape of each label; it never decodes an `xn--` A-label "
             "to check it against IDNA2008"),
    ("optional/format/hostname.json", "validation of host names"):
        (3, "fqdn allows a trailing dot (an absolute name), a trailing newline and the "
            "KELVIN SIGN"),
    ("optional/format/idn-hostname.json", "validation of internationalized host names"):
        (1, "idna does not apply RFC 5893's Bidi rule to a digit-first label"),
    ("optional/format/idn-hostname.json",
     "validation of separators in internationalized host names"):
        (4, "idna allows a trailing (full or ideographic) dot"),
    ("optional/format/iri.json", "validation of IRIs"):
        (4, "rfc3987-syntax's IRI grammar refuses a compressed IPv6 host, an uppercase "
            "IPvFuture letter and supplementary-plane characters"),
    ("optional/format/relative-json-pointer.json",
     "validation of Relative JSON Pointers (RJP)"):
        (2, "jsonschema's own check reads digits with str.isdigit (Arabic-Indic digits "
            "pass) and refuses `100` (a zero after the first digit)"),
    ("optional/format/time.json", "validation of time strings"):
        (6, "rfc3339-validator refuses leap seconds (:60)"),
    ("optional/format/uri-reference.json", "validation of URI References"):
        (1, "rfc3986-validator allows a leading zero in an IPv6 literal's IPv4 part"),
    ("optional/format/uri-template.json", "format: uri-template"):
        (9, "uri-template's validate is looser than RFC 6570 in places (`..`, `{v:01}`, "
            "spaces, trailing commas, defaults) and stricter in others (`{%41}`, "
            "`{v:1000}`)"),
    ("optional/format/uri.json", "validation of URIs"):
        (1, "rfc3986-validator allows a leading zero in an IPv6 literal's IPv4 part"),
    ("optional/format/uuid.json", "uuid format"):
        (3, "jsonschema checks `uuid.UUID(s)` and the four hyphens; UUID() reads its hex "
            "with int(), which takes `_` and Unicode digits, and ignores a trailing `-`"),
}


def verdicts(group: Group, case: Case) -> set[bool | str]:
    """What the validator says of the instance, as data and as each text form."""
    found: set[bool | str] = set()
    constraint = JsonSchema(group.schema)
    for judge in (lambda: instance_errors(group.schema, case.data),
                  *[lambda text=text: errors_in(constraint, text) for text in texts(case.data)]):
        try:
            found.add(not judge())
        except Exception as exc:  # a pattern neither RE2 nor Python `re` can read
            found.add(type(exc).__name__)
    return found


@pytest.mark.parametrize("file", FILES)
def test_the_validator_agrees_with_every_label(file):
    disagree: Counter[tuple[str, str]] = Counter()
    for group in GROUPS:
        if group.file != file or group.skipped is not None:
            continue
        for case in group.cases:
            if verdicts(group, case) != {case.valid}:
                disagree[(file, group.description)] += 1
    expected = {key: count for key, (count, _) in EXPLAINED.items() if key[0] == file}
    assert dict(disagree) == expected


def test_each_skipped_group_names_a_remote_document():
    skipped = [group for group in GROUPS if group.skipped is not None]
    assert {g.file for g in skipped} >= {"refRemote.json"}
    for group in skipped:
        assert "localhost:1234" in json.dumps(group.schema), group.description


@pytest.mark.parametrize(("pattern", "text", "valid"), [
    (r"^\d+$", "42", True),
    (r"^\d+$", "٣", False),  # ECMA-262's \d is ASCII, as RE2's and xgrammar's are
    (r"^\w+$", "é", False),
    (r"^\p{L}+$", "π", True),  # a Unicode category: RE2 reads it, Python re cannot
    (r"^(?=a)a$", "a", True),  # a lookahead: RE2 refuses it, Python re runs it
    (r"^a$", "a\n", False),  # `$` ends the text, not a line before a final newline
])
def test_a_pattern_is_read_as_ecma_262_as_far_as_re2_goes(pattern, text, valid):
    schema = {"type": "string", "pattern": pattern}
    assert (not instance_errors(schema, text)) is valid
    properties = {"type": "object", "patternProperties": {pattern: {"type": "integer"}},
                  "additionalProperties": False}
    assert (not instance_errors(properties, {text: 1})) is valid
    # A name the pattern matches is typed by it; any other is an additional property.
    assert ("is not of type 'integer'" in instance_errors(properties, {text: "x"})[0]) is valid
