"""Every error a caller of the playground may catch, in one hierarchy.

`UserError` is anything a user's input caused: shown to them as one line, never a
traceback (the CLI exits 2, the page and the API say the message). The rest are the
machinery's: an engine that is not ready or died, work past its time limit, a server
that failed, or this integration broken by a library upgrade.
"""

from __future__ import annotations


class PlaygroundError(Exception):
    """Base of every error the playground raises on purpose."""


# ---- the user's input -------------------------------------------------------------------


class UserError(PlaygroundError, ValueError):
    """Bad input from a user, said in one line."""


class InputError(UserError):
    """A request's argument of the wrong type or size (run.inputs, core.limits)."""


class LimitError(InputError):
    """Input past one of the limits in core.limits."""


class ConstraintError(UserError):
    """A constraint that cannot be used; the message says what is wrong and where."""


class PresetError(UserError):
    """A preset data file that does not validate."""


class NoInstance(PlaygroundError, ValueError):
    """No document could be proposed for this schema (the reason says why)."""


class UnsupportedLlama(PlaygroundError, ValueError):
    """A Llama checkpoint with an option the CPU engine's loader does not implement."""


# ---- time limits and workers ------------------------------------------------------------


class WorkTimeout(PlaygroundError, TimeoutError):
    """The work ran past its limit; its worker was killed."""


class WorkersBusy(WorkTimeout):
    """No worker came free in time: other calls hold them all (not this work's cost)."""


class WorkerDied(PlaygroundError, RuntimeError):
    """The worker process ended mid-call (killed, or out of memory)."""


class RequestTimeout(PlaygroundError, TimeoutError):
    """A request ran past --request-timeout-s."""


# ---- engines ----------------------------------------------------------------------------


class EngineNotReady(PlaygroundError, RuntimeError):
    """The engine is still loading, or failed to load."""


class EngineDead(EngineNotReady):
    """The engine loaded, then died (vLLM's engine core killed, out of memory)."""


class ServerError(PlaygroundError, RuntimeError):
    """A failed server request, said in one line. `health`: the server itself is at fault
    (unreachable, timing out, dropping streams, 5xx), not the request it was sent."""

    def __init__(self, message: str, health: bool = True) -> None:
        super().__init__(message)
        self.health = health


class VllmIntegrationError(PlaygroundError, RuntimeError):
    """vLLM's API is not what the playground was written against: a bug here, not a
    verdict on the constraint."""
