"""Texts from many threads encoded together: one `encode_batch` call for all that arrive
within a moment.

After a burst of constrained requests, each result's text is encoded again to check its
tokenization (run/tokenization.py). One at a time, under the lock that keeps a fast
tokenizer's encodes apart, that came last in every request of a burst: at 128 requests on
the H200 the playground's constrained throughput was 0.88 of raw vLLM's with the check
and 1.03-1.09 without it (tools/gpu/tail_ab.py). A fast tokenizer's `encode_batch` runs
the texts in parallel in Rust, outside the GIL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# How long the first text of a batch waits for others: requests that finish in the same
# engine step arrive within a millisecond or two.
GATHER_S = 0.002


@dataclass
class _Slot:
    text: str
    ids: list[int] | None = None
    error: BaseException | None = None
    done: bool = False


class BatchedEncoder:
    """`encode(text)` from any thread; the first caller of a batch encodes it for all."""

    def __init__(self, encode_batch: Callable[[list[str]], list[list[int]]],
                 gather_s: float = GATHER_S) -> None:
        self._encode_batch = encode_batch
        self._gather_s = gather_s
        self._ready = threading.Condition()
        self._waiting: list[_Slot] = []
        self._gathering = False

    def encode(self, text: str) -> list[int]:
        slot = _Slot(text)
        with self._ready:
            self._waiting.append(slot)
            if self._gathering:  # another caller encodes this batch
                while not slot.done:
                    self._ready.wait()
                return self._result(slot)
            self._gathering = True
        time.sleep(self._gather_s)
        with self._ready:
            batch, self._waiting, self._gathering = self._waiting, [], False
        found: list[list[int]] | None = None
        error: BaseException | None = None
        try:
            found = self._encode_batch([s.text for s in batch])
            if len(found) != len(batch):
                error = RuntimeError(f"the tokenizer gave {len(found)} encodings for "
                                     f"{len(batch)} texts")
        except BaseException as exc:  # a Rust panic too: every text of the batch gets it
            error = exc
            raise
        finally:  # whatever happened, no caller of this batch waits on
            with self._ready:
                for index, waiting in enumerate(batch):
                    if error is None and found is not None:
                        waiting.ids = found[index]
                    else:
                        waiting.error = error or RuntimeError("the batch gave no encodings")
                    waiting.done = True
                self._ready.notify_all()
        return self._result(slot)

    @staticmethod
    def _result(slot: _Slot) -> list[int]:
        if slot.error is not None:
            raise slot.error
        assert slot.ids is not None
        return slot.ids
