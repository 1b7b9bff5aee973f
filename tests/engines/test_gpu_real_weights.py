"""Real weights on vLLM: every preset and five other constraints, all clicks at once, per
backend (tools/gpu/real_weights.py). Random weights cannot show what a backend lets through.

Needs $GPU_SMOLLM2_FOLDER: SmolLM2-135M-Instruct as a safetensors folder
(tools/gpu/convert_smollm2.py makes it from the GGUF that ../shared/gpu/stage.sh --smollm2
carries). Reports go to $OUT/real_<backend>.json when $OUT is set.
"""

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from support import ROOT

pytestmark = pytest.mark.gpu
FOLDER = os.environ.get("GPU_SMOLLM2_FOLDER")
OUT = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
sys.path.insert(0, str(ROOT / "tools" / "gpu"))


def run(backend: str | None) -> dict:
    if not FOLDER:
        pytest.skip("set GPU_SMOLLM2_FOLDER to SmolLM2 converted for vLLM")
    from real_weights import run_backend

    report = asyncio.run(run_backend(FOLDER, backend, rounds=2))
    if OUT:
        (OUT / f"real_{backend or 'per_model'}.json").write_text(json.dumps(report, indent=1))
    print("SUMMARY", json.dumps(report["summary"]))
    return report["summary"]


def test_default_backend_fails_no_request_and_lets_nothing_escape():
    summary = run("xgrammar")
    assert summary["constrained"].get("error", 0) == 0, summary
    assert summary["escaped"] == 0 and summary["exceptions"] == 0, summary
    assert summary["constrained"].get("unjudged", 0) == 0, summary
    assert summary["max_tokens_per_s"] < 10_000, summary
    assert summary["engine_warning"] is None


def test_guidance_is_flagged_where_llguidance_misreads_the_tokenizer():
    """The GGUF-converted tokenizer.json (a Sequence decoder) is misread by llguidance: the
    engine must say so, and any escape must be reported as one, never as "truncated"."""
    summary = run("guidance")
    assert "llguidance reads token" in (summary["engine_warning"] or ""), summary
    assert summary["exceptions"] == 0, summary


def test_the_per_model_choice_takes_xgrammar_for_a_tokenizer_llguidance_misreads():
    """No backend named: the GGUF conversion's tokenizer is misread by llguidance, so the
    engine chooses xgrammar, says why, and no request fails or escapes."""
    summary = run(None)
    assert summary["backend"] == "xgrammar", summary
    assert "llguidance reads token" in summary["backend_choice"], summary
    assert summary["constrained"].get("error", 0) == 0, summary
    assert summary["escaped"] == 0 and summary["exceptions"] == 0, summary
