import asyncio
import importlib.util

import pytest

from playground.engines.fake import FakeEngine
from playground.engines.hardware import gpu_available


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA and vllm")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fake_engine() -> FakeEngine:
    engine = FakeEngine()
    engine.load()
    return engine


@pytest.fixture(scope="session")
def embedded_engine():
    """The real SmolLM2-135M on the CPU, loaded once for the whole session."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    from playground.engines.embedded import EmbeddedEngine

    engine = EmbeddedEngine()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright, one per test module."""
    from pathlib import Path

    from playground.bench.launch import CHROMIUM, chromium

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with chromium() as found:
        yield found


@pytest.fixture(scope="session")
def cpu_app(tmp_path_factory):
    """The app on the CPU model (`serve --engine cpu`, nothing else), launched as a process
    once for the whole session and shared by every test of that configuration: a test that
    needs other flags (a history folder, limits, a login) or kills the app launches its own.
    Yielded once its page is served; `cpu_app.wait_ready()` waits for the model too."""
    from playground.bench.launch import launched_app

    log_path = tmp_path_factory.mktemp("app") / "app.log"
    with launched_app(["--engine", "cpu"], log_path=log_path) as app:
        app.wait_served(limit_s=120)
        yield app


@pytest.fixture(scope="session")
def app_url(cpu_app):
    """The shared CPU app's address."""
    return cpu_app.url


@pytest.fixture(scope="module")
def loop():
    """One event loop for a module's tests that share an engine (the GPU tests)."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def playground_log(caplog):
    """caplog for the playground logger, which stops propagating once the CLI configured
    it (an earlier test may have)."""
    import logging

    logger = logging.getLogger("playground")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
