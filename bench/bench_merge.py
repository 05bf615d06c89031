#!/usr/bin/env python3
"""Per-layer `moekit merge` time on the larger synthetic model, for every grouping method, next to
`moekit prune` (reap) on the same model and calibration.

Model: a random OLMoE-shaped checkpoint written by scripts/make_synthetic_model.py (default: 2
layers, d_model 1024, 64 experts of 512, top-8, bf16, ~0.45 GB — the one bench/bench_prune.py
uses); calibration: --tokens seeded random ids (it has no tokenizer). Every run merges 64 -> 32
experts per layer (prune keeps 32).

From `moekit merge ... --json` timing: calibration_s (forward passes + router statistics),
sample_s (every expert on --sample-tokens tokens; HC-SMoE / Sub-MoE only), layer_merge_s
(per layer: grouping, neuron alignment, router fit and agreement), write_s (the merged weights
are computed while the writer streams them: read members, permute, average or joint SVD, encode
bf16, plus copying the rest). Per-layer merge time = (sum layer_merge_s + write_s) / MoE layers.
Best of --runs by process wall time.

Usage: .venv/bin/python bench/bench_merge.py [--moekit build/moekit] [--threads N] [--runs 1]
       [--work DIR] [--tokens 4096]
Writes bench/results/merge.json and prints a Markdown table.
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


def run(exe, args, out, runs):
    best = None
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        cmd = [exe, *args, "-o", out, "--json"]
        t = time.perf_counter()
        res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stderr}")
        j = json.loads(res.stdout)
        j["process_wall_s"] = wall
        if best is None or wall < best["process_wall_s"]:
            best = j
    shutil.rmtree(out, ignore_errors=True)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--sample-tokens", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "merge.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="moekit_bench_merge_"))
    work.mkdir(parents=True, exist_ok=True)
    syn = work / f"olmoe-synthetic-{args.layers}l-bf16"
    ids = work / "synthetic_ids.bin"
    if not (syn / "model.safetensors").exists() or not ids.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_model.py"), str(syn), "--layers",
                        str(args.layers), "--dtype", "bfloat16", "--ids", str(ids), str(args.tokens)],
                       check=True, stdout=subprocess.DEVNULL)
    cfg = json.loads((syn / "config.json").read_text())
    half = cfg["num_experts"] // 2
    common = ["--calib", ids, "--threads", args.threads]
    results = []
    for method in ("m-smoe", "hc-smoe", "sub-moe"):
        print(f"moekit merge --method {method} x{args.runs} ...", file=sys.stderr, flush=True)
        j = run(args.moekit, ["merge", syn, "--method", method, "--experts", half, "--sample-tokens", args.sample_tokens,
                              *common], work / "out", args.runs)
        t = j["timing"]
        n = len(t["layer_merge_s"])
        results.append({"command": "merge", "method": method, "calibration_s": t["calibration_s"], "sample_s": t["sample_s"],
                         "layer_merge_s": t["layer_merge_s"], "write_s": t["write_s"], "wall_s": t["wall_s"],
                         "process_wall_s": j["process_wall_s"], "moe_layers": n,
                         "per_layer_merge_s": (sum(t["layer_merge_s"]) + t["write_s"]) / n,
                         "routing_agreement": j["result"]["routing_agreement"],
                         "calib_tokens": j["calibration"]["tokens"], "sample_tokens": j["calibration"]["sample_tokens"]})
    print("moekit prune --method reap ...", file=sys.stderr, flush=True)
    j = run(args.moekit, ["prune", syn, "--method", "reap", "--keep", half, *common], work / "out", args.runs)
    t = j["timing"]
    prune = {"command": "prune", "method": "reap", "calibration_s": t["calibration_s"], "plan_s": t["plan_s"],
             "write_s": t["write_s"], "wall_s": t["wall_s"], "process_wall_s": j["process_wall_s"]}
    for r in results:
        r["wall_over_prune"] = r["process_wall_s"] / prune["process_wall_s"]
    out = {"benchmark": "moekit merge per-layer time on the synthetic OLMoE-shaped model, 64 -> 32 experts, vs prune (reap)",
           "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                       "threads": args.threads},
           "command": " ".join(sys.argv), "runs": args.runs,
           "model": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_experts", "num_experts_per_tok",
                                             "intermediate_size", "dtype")},
           "merge": results, "prune": prune}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"{args.threads} threads, {results[0]['calib_tokens']} calibration tokens, best of {args.runs}\n")
    print("| method | calibration | all-experts sample | per layer: grouping + alignment + router | weights merged + written "
          "(all layers) | per-layer merge | total (process) | vs prune |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        lm = ", ".join(f"{s:.2f}" for s in r["layer_merge_s"])
        print(f"| {r['method']} | {r['calibration_s']:.2f} s | {r['sample_s']:.2f} s | {lm} s | {r['write_s']:.2f} s | "
              f"{r['per_layer_merge_s']:.2f} s | {r['process_wall_s']:.2f} s | {r['wall_over_prune']:.1f}x |")
    print(f"| prune reap | {prune['calibration_s']:.2f} s | | | {prune['write_s']:.2f} s | | {prune['process_wall_s']:.2f} s | 1.0x |")


if __name__ == "__main__":
    main()
