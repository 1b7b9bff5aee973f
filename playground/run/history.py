"""A browser session's runs: kept, listed, saved to a file and loaded back.

The history lives in the session (a `gr.State`), never in a place shared between users.
With `--history-dir` each session also has its own file there, named by a random id the
server made; a name a user typed never becomes a path.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from playground.core.constraints import Mode
from playground.core.limits import active
from playground.core.settings import SamplingSettings
from playground.core.text_fields import check_json_texts
from playground.errors import InputError
from playground.run.result import RunResult

FORMAT = "structured-playground-history"
COLUMNS = ["#", "time", "mode", "prompt", "constrained", "unconstrained",
           "tokens/s constrained", "tokens/s unconstrained"]
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")


class Run(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int = Field(ge=1)
    created: str  # ISO 8601, UTC
    mode: Mode
    prompt: str
    constraint: str  # as the editor held it
    settings: SamplingSettings
    engine: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    # Strict: a file's unknown keys and non-finite numbers are refused (playground.run.result).
    constrained: RunResult
    unconstrained: RunResult
    # A lenient run: what it left unenforced, and what the engine was sent.
    not_enforced: list[str] | None = None
    sent: dict[str, Any] | None = None

    @field_validator("created")
    @classmethod
    def _a_time(cls, value: str) -> str:
        """A time this machine can show (a file's 9999-12-31T23:59:59-14:00 is past the
        last one Python can hold once moved to UTC)."""
        try:
            return datetime.fromisoformat(value).astimezone(UTC).isoformat(timespec="seconds")
        except (ValueError, OverflowError):
            raise ValueError("not an ISO 8601 time this machine can show") from None


class HistoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["structured-playground-history"] = FORMAT
    version: Literal[1] = 1
    kind: Literal["run", "history"]
    runs: list[Run]


def record(update: dict[str, Any], prompt: str, constraint: str,
           settings: SamplingSettings, history: list[Run]) -> Run:
    """The run that `update` (the last of `service.stream_request`) finished, numbered
    after the history's newest."""
    return Run(id=next_id(history), created=_now(), mode=update["mode"], prompt=prompt,
               constraint=constraint, settings=settings, engine=update.get("engine") or {},
               warnings=update.get("warnings") or [],
               constrained=_side(update["constrained"]),
               unconstrained=_side(update["unconstrained"]),
               not_enforced=update.get("not_enforced"), sent=update.get("sent"))


def _side(result: dict[str, Any]) -> RunResult:
    """One side of an update (`RunResult.as_dict`, as the page showed it) as kept.

    A run must never fail to be kept, so the numbers a file refuses (an engine's inf or nan
    timing) and keys the model does not know (a caller's addition) are dropped here rather
    than refused."""
    def finite(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if not _infinite(v)}
        return None if _infinite(value) else value

    return RunResult.model_validate({k: finite(v) for k, v in result.items()
                                     if k in RunResult.model_fields})


def _infinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def next_id(history: list[Run]) -> int:
    return max((run.id for run in history), default=0) + 1


def add(history: list[Run], run: Run) -> list[Run]:
    """A new list with `run` last, keeping the newest runs within the limit."""
    return [*history, run][-active().max_history_runs:]


def find(history: list[Run], run_id: int | None) -> Run | None:
    return next((run for run in history if run.id == run_id), None)


def table(history: list[Run]) -> list[list[Any]]:
    """Rows for the history table, newest first."""
    def rate(side: RunResult) -> float | None:
        return None if side.tokens_per_s is None else round(side.tokens_per_s, 1)

    return [[run.id, _clock(run.created), run.mode, _short(run.prompt),
             run.constrained.verdict, run.unconstrained.verdict, rate(run.constrained),
             rate(run.unconstrained)] for run in reversed(history)]


def _short(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _clock(created: str) -> str:
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%H:%M:%S")
    except (ValueError, OverflowError):
        return created


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- files -----------------------------------------------------------------------------


def dumps(runs: list[Run], kind: Literal["run", "history"]) -> str:
    return HistoryFile(kind=kind, runs=runs).model_dump_json(indent=2) + "\n"


def loads(data: bytes | str) -> HistoryFile:
    """A history or run file, checked; InputError in one line for anything else."""
    limits = active()
    limits.require("max_history_file_bytes", len(data))
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"history file: not JSON ({exc})") from None
    except RecursionError:
        raise InputError("history file: nested too deeply to be a run file") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise InputError(f"history file: not readable JSON ({exc})") from None
    check_json_texts("history file", raw)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise InputError(f"history file: not a {FORMAT} file (no \"format\": \"{FORMAT}\")")
    try:
        loaded = HistoryFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "file"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"history file: {where}: {first['msg']}{more}") from None
    ids = [run.id for run in loaded.runs]
    if len(set(ids)) != len(ids):
        raise InputError("history file: a run number is used twice")
    limits.require("max_history_runs", len(loaded.runs), "the history file")
    return loaded


def load_file(path: str | Path) -> HistoryFile:
    limits = active()
    try:
        limits.require("max_history_file_bytes", os.path.getsize(path))
        return loads(Path(path).read_bytes())
    except OSError as exc:
        raise InputError(f"history file: cannot read it ({exc.strerror})") from None


def restore(history: list[Run], loaded: HistoryFile) -> tuple[list[Run], Run | None]:
    """A history file replaces the session's history, as saved; a run file adds its run
    (renumbered only if its number is taken). Returns the history and the run to show."""
    if loaded.kind == "history":
        return list(loaded.runs), (loaded.runs[-1] if loaded.runs else None)
    new = history
    shown = None
    for run in loaded.runs:
        if find(new, run.id) is not None:
            run = run.model_copy(update={"id": next_id(new)})
        new, shown = add(new, run), run
    return new, shown


def download(runs: list[Run], kind: Literal["run", "history"]) -> str:
    """A file to offer for download (playground.run.downloads prunes old ones)."""
    from playground.run import downloads

    name = f"run-{runs[0].id}" if kind == "run" and runs else "history"
    return downloads.save({f"{name}.json": dumps(runs, kind)})[0]


# ---- per-session files (--history-dir) -------------------------------------------------


def new_session_id() -> str:
    return secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]


class SessionStore:
    """One file per browser session under `folder`, named by the session's random id."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, session_id: str) -> Path | None:
        """The session's file, or None for an id the server cannot have made."""
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return None
        return self.folder / f"{session_id}.json"

    def load(self, session_id: str) -> list[Run]:
        path = self.path(session_id)
        if path is None or not path.exists():
            return []
        try:
            return load_file(path).runs
        except InputError:
            return []  # a damaged file starts the session afresh; it is overwritten next

    def save(self, session_id: str, history: list[Run]) -> None:
        path = self.path(session_id)
        if path is None:
            return
        partial = path.with_suffix(".tmp")
        partial.write_text(dumps(history, "history"), encoding="utf-8")
        os.replace(partial, path)  # a reader never sees half a file
