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
GPTQ: `moekit quantize MODEL --method gptq --format hf-fake --calib ...` on the demo model,
gptq_layer_seconds from moekit.json (GPTQ compute per MoE layer, excluding the forward pass); and
the depth sweep (--gptq-layers 2,4,8): the same synthetic model shape with that many layers,
--gptq-tokens random calibration ids, --min-expert-tokens 64 (every expert gets GPTQ); wall time
of the whole command per layer. Sequential GPTQ that re-runs the model from the start for each
layer grows with depth (quadratic total); the streamed one is flat per layer.

Usage: .venv/bin/python bench/bench_quantize.py [--moekit build/moekit] [--threads 2] [--runs 2]
       [--llama-build DIR] [--types q8_0,q4_0,q4_K] [--no-llama] [--gptq-layers 2,4,8]
       [--gptq-tokens 1024] [--skip-rtn]
Writes bench/results/quantize.json and prints a Markdown table.
"""
import argparse
import json
import os
import platform
import resource
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
    ap.add_argument("--gptq-layers", default="2,4,8", help="depth sweep of GPTQ on the synthetic shape ('' to skip)")
    ap.add_argument("--gptq-tokens", type=int, default=1024)
    ap.add_argument("--gptq-min-expert-tokens", type=int, default=64,
                    help="experts with fewer routed tokens get RTN; a huge value leaves only the streaming cost")
    ap.add_argument("--skip-rtn", action="store_true", help="only the GPTQ measurements")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quantize.json"))
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
    for t in ([] if a.skip_rtn else a.types.split(",")):
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

    sweep = []
    for n in [int(x) for x in a.gptq_layers.split(",") if x]:
        m = work / f"synthetic-{n}l"
        ids = work / f"gptq-ids-{a.gptq_tokens}.bin"
        if not (m / "config.json").exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_model.py"), str(m), "--layers", str(n),
                            "--d-model", str(a.d_model), "--experts", str(a.experts), "--ffn", str(a.ffn), "--vocab", "523",
                            "--dtype", "bfloat16", "--ids", str(ids), str(a.gptq_tokens)], check=True, capture_output=True)
        out_dir = work / f"gptq-{n}l"
        t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([a.moekit, "quantize", str(m), "--method", "gptq", "--format", "hf-fake", "--calib", str(ids),
                        "--seq-len", "256", "--min-expert-tokens", str(a.gptq_min_expert_tokens), "-o", str(out_dir),
                        "--force", "--threads", str(a.threads)], check=True, capture_output=True)
        wall = time.time() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        gj = json.loads((out_dir / "moekit.json").read_text())
        shutil.rmtree(out_dir, ignore_errors=True)
        # CPU seconds as well as wall: on a shared machine the wall time mostly measures the neighbours.
        row = {"layers": n, "wall_s": wall, "s_per_layer": wall / n, "cpu_s": cpu, "cpu_s_per_layer": cpu / n,
               "starved_experts": sum(1 for e in gj.get("gptq_experts", []) if e.get("starved")),
               "gptq_layer_seconds": gj["gptq_layer_seconds"],
               "layer_passes": gj["params"]["gptq"].get("layer_passes", gj["params"]["gptq"].get("forward_passes"))}
        sweep.append(row)
        print(row, flush=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "threads": a.threads,
        "model": {"layers": a.layers, "d_model": a.d_model, "experts": a.experts, "ffn": a.ffn, "source_bytes": src_bytes},
        "rtn": rows,
        "gptq_demo": {"layer_seconds": mj["gptq_layer_seconds"], "wall_s": gptq_wall,
                      "calib_tokens": mj["params"]["gptq"]["calib_tokens"]},
        "gptq_depth_sweep": {"calib_tokens": a.gptq_tokens, "seq_len": 256,
                             "min_expert_tokens": a.gptq_min_expert_tokens, "runs": sweep},
    }
    out = Path(a.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("| type | moekit GB/s | llama-quantize GB/s | ratio (llama time / moekit time) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['moekit_gb_s']:.3f} | {r.get('llama_gb_s', float('nan')):.3f} | {r.get('ratio', float('nan')):.2f} |")
    print("GPTQ per MoE layer (demo, s):", ", ".join(f"{s:.2f}" for s in mj["gptq_layer_seconds"]))
    for r in sweep:
        print(f"GPTQ synthetic {r['layers']} layers: {r['wall_s']:.1f} s, {r['s_per_layer']:.2f} s per layer "
              f"(CPU {r['cpu_s_per_layer']:.2f} s per layer)")


if __name__ == "__main__":
    main()
