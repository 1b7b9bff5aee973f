"""The validator must agree with every `valid` label of JSONSchemaBench's instances.

Where it cannot judge a case, the case is listed in UNJUDGEABLE with the reason, and the
README names it too.
"""

import json

import pytest
from support import ROOT

from playground.core.schema import check_schema, instance_errors

BENCH = ROOT / "tests" / "data" / "jsonschemabench"
# (file, test index): why the validator's answer differs from the label.
UNJUDGEABLE: dict[tuple[str, int], str] = {}


def cases():
    for path in sorted(BENCH.glob("*.json")):
        data = json.loads(path.read_text())
        for index, test in enumerate(data["tests"]):
            yield pytest.param(data["schema"], test, id=f"{path.stem}[{index}]",
                               marks=_mark(path.name, index))


def _mark(name, index):
    reason = UNJUDGEABLE.get((name, index))
    return [pytest.mark.xfail(reason=reason, strict=True)] if reason else []


pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason=f"no data at {BENCH}")


@pytest.mark.parametrize(("schema", "test"), list(cases()) if BENCH.is_dir() else [])
def test_validator_agrees_with_label(schema, test):
    check_schema(schema)
    errors = instance_errors(schema, test["data"])
    assert (not errors) == test["valid"], errors
