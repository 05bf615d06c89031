#!/usr/bin/env python3
"""`moekit svd` speed on a larger synthetic model, and moekit's SVD against numpy.linalg.svd.

1. Per-layer time: a random OLMoE-shaped checkpoint from scripts/make_synthetic_model.py
   (default 2 layers, d_model 1024, 64 experts of 512, top-8, bf16) is compressed with
   `moekit svd --method svd-llm --ratio 0.5 --dry-run --json --threads N` on --tokens seeded random
   ids (it has no tokenizer): calibration_s (forward passes + whitening statistics) and
   factorize_s (Cholesky + W S + SVD + triangular solve for 64 x 3 projections per layer), best of
   --runs, divided by the number of MoE layers. Also `--method svd` (no whitening, no calibration).
2. SVD throughput: the first --svd-count experts' gate_proj [512, 1024] and down_proj [1024, 512]
   weights of layer 0, as float64, are factorized by moekit's core::svd (LAPACK gesdd through
   core/linalg.h, single-threaded BLAS; the moekit_bench_svd helper) and by numpy.linalg.svd
   (full_matrices=False, OPENBLAS_NUM_THREADS=1 etc. so both use one core), best of --runs; the
   sums of singular values must agree. ratio = numpy time / moekit time (> 1: moekit faster).

Usage: .venv/bin/python bench/bench_svd.py [--build build] [--threads 2] [--runs 2] [--tokens 2048]
       [--svd-count 16] [--work DIR]
Writes bench/results/svd.json and prints a Markdown table.
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

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run(cmd, env=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} -> exit {r.returncode}: {r.stderr[-1500:]}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--svd-count", type=int, default=16)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "svd.json"))
    args = ap.parse_args()
    build = Path(args.build)
    work = Path(args.work or tempfile.mkdtemp(prefix="moekit_bench_svd_"))
    model = work / "synthetic"
    try:
        if not (model / "config.json").exists():
            run([sys.executable, ROOT / "scripts" / "make_synthetic_model.py", model, "--dtype", "bfloat16",
                 "--ids", model / "ids.bin", args.tokens])
        cfg = json.loads((model / "config.json").read_text())
        n_layer = cfg["num_hidden_layers"]
        out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "threads": args.threads},
               "model": {"d_model": cfg["hidden_size"], "n_expert": cfg["num_experts"], "d_ff_expert": cfg["intermediate_size"],
                         "n_layer": n_layer, "dtype": "bfloat16", "calib_tokens": args.tokens}, "svd": {}}
        for method in ("svd-llm", "svd"):
            best = None
            for _ in range(args.runs):
                calib = ["--calib", model / "ids.bin", "--seq-len", 512] if method != "svd" else []
                t = time.time()
                res = json.loads(run([build / "moekit", "svd", model, "--method", method, "--ratio", 0.5, *calib,
                                      "--dry-run", "--json", "--threads", args.threads]))
                wall = time.time() - t
                tm = res["timing"]
                if best is None or tm["wall_s"] < best["wall_s"]:
                    best = tm | {"process_wall_s": wall}
            out["svd"][method] = best | {"per_layer_factorize_s": best["factorize_s"] / n_layer,
                                          "per_layer_calibration_s": best["calibration_s"] / n_layer,
                                          "rank": res["result"]["rank"]}
            print(f"{method}: factorize {best['factorize_s'] / n_layer:.2f} s/layer, calibration "
                  f"{best['calibration_s'] / n_layer:.2f} s/layer ({args.threads} threads)", flush=True)

        # bf16 is not a numpy dtype: read through torch.
        import torch
        from safetensors import safe_open
        out["throughput"] = []
        for proj in ("gate_proj", "down_proj"):
            mats = []
            with safe_open(str(model / "model.safetensors"), framework="pt") as st:
                for ie in range(args.svd_count):
                    mats.append(st.get_tensor(f"model.layers.0.mlp.experts.{ie}.{proj}.weight").to(torch.float64).numpy())
            rows, cols = mats[0].shape
            path = work / f"{proj}.f64"
            np.concatenate([m.reshape(-1) for m in mats]).astype("<f8").tofile(path)
            mk = json.loads(run([build / "moekit_bench_svd", path, len(mats), rows, cols, args.runs]))
            best_np, checksum = None, 0.0
            for _ in range(args.runs):
                t = time.perf_counter()
                checksum = sum(float(np.linalg.svd(m, full_matrices=False)[1].sum()) for m in mats)
                s = time.perf_counter() - t
                best_np = s if best_np is None else min(best_np, s)
            agree = abs(checksum - mk["checksum"]) <= 1e-9 * abs(checksum)
            row = {"matrix": f"{proj} [{rows}, {cols}] float64", "count": len(mats), "moekit_s": mk["best_s"],
                   "numpy_s": best_np, "ratio_numpy_over_moekit": best_np / mk["best_s"],
                   "moekit_svd_per_s": len(mats) / mk["best_s"], "numpy_svd_per_s": len(mats) / best_np,
                   "singular_values_agree": agree}
            out["throughput"].append(row)
            print(f"{row['matrix']}: moekit {row['moekit_svd_per_s']:.1f} SVD/s, numpy {row['numpy_svd_per_s']:.1f} SVD/s, "
                  f"ratio {row['ratio_numpy_over_moekit']:.2f} (agree {agree})", flush=True)
        out["numpy"] = np.__version__
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
        print("\n| what | value |\n|---|---:|")
        for m, v in out["svd"].items():
            print(f"| {m}: factorize per layer (64 experts x 3) | {v['per_layer_factorize_s']:.2f} s |")
            print(f"| {m}: calibration per layer ({args.tokens} tokens) | {v['per_layer_calibration_s']:.2f} s |")
        for r in out["throughput"]:
            print(f"| SVD {r['matrix']}: numpy time / moekit time | {r['ratio_numpy_over_moekit']:.2f} |")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
