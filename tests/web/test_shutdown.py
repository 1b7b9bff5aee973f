"""No process outlives the served app (`app.py --engine cpu`), however it ends: SIGTERM while
the model loads, idle and with a request in flight; Ctrl-C (SIGINT to the process group, as
a terminal sends it); SIGKILL, where the children must notice by themselves.

Every process of the app counts: its descendants, recorded while it runs, and anything in
its process group (it runs in a session of its own, so a child left with PPID 1 still
counts). A test fails if any is alive (not a zombie) LEFT_S after the signal.
"""

from __future__ import annotations

import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ServedApp, post_event

pytestmark = pytest.mark.slow  # five apps on the real CPU model


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServedApp]]:
    """The idle and the busy test's apps, started first, so that their models load while
    the other tests run (five apps one after another took 150 s on 2 cores). The second
    starts once the first serves its page: launches side by side made gradio's own check
    that its page answers (a 3 s HEAD) fail."""
    folder = tmp_path_factory.mktemp("shutdown")
    apps: dict[str, ServedApp] = {}
    try:
        for name in ("idle", "busy"):
            apps[name] = ServedApp(folder / f"{name}.log")
            apps[name].wait_served()
        yield apps
    finally:
        for app in apps.values():
            app.kill_everything()


@pytest.fixture
def app(tmp_path: Path, loaded: dict[str, ServedApp]) -> Iterator[ServedApp]:
    """An app of the test's own, started after the loaded ones."""
    launched = ServedApp(tmp_path / "app.log")
    try:
        yield launched
    finally:
        launched.kill_everything()


def test_sigterm_while_the_model_loads(app):
    app.wait_served()  # the model starts loading once the page is served
    assert app.status()["health"] == "loading"
    took = app.signal_and_wait(signal.SIGTERM)
    print(f"\nSIGTERM while loading: nothing left after {took:.1f} s")


# Ctrl-C and SIGKILL once the validation workers are up, the model loaded or not.


def test_ctrl_c(app):
    app.wait_served()
    app.wait_workers()
    took = app.signal_and_wait(signal.SIGINT, group=True)
    print(f"\nCtrl-C: nothing left after {took:.1f} s")


def test_sigkill_leaves_no_child(app):
    app.wait_served()
    app.wait_workers()
    took = app.signal_and_wait(signal.SIGKILL)
    print(f"\nSIGKILL: nothing left after {took:.1f} s")


def test_sigterm_when_idle(loaded):
    app = loaded["idle"]
    app.wait_served()
    app.wait_ready()
    app.wait_workers()
    took = app.signal_and_wait(signal.SIGTERM)
    assert app.process.returncode == 0  # a clean stop, not killed by the signal
    print(f"\nSIGTERM when idle: nothing left after {took:.1f} s")


def test_sigterm_with_a_request_in_flight(loaded):
    app = loaded["busy"]
    app.wait_served()
    app.wait_ready()
    event = post_event(app.url("/gradio_api/call/generate"),
                       ["regex", "[a-z ]+", "Write a long story.", {"max_tokens": 400}])
    with urllib.request.urlopen(app.url(f"/gradio_api/call/generate/{event}"),
                                timeout=120) as stream:
        for line in stream:  # until the first partial output: the model is generating
            if line.startswith(b"event: generating"):
                break
        took = app.signal_and_wait(signal.SIGTERM)
    print(f"\nSIGTERM while generating: nothing left after {took:.1f} s")
