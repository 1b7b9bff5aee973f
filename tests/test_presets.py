import json
from enum import Enum
from pathlib import Path

import pytest
from pydantic import BaseModel

from playground.presets import PRESETS_DIR, PresetError, load_preset, load_presets
from playground.validation import validate

PRESETS = load_presets()


def test_at_least_fourteen_presets_covering_every_mode():
    assert len(PRESETS) >= 14
    assert {p.mode for p in PRESETS.values()} == {"choice", "regex", "json", "grammar"}


@pytest.mark.parametrize("preset", PRESETS.values(), ids=list(PRESETS))
def test_example_output_validates(preset):
    assert validate(preset.to_constraint(), preset.example_output).ok


class CarType(str, Enum):  # noqa: UP042 (as in the classic example)
    sedan = "sedan"
    suv = "SUV"
    truck = "Truck"
    coupe = "Coupe"


class CarDescription(BaseModel):
    brand: str
    model: str
    car_type: CarType


def test_car_schema_is_the_pydantic_models():
    assert PRESETS["Iconic 90s car"].constraint == CarDescription.model_json_schema()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nmode: choice\nprompt: p\nconstraint: [a]\nexample_output: a\nextra: 1",
         "Extra inputs are not permitted"),
        ("name: x\nmode: colour\nprompt: p\nconstraint: [a]\nexample_output: a", "mode"),
        ("name: x\nmode: choice\nprompt: p\nconstraint: [a]\nexample_output: b",
         "example_output is invalid"),
        ("name: x\nmode: regex\nprompt: p\nconstraint: 'a('\nexample_output: a", "regex"),
        ("name: x\nmode: choice\nprompt: p\nexample_output: a", "exactly one of"),
        ("name: x\nmode: choice\nprompt: p\nconstraint: [a]\nexample_output: a\n"
         "settings: {max_tokens: -1}", "max_tokens"),
    ],
)
def test_bad_preset_files_are_refused_with_the_file_name(tmp_path: Path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(PresetError, match=message) as caught:
        load_preset(path)
    assert str(caught.value).startswith("bad.yaml")


def test_sidecar_schema_files_are_not_presets():
    names = {p.name for p in load_presets(PRESETS_DIR).values()}
    assert all(not n.endswith(".json") for n in names)
    assert json.loads((PRESETS_DIR / "03-car.schema.json").read_text())["title"] == \
        "CarDescription"
