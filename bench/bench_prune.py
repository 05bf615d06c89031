#!/usr/bin/env python3
"""End-to-end `moekit prune` time, split into calibration and writing, and the writing speed as a
fraction of a plain file copy of the same bytes.

Models: (a) assets/demo-moe (calibration: the first --demo-tokens tokens of every domain of
assets/corpus/train), (b) a random OLMoE-shaped checkpoint written by
scripts/make_synthetic_model.py (default: 2 layers, d_model 1024, 64 experts of 512, top-8,
bf16, ~0.45 GB; calibration: --synthetic-tokens seeded random ids, since it has no tokenizer).

For each model: `moekit prune MODEL --method reap --keep 0.5 --calib ... -o OUT --json --threads N`,
--runs times (best wall time kept); from the JSON's timing: calibration_s (tokenize + forward
passes + scoring), plan_s, write_s (write_checkpoint: tensors copied / renumbered / sliced into a
temporary sibling, fsynced, renamed) and wall_s, plus the process wall time.

Copy baseline: a file of exactly the output's tensor bytes (cut from the input's safetensors,
read once beforehand so it is in the page cache like the input the prune reads) copied with
shutil.copyfile + fsync of the copy, best of --runs. write fraction = copy time / write_s
(1.0 = as fast as a plain copy).

Usage: .venv/bin/python bench/bench_prune.py [--moekit build/moekit] [--threads N] [--runs 3]
       [--work DIR] [--skip-synthetic]
Writes bench/results/prune.json and prints a Markdown table.
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
DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]


def copy_baseline(src_files, nbytes, work, runs):
    """Seconds to copy + fsync a file of nbytes (cut from the input's files)."""
    src = work / "copy_src.bin"
    left = nbytes
    with open(src, "wb") as out:
        for f in src_files:
            with open(f, "rb") as inp:
                while left > 0:
                    chunk = inp.read(min(left, 64 << 20))
                    if not chunk:
                        break
                    out.write(chunk)
                    left -= len(chunk)
    if left > 0:
        raise SystemExit(f"copy baseline: input files hold fewer than {nbytes} bytes")
    src.read_bytes()  # page cache, like the mmap'ed input of the prune
    best = None
    for _ in range(runs):
        dst = work / "copy_dst.bin"
        t = time.perf_counter()
        shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
        dst.unlink()
    src.unlink()
    return best


def run_prune(exe, model, calib, extra, out, threads, runs):
    best = None
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        cmd = [exe, "prune", model, "--method", "reap", "--keep", "0.5", "--calib", calib, *extra,
               "-o", out, "--json", "--threads", threads]
        t = time.perf_counter()
        res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"moekit prune failed ({res.returncode}):\n{res.stderr}")
        j = json.loads(res.stdout)
        r = {"calibration_s": j["timing"]["calibration_s"], "plan_s": j["timing"]["plan_s"],
             "write_s": j["timing"]["write_s"], "tool_wall_s": j["timing"]["wall_s"], "process_wall_s": wall,
             "calib_tokens": j["calibration"]["tokens"], "input_tensor_bytes": j["result"]["input_tensor_bytes"],
             "output_tensor_bytes": j["result"]["output_tensor_bytes"], "experts_kept": j["result"]["experts_kept"],
             "experts_total": j["result"]["experts_total"]}
        if best is None or r["process_wall_s"] < best["process_wall_s"]:
            best = r
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--demo-tokens", type=int, default=8192, help="calibration tokens per demo domain")
    ap.add_argument("--synthetic-tokens", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=2, help="synthetic model depth")
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prune.json"))
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="moekit_bench_prune_"))
    work.mkdir(parents=True, exist_ok=True)

    demo = ROOT / "assets" / "demo-moe"
    models = [("demo-moe", demo, ",".join(f"{d}={ROOT / 'assets' / 'corpus' / 'train' / (d + '.txt')}" for d in DOMAINS),
               ["--max-tokens", args.demo_tokens])]
    if not args.skip_synthetic:
        syn = work / f"olmoe-synthetic-{args.layers}l-bf16"
        ids = work / "synthetic_ids.bin"
        if not (syn / "model.safetensors").exists() or not ids.exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_model.py"), str(syn), "--layers",
                            str(args.layers), "--dtype", "bfloat16", "--ids", str(ids), str(args.synthetic_tokens)],
                           check=True, stdout=subprocess.DEVNULL)
        models.append(("olmoe-synthetic", syn, str(ids), []))

    results = []
    for name, path, calib, extra in models:
        print(f"[{name}] moekit prune x{args.runs} ...", file=sys.stderr, flush=True)
        r = run_prune(args.moekit, path, calib, extra, work / f"{name}-pruned", args.threads, args.runs)
        shards = sorted(path.glob("*.safetensors"))
        copy_s = copy_baseline(shards, r["output_tensor_bytes"], work, args.runs)
        shutil.rmtree(work / f"{name}-pruned", ignore_errors=True)
        cfg = json.loads((path / "config.json").read_text())
        r.update({"model": name,
                  "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"(generated) {path.name}",
                  "config": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_experts",
                                                     "num_experts_per_tok", "intermediate_size", "vocab_size", "dtype")},
                  "copy_s": copy_s,
                  "write_gb_s": r["output_tensor_bytes"] / r["write_s"] / 1e9,
                  "copy_gb_s": r["output_tensor_bytes"] / copy_s / 1e9,
                  "write_fraction_of_copy": copy_s / r["write_s"],
                  "calib_tokens_per_s": r["calib_tokens"] / r["calibration_s"]})
        results.append(r)

    out = {"benchmark": "moekit prune end to end (reap, --keep 0.5), calibration vs writing; writing vs plain copy",
           "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                       "threads": args.threads},
           "command": " ".join(sys.argv), "runs": args.runs,
           "copy_method": "shutil.copyfile of a file of the output's tensor bytes (in page cache) + fsync, best of runs",
           "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    print(f"{args.threads} threads, best of {args.runs}\n")
    print("| model | tensors in -> out | calib tokens | calibration | writing | total (process) | write GB/s | "
          "plain copy GB/s | write / copy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['input_tensor_bytes'] / 1e6:.1f} -> {r['output_tensor_bytes'] / 1e6:.1f} MB | "
              f"{r['calib_tokens']} | {r['calibration_s']:.2f} s ({r['calib_tokens_per_s']:.0f} tok/s) | "
              f"{r['write_s']:.3f} s | {r['process_wall_s']:.2f} s | {r['write_gb_s']:.2f} | {r['copy_gb_s']:.2f} | "
              f"{r['write_fraction_of_copy']:.2f} |")


if __name__ == "__main__":
    main()
