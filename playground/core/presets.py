"""Presets are data files (the top-level presets/ folder, YAML or JSON, shipped in the
wheel as the package data of `playground.core.presets`), validated here and nowhere else."""

from __future__ import annotations

import json
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from playground.core.constraints import Constraint, Mode, from_text
from playground.core.settings import SamplingSettings
from playground.core.text_check import errors_in
from playground.errors import (
    ConstraintError,
    PresetError,
)


def _presets_dir() -> Traversable:
    """Package data through importlib.resources (an installed wheel, an editable install);
    a source tree that was never installed reads the top-level folder itself. A leftover
    `playground/presets/` folder (the presets' old home, kept by git for its __pycache__)
    imports as an empty namespace package: it is passed over."""
    try:
        found = resources.files("playground.presets")
    except ModuleNotFoundError:
        found = None
    if found is not None and found.joinpath("__init__.py").is_file():
        return found
    return Path(__file__).resolve().parents[2] / "presets"


PRESETS_DIR: Traversable = _presets_dir()


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    mode: Mode
    description: str = ""
    prompt: str = Field(min_length=1)
    # Choices as a list, a regex or grammar as a string, a schema as an object; or a
    # sidecar file (path relative to the preset) for anything large.
    constraint: str | list[str] | dict[str, Any] | None = None
    constraint_file: str | None = None
    settings: SamplingSettings = Field(default_factory=SamplingSettings)
    example_output: str

    @model_validator(mode="after")
    def _one_constraint(self) -> Preset:
        if (self.constraint is None) == (self.constraint_file is None):
            raise ValueError("give exactly one of constraint or constraint_file")
        return self

    @property
    def constraint_text(self) -> str:
        """The constraint as a user would type it in the mode's editor."""
        value = self.constraint
        if isinstance(value, list):
            return "\n".join(value)
        if isinstance(value, dict):
            return json.dumps(value, indent=2)
        return value or ""

    def to_constraint(self) -> Constraint:
        return from_text(self.mode, self.constraint_text)


def load_preset(path: Traversable, folder: Traversable | None = None) -> Preset:
    """One preset file; a sidecar it names is read from `folder` (default: the file's own)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("constraint_file"):
            base = folder if folder is not None else path.parent  # a Path when no folder
            sidecar = base / data.pop("constraint_file")
            raw = sidecar.read_text(encoding="utf-8")
            data["constraint"] = json.loads(raw) if sidecar.name.endswith(".json") else raw
        preset = Preset.model_validate(data)
        errors = errors_in(preset.to_constraint(), preset.example_output)
    except (OSError, yaml.YAMLError, ValidationError, ConstraintError) as exc:
        raise PresetError(f"{path.name}: {exc}") from None
    if errors:
        raise PresetError(f"{path.name}: example_output is invalid: {errors}")
    return preset


def load_presets(directory: Traversable = PRESETS_DIR) -> dict[str, Preset]:
    """Every preset in `directory` (a folder or package data), by name, in file-name order."""
    presets: dict[str, Preset] = {}
    for path in sorted(directory.iterdir(), key=lambda entry: entry.name):
        if not path.name.endswith((".yaml", ".yml", ".json")) or ".schema." in path.name:
            continue
        preset = load_preset(path, directory)
        if preset.name in presets:
            raise PresetError(f"{path.name}: preset name {preset.name!r} is used twice")
        presets[preset.name] = preset
    return presets
