"""The doctor on vLLM (GPU): a schema vLLM refuses is generated anyway under lenient, with
each of vLLM's backends; the full schema still judges the output.

Run on the GPU machine like tests/engines/test_gpu.py ($GPU_MODEL for dummy weights; $OUT for a
record of what was generated).
"""

import asyncio
import json

import pytest
from support import OUT, gpu_args

from playground.engines.registry import create_engine
from playground.errors import InputError
from playground.run.service import run_request

pytestmark = pytest.mark.gpu
# uniqueItems, not, if/then/else and a format no backend knows: vLLM refuses it whole.
HARD = {"type": "object", "required": ["name", "tags", "age", "card"],
        "properties": {"name": {"type": "string", "maxLength": 20},
                       "tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
                                "maxItems": 3, "uniqueItems": True},
                       "age": {"type": "integer", "not": {"const": 13}},
                       "card": {"type": "string", "format": "credit-card", "maxLength": 20}},
        "if": {"properties": {"age": {"minimum": 18}}}, "then": {"required": ["name"]},
        "additionalProperties": False}


@pytest.fixture(scope="module", params=["guidance", "xgrammar"])
def engine(request):
    engine = create_engine(gpu_args(structured_outputs_backend=request.param))
    engine.load()
    yield engine
    engine.shutdown()


def test_vllm_refuses_the_schema_without_lenient(engine):
    with pytest.raises(InputError, match="vLLM rejects it"):
        asyncio.run(run_request(engine, "json", json.dumps(HARD), "A person as JSON.",
                                {"max_tokens": 96}))


def test_vllm_generates_anyway_under_lenient(engine):
    result = asyncio.run(run_request(engine, "json", json.dumps(HARD), "A person as JSON.",
                                     {"max_tokens": 96, "lenient": True}))
    constrained = result["constrained"]
    if OUT:
        with open(OUT / "gpu_doctor.jsonl", "a") as file:
            file.write(json.dumps({"backend": result["lenient"]["backend"],
                                   "not_enforced": result["not_enforced"],
                                   "constrained": constrained}) + "\n")
    assert constrained["text"] and constrained["verdict"] in {"valid", "invalid", "truncated"}
    assert result["lenient"]["backend"].startswith("vllm:")
    assert "uniqueItems at $.properties.tags" in result["not_enforced"]
    assert "format at $.properties.card" in result["not_enforced"]
    if result["lenient"]["backend"] == "vllm:guidance":
        assert result["lenient"]["schema"]["x-guidance"] == {"lenient": True}
