import importlib.util

import pytest

from playground.engines import gpu_available
from playground.engines.fake import FakeEngine


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
