"""Why does vLLM 0.26's guidance backend let "SELECTT" through? Watch its matcher in-process.

    VLLM_ENABLE_V1_MULTIPROCESSING=0 python tools/gpu/guidance_diagnose.py MODEL_FOLDER

Patches vLLM's GuidanceGrammar to log, per step, how many tokens the mask it filled allows
and whether token 68 ("T") is among them, and every token it is asked to accept; then runs
the classic SQL grammar with greedy decoding. Prints one JSON line starting "DIAG".
"""

import json
import os
import sys

import numpy as np

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
from vllm import LLM, SamplingParams  # noqa: E402
from vllm.sampling_params import StructuredOutputsParams  # noqa: E402
from vllm.v1.structured_output import backend_guidance as bg  # noqa: E402

GRAMMAR = '''start: select_statement
select_statement: "SELECT " column_list " FROM " table_name
column_list: column_name ("," column_name)*
table_name: identifier
column_name: identifier
identifier: /[a-zA-Z_][a-zA-Z0-9_]*/
'''
log: list[dict] = []
fill, accept = bg.GuidanceGrammar.fill_bitmask, bg.GuidanceGrammar.accept_tokens


def logged_fill(self, bitmask, idx):
    fill(self, bitmask, idx)
    row = bitmask[idx].numpy().view(np.uint8)
    bits = np.unpackbits(row, bitorder="little")
    log.append({"fill": int(idx), "allowed": int(bits.sum()), "T_68": int(bits[68]),
                "width": int(bitmask.shape[1]), "stopped": self.ll_matcher.is_stopped(),
                "error": self.ll_matcher.get_error()[:120]})


def logged_accept(self, request_id, tokens):
    ok = accept(self, request_id, tokens)
    log.append({"accept": list(map(int, tokens)), "ok": bool(ok),
                "error": self.ll_matcher.get_error()[:160]})
    return ok


bg.GuidanceGrammar.fill_bitmask = logged_fill
bg.GuidanceGrammar.accept_tokens = logged_accept
llm = LLM(sys.argv[1], structured_outputs_config={"backend": "guidance"},
          gpu_memory_utilization=0.3, max_model_len=2048, seed=0, enforce_eager=True)
tok = llm.get_tokenizer()
messages = [{"role": "user", "content": "Generate an SQL query to show the 'username' and "
                                        "'email' from the 'users' table."}]
params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=5,
                        structured_outputs=StructuredOutputsParams(grammar=GRAMMAR))
out = llm.chat([messages], params, use_tqdm=False)[0].outputs[0]
facts: dict = {"text": out.text, "finish": out.finish_reason, "ids": list(out.token_ids),
               "logprobs": [{tok.decode([k]): round(v.logprob, 3) for k, v in step.items()}
                            for step in (out.logprobs or [])],
               "len_tokenizer": len(tok), "hf": [tok.decode([i]) for i in (23428, 68, 216)],
               "log": log[:40]}
try:
    backend = llm.llm_engine.engine_core.engine_core.scheduler.structured_output_manager.backend
    facts |= {"vocab_size": backend.vocab_size, "ll_vocab": backend.ll_tokenizer.vocab_size,
              "ll_dbg": backend.ll_tokenizer.dbg_tokens([23428, 68, 216])}
except Exception as exc:  # the path to the backend is vLLM-internal
    facts["backend_error"] = repr(exc)
print("DIAG " + json.dumps(facts))
