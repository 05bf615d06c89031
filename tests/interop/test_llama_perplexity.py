#!/usr/bin/env python3
"""llama.cpp runs moekit's GGUF files as the model moekit evaluates.

Needs a prebuilt llama-perplexity (building llama.cpp takes far longer than a test should):
MOEKIT_LLAMA_PERPLEXITY=/path/to/llama-perplexity. Without it: `*** SKIPPED`, exit 77.
bench/compare_llama_perplexity.py builds one into bench/out/llama-build/bin (CPU, Release).

Runs bench/compare_llama_perplexity.py (see its docstring for exactly what is compared: the same
llama.cpp token ids, the second half of every chunk, llama-perplexity vs `moekit eval`):
  * the demo model (OLMoE) in f32 and q8_0, 4 chunks of 256: relative difference < 0.5%;
  * the DeepSeek-V3 and DeepSeek-V2 fixtures in f32 and q8_0, 4 chunks of 64: llama.cpp loads
    moekit's deepseek2 files (MLA split, q_lora_rank = 0 for V2, sigmoid gating for V3) and its
    perplexity agrees with moekit's within 2% (random fixtures: a layout or metadata error shows
    as a larger jump; V2's groups are written as one because its topk_group >= top-k makes its
    group-limited greedy plain top-k, see docs/RESULTS.md).
"""
import os
import subprocess
import sys
from pathlib import Path

MOEKIT = sys.argv[1]
DATA = Path(sys.argv[2])
ROOT = DATA.parent
binary = os.environ.get("MOEKIT_LLAMA_PERPLEXITY", "")
if not binary or not os.access(binary, os.X_OK):
    print("*** SKIPPED: llama.cpp perplexity comparison needs MOEKIT_LLAMA_PERPLEXITY=/path/to/llama-perplexity "
          "(bench/compare_llama_perplexity.py builds one into bench/out/llama-build/bin)")
    sys.exit(77)

failures = 0
cases = [
    ("demo", ROOT / "assets" / "demo-moe", 256, "0.005"),
    ("deepseek_v3", DATA / "fixtures" / "deepseek_v3", 64, "0.02"),
    ("deepseek_v2", DATA / "fixtures" / "deepseek_v2", 64, "0.02"),
]
for name, model, ctx, tol in cases:
    cmd = [sys.executable, str(ROOT / "bench" / "compare_llama_perplexity.py"), "--moekit", MOEKIT,
           "--llama-perplexity", binary, "--model", str(model), "--ctx", str(ctx), "--chunks", "4",
           "--types", "f32,q8_0", "--tol", tol, "--threads", str(min(4, os.cpu_count() or 1))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    print(f"--- {name}\n{p.stdout}{p.stderr[-2000:] if p.returncode else ''}")
    if p.returncode != 0:
        failures += 1
        print(f"FAIL: {name}")
if failures:
    sys.exit(1)
print("all ok")
