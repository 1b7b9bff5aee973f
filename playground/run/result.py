"""One side of a run (constrained or unconstrained): the one model of a run's result.

The service fills it in place as tokens stream (a Stop labels the very object the page
holds), the API answers with `as_dict()`, batches export its columns, and a history file
keeps it inside each `history.Run`. What each of those shows is decided here:

- API / CLI / batch (`as_dict`): every field, except the token inspector's
  (`INSPECT_FIELDS`), which appear only when the run was inspected (asked for with the
  request option "inspect"); clients that never ask see the fields they always had.
- History file (pydantic's own dump of `history.HistoryFile`): every field, the
  inspector's as null when not inspected.
- Never shown: what the inspector reads from the engine (token ids, distributions); they
  are private attributes, so no dump has them and no file can set them.

A file is user input shown in other people's pages, so reading one is strict: unknown keys
are refused (extra="forbid"), and so are inf and nan (JSON has no such numbers; a file
saying `Infinity` was not written by the playground). The service assigns attributes
without validation (once per token, validation would cost the streaming loop), so an
engine's non-finite timing can reach a live result; `history.record` drops such numbers
before validating, so the run is still kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from playground.backends.names import Backend
from playground.judging.validation import Status
from playground.run.tokenization import Tokenization

if TYPE_CHECKING:
    from playground.engines.base import TokenDist

# A verdict's status (playground.judging.validation), and the two a run has before one:
# "running" while it streams, "stopped" once a Stop, a closed page or the request time
# limit ended it (its partial output kept, unjudged).
RunStatus = Literal[Status, "running", "stopped"]
STOPPED: RunStatus = "stopped"


# Everything that reaches HTML from a loaded file is typed: a verdict or a token kind is a
# CSS class, counts are formatted as numbers.
class TopToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    id: int | None = None
    logprob: float | None = None
    allowed: bool | None = None


class InspectedToken(BaseModel):
    """One token of the inspector's strip (playground.run.token_inspector)."""

    model_config = ConfigDict(extra="forbid")

    text: str
    id: int | None = None
    allowed: int | None = None
    kind: Literal["forced", "narrowed", "free"]
    override: bool = False
    logprob: float | None = None
    rank: int | None = None
    top: list[TopToken] = Field(default_factory=list)


class InspectSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: int = 0
    forced: int = 0
    narrowed: int = 0
    free: int = 0
    overrides: int = 0
    mean_logprob: float | None = None
    mean_logprob_constrained: float | None = None
    mean_logprob_unconstrained: float | None = None
    backend: Backend | None = None


class MaskStepRecord(BaseModel):
    """A step where two backends' masks differ (playground.doctor.mask_diff.MaskStep)."""

    model_config = ConfigDict(extra="forbid")

    step: int
    token_id: int
    token: str
    prefix: str
    allowed: dict[str, int]
    only: dict[str, int]
    examples: dict[str, list[str]] = Field(default_factory=dict)
    accepted: dict[str, bool] = Field(default_factory=dict)


class MaskComparison(BaseModel):
    """The inspector's "compare backends": where xgrammar's and llguidance's masks differ
    along the constrained output; `compared` of `tokens` steps, or why none were."""

    model_config = ConfigDict(extra="forbid")

    backends: list[str] = Field(default_factory=list)
    steps: list[MaskStepRecord] = Field(default_factory=list)
    compared: int = 0
    tokens: int = 0
    out_of_time: bool = False
    compare_s: float | None = None
    error: str | None = None


# The token inspector's fields: in `as_dict` only for an inspected run.
INSPECT_FIELDS = frozenset({"tokens", "inspect_summary", "left_format_at", "inspect_s",
                            "inspect_error", "mask_diff"})


class ParsedCall(BaseModel):
    """One tool call found in an output (core/tools.py), with its verdict's errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    index: int
    name: str | None = None
    arguments: Any = None
    errors: list[str] = Field(default_factory=list)


class ToolCallsFound(BaseModel):
    """A Tool call tab's output read as calls and the free text outside them."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    calls: list[ParsedCall] = Field(default_factory=list)
    text: str = ""


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str = ""
    verdict: RunStatus = "running"
    errors: list[str] = Field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int = 0
    latency_s: float | None = None
    ttft_s: float | None = None
    # Decode speed: tokens after the first, over the time after the first token.
    tokens_per_s: float | None = None
    compile_s: float | None = None
    finish_reason: str | None = None
    engine_timings: dict[str, float] = Field(default_factory=dict)
    # The constraint was on, yet the output does not fit it: the engine did not enforce it.
    constraint_escaped: bool = False
    # A constrained output's ids against the tokenizer's own for its text (None where the
    # run was free, failed, or the engine has no tokenizer here): run.tokenization.
    tokenization: Tokenization | None = None
    # The token inspector: the strip, its counts, the first token the constraint's matcher
    # rejected, the seconds the inspection took after the run, or why it has nothing.
    tokens: list[InspectedToken] | None = None
    inspect_summary: InspectSummary | None = None
    left_format_at: int | None = None
    inspect_s: float | None = None
    inspect_error: str | None = None
    mask_diff: MaskComparison | None = None  # asked for with the option compare_backends
    # The Tool call tab's calls (in `as_dict` only where the run had tools).
    tool_calls: ToolCallsFound | None = None
    # What the inspector reads from the engine; not None once the run is to be inspected.
    _token_ids: list[int] | None = PrivateAttr(default=None)
    _distributions: list[TokenDist] | None = PrivateAttr(default=None)

    @property
    def inspected(self) -> bool:
        """Asked to be inspected (the service keeps its token ids from the start), or
        holding an inspection (a run loaded from a file)."""
        return self._token_ids is not None or any(
            getattr(self, name) is not None for name in INSPECT_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready object the API, the CLI and batch exports give."""
        exclude = set() if self.inspected else set(INSPECT_FIELDS)
        if self.tool_calls is None:
            exclude.add("tool_calls")
        return self.model_dump(exclude=exclude or None)
