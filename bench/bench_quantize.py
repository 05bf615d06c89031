#!/usr/bin/env python3
"""`moekit quantize` speed: RTN throughput in GB/s of source weights (GGUF output) against
llama.cpp's `llama-quantize` on the same model and type, as a ratio, and GPTQ time per layer.

Model: a random OLMoE-shaped checkpoint from scripts/make_synthetic_model.py (--layers, --d-model,
--experts, --ffn; bf16) — rows of 1024/512, so Q4_K and Q6_K need no fallback — plus the
tokenizer of the olmoe fixture so GGUF output is possible (vocab 523 in the config).

RTN: `moekit quantize MODEL --type T -o OUT.gguf --threads N`, best of --runs; throughput = source
tensor bytes / wall time of the process (reading, quantizing, writing, fsync).
llama-quantize (built by this script from .deps/llama.cpp when --llama-build DIR has no binary;
cmake, only the llama-quantize target): input = moekit's own `--type bf16` GGUF of the same model
(bit-identical to what convert_hf_to_gguf.py writes, tests/interop/test_quantize_gguf.py), run as
`llama-quantize --pure IN OUT T N`, best of --runs. ratio = llama-quantize time / moekit time
(> 1: moekit faster).
GPTQ: `moekit quantize MODEL --method gptq --format hf-fake --calib ids.bin` on the demo model,
gptq_layer_seconds from moekit.json (GPTQ compute per MoE layer, excluding the forward pass).

Usage: .venv/bin/python bench/bench_quantize.py [--moekit build/moekit] [--threads 2] [--runs 2]
       [--llama-build DIR] [--types q8_0,q4_0,q4_K] [--no-llama]
Writes bench/results/quantize.json and prints a Markdown table.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def best_time(cmd, runs, env=None):
    best = None
    for _ in range(runs):
        t = time.time()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        dt = time.time() - t
        best = dt if best is None else min(best, dt)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--types", default="q8_0,q4_0,q4_K")
    ap.add_argument("--llama-build", default=str(ROOT / "bench" / "out" / "llama-build"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--no-llama", action="store_true", help="skip building/running llama-quantize")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-quantize-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "synthetic"
    if not (model / "config.json").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_model.py"), str(model), "--layers",
                        str(a.layers), "--d-model", str(a.d_model), "--experts", str(a.experts), "--ffn", str(a.ffn),
                        "--vocab", "523", "--dtype", "bfloat16"], check=True)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(ROOT / "tests" / "fixtures" / "olmoe" / f, model / f)
    src_bytes = sum(p.stat().st_size for p in model.glob("*.safetensors"))

    # llama-quantize
    lq = Path(a.llama_build) / "bin" / "llama-quantize"
    if not lq.exists() and not a.no_llama:
        src = ROOT / ".deps" / "llama.cpp"
        if (src / "CMakeLists.txt").exists():
            subprocess.run(["cmake", "-S", str(src), "-B", a.llama_build, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                            "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                            "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_CUDA=OFF"], check=True, capture_output=True)
            subprocess.run(["cmake", "--build", a.llama_build, "-j", str(os.cpu_count()), "--target", "llama-quantize"],
                           check=True, capture_output=True)
    base = work / "base-bf16.gguf"
    subprocess.run([a.moekit, "quantize", str(model), "--type", "bf16", "-o", str(base), "--force"], check=True,
                   capture_output=True)

    rows = []
    for t in a.types.split(","):
        out = work / f"moekit-{t}.gguf"
        mt = best_time([a.moekit, "quantize", str(model), "--type", t, "-o", str(out), "--force", "--threads",
                        str(a.threads)], a.runs)
        row = {"type": t, "moekit_s": mt, "moekit_gb_s": src_bytes / mt / 1e9}
        if lq.exists() and not a.no_llama:
            lt = best_time([str(lq), "--pure", str(base), str(work / f"llama-{t}.gguf"), t.upper() if t != "q4_K" else "Q4_K",
                            str(a.threads)], a.runs)
            row.update(llama_quantize_s=lt, llama_gb_s=src_bytes / lt / 1e9, ratio=lt / mt)
        rows.append(row)
        print(row, flush=True)

    # GPTQ per layer on the demo model.
    ids = ",".join(str(ROOT / "assets" / "corpus" / "train" / f"{d}.txt") for d in ["en", "de", "code-py", "zh"])
    gq = work / "gptq"
    t0 = time.time()
    subprocess.run([a.moekit, "quantize", str(ROOT / "assets" / "demo-moe"), "--method", "gptq", "--format", "hf-fake",
                    "--calib", ids, "--max-tokens", "2048", "-o", str(gq), "--force", "--threads", str(a.threads)],
                   check=True, capture_output=True)
    gptq_wall = time.time() - t0
    mj = json.loads((gq / "moekit.json").read_text())
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "threads": a.threads,
        "model": {"layers": a.layers, "d_model": a.d_model, "experts": a.experts, "ffn": a.ffn, "source_bytes": src_bytes},
        "rtn": rows,
        "gptq_demo": {"layer_seconds": mj["gptq_layer_seconds"], "wall_s": gptq_wall,
                      "calib_tokens": mj["params"]["gptq"]["calib_tokens"]},
    }
    out = ROOT / "bench" / "results" / "quantize.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| type | moekit GB/s | llama-quantize GB/s | ratio (llama time / moekit time) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['moekit_gb_s']:.3f} | {r.get('llama_gb_s', float('nan')):.3f} | {r.get('ratio', float('nan')):.2f} |")
    print("GPTQ per MoE layer (demo, s):", ", ".join(f"{s:.2f}" for s in mj["gptq_layer_seconds"]))


if __name__ == "__main__":
    main()
