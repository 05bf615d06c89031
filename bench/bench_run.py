#!/usr/bin/env python3
"""`moekit run` against the same work done the way a user would without it: the individual
`moekit` commands one after another (a shell script), on the same machine in the same run.

Workload (per model): profile the routing, then prune with three methods (reap, frequency, ean) to
half the experts and evaluate each pruned model against the original. As a script that is
profile + 3 x prune + 3 x eval, each prune and the profile running the model over the calibration
corpus; as a recipe the profile and the three prunes share one calibration pass.

Measured, best of --runs (wall time of the whole process):
  script      the seven commands in sequence
  run         `moekit run` of the equivalent recipe (fresh: no saved statistics)
  run-reuse   the same recipe again with --reuse-calibration (statistics of the previous run)
and reported as script / run and script / run-reuse (> 1: moekit run is faster), together with
the tokens each spent on calibration forward passes. Outputs are checked to be identical: the
pruned checkpoints of the script and of the recipe hash the same.

Models: (a) assets/demo-moe (calibration: the first --demo-tokens tokens of en, de and code-py of
assets/corpus/train; evaluation: assets/corpus/eval/en.txt), (b) the random OLMoE-shaped
checkpoint of scripts/make_synthetic_model.py (--layers, bf16; random token ids for both).

Usage: .venv/bin/python bench/bench_run.py [--moekit build/moekit] [--threads N] [--runs 2]
       [--work DIR] [--skip-synthetic]
Writes bench/results/run.json and prints a Markdown table.
"""
import argparse
import hashlib
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
METHODS = ["reap", "frequency", "ean"]


def timed(cmd):
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def tree_hash(d):
    h = hashlib.sha256()
    for f in sorted(Path(d).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()


def script(exe, model, calib, data, corpus, out, threads):
    """The seven commands; returns (seconds, calibration tokens, {method: hash})."""
    common = ["--threads", threads] + corpus
    t = timed([exe, "profile", model, "--data", calib, "-o", out / "profile", "--force", "--bootstrap-resamples", "0"] + common)
    hashes = {}
    for m in METHODS:
        t += timed([exe, "prune", model, "--method", m, "--keep", "0.5", "--calib", calib, "-o", out / m, "--force"] + common)
        t += timed([exe, "eval", out / m, "--data", data, "--ref", model] + common)
        hashes[m] = tree_hash(out / m)
    return t, hashes


def recipe(path, name, model, calib, data, corpus_map):
    lines = [f"name: {name}", f"model: {model}", f"calib: {calib}", f"data: {data}",
             "corpus: {" + ", ".join(f"{k}: {v}" for k, v in corpus_map.items()) + "}", "steps:",
             "  - profile: {bootstrap_resamples: 0}"]
    for m in METHODS:
        lines += [f"  - prune: {{name: {m.replace('-', '_')}, input: model, method: {m}, keep: 0.5}}",
                  f"  - eval: {{name: eval_{m.replace('-', '_')}, input: {m.replace('-', '_')}}}"]
    Path(path).write_text("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--demo-tokens", type=int, default=4096, help="calibration tokens per demo domain")
    ap.add_argument("--synthetic-tokens", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=2, help="synthetic model depth")
    ap.add_argument("--skip-synthetic", action="store_true")
    args = ap.parse_args()
    exe = Path(args.moekit).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="moekit-bench-run-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    threads = str(args.threads)

    train, evald = ROOT / "assets" / "corpus" / "train", ROOT / "assets" / "corpus" / "eval"
    models = [("demo-moe", ROOT / "assets" / "demo-moe",
               f"en={train / 'en.txt'},de={train / 'de.txt'},code={train / 'code-py.txt'}", str(evald / "en.txt"),
               {"seq_len": 128, "max_tokens": args.demo_tokens})]
    if not args.skip_synthetic:
        syn = work / f"olmoe-synthetic-{args.layers}l-bf16"
        ids = work / "synthetic_ids.bin"
        if not syn.exists():
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_synthetic_model.py"), str(syn), "--layers",
                            str(args.layers), "--dtype", "bfloat16", "--ids", str(ids), str(args.synthetic_tokens)],
                           check=True)
        models.append(("olmoe-synthetic", syn, str(ids), str(ids), {"seq_len": 256}))

    rows = []
    for name, model, calib, data, corpus_map in models:
        corpus = []
        for k, v in corpus_map.items():
            corpus += ["--" + k.replace("_", "-"), str(v)]
        out = work / f"script-{name}"
        out.mkdir(exist_ok=True)
        best_script, hashes = None, None
        for _ in range(args.runs):
            t, hashes = script(exe, model, calib, data, corpus, out, threads)
            best_script = t if best_script is None else min(best_script, t)
        rpath = work / f"{name}.yaml"
        recipe(rpath, name, model, calib, data, corpus_map)
        runs_dir = work / "runs"
        best_run, best_reuse, summary = None, None, None
        for _ in range(args.runs):
            t = timed([exe, "run", rpath, "--runs-dir", runs_dir, "--threads", threads])
            summary = json.loads((runs_dir / name / "summary.json").read_text())
            best_run = t if best_run is None else min(best_run, t)
            t = timed([exe, "run", rpath, "--runs-dir", runs_dir, "--threads", threads, "--reuse-calibration"])
            best_reuse = t if best_reuse is None else min(best_reuse, t)
        reuse_summary = json.loads((runs_dir / name / "summary.json").read_text())
        for m in METHODS:
            if tree_hash(runs_dir / name / m) != hashes[m]:
                raise SystemExit(f"{name}: moekit run's {m} checkpoint differs from the script's")
        run_tokens = summary["calibration"]["forward_tokens"]
        calib_tokens = summary["calibration"]["shared_passes"][0]["tokens"]
        rows.append({"model": name, "script_s": best_script, "run_s": best_run, "run_reuse_s": best_reuse,
                     "speedup": best_script / best_run, "speedup_reuse": best_script / best_reuse,
                     "script_calibration_tokens": 4 * calib_tokens, "run_calibration_tokens": run_tokens,
                     "run_reuse_calibration_tokens": reuse_summary["calibration"]["forward_tokens"]})

    result = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads},
              "workload": "profile + prune (reap, frequency, ean) to 50% + eval of each against the original",
              "rows": rows}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "run.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| model | commands one by one | moekit run | ratio | run --reuse-calibration | ratio | calibration tokens (script / run / reuse) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['model']} | {r['script_s']:.1f} s | {r['run_s']:.1f} s | {r['speedup']:.2f}x | {r['run_reuse_s']:.1f} s | "
              f"{r['speedup_reuse']:.2f}x | {r['script_calibration_tokens']} / {r['run_calibration_tokens']} / "
              f"{r['run_reuse_calibration_tokens']} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
