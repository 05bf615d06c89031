#!/usr/bin/env python3
"""`moekit profile` cost: recording overhead over a plain `moekit eval`, statistics time, trace
recomputation throughput (moekit versus the Python reference written from METHODS.md, the
closest thing to what a researcher would otherwise run: moe-lrc-style numpy loops), and the size
of a routing trace per token per layer.

For each model ((a) assets/demo-moe on its eight-domain eval corpus, (b) a random OLMoE-shaped
checkpoint from scripts/make_synthetic_model.py — d_model 1024, 64 experts of 512, top-8 — on
seeded random ids), same data, --seq-len and --threads for every command:
  * eval:    `moekit eval M --data D --json`: timing.eval_s (forward passes + scoring) and the
             process wall time;
  * profile: `moekit profile M --data D --save-trace T --json`: timing.record_s (forward passes
             with the trace observer), timing.stats_s (every statistic, 1000 bootstrap
             resamples), process wall time. Recording overhead = record_s / eval_s - 1 (the
             issue's target: <= 10 %); whole-command ratio = profile wall / eval wall;
  * trace:   `moekit profile --trace T --json` with --bootstrap-resamples 1000 and 0: tokens/s
             = tokens / stats_s; the Python reference (scripts/reference/profile_stats.py
             compute(), point values only, no bootstrap) on the same trace against the
             resamples-0 run;
  * bytes:   trace file size / (tokens x MoE layers).
Timing assertions do not belong in tests; this prints and records numbers.

Usage: .venv/bin/python bench/bench_profile.py [--moekit build/moekit] [--threads 2]
       [--seq-len 256] [--demo-tokens 4000] [--synthetic-tokens 8192] [--skip-synthetic]
Writes bench/results/profile.json and prints a Markdown table.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts", "reference"))


def run_json(cmd):
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return json.loads(res.stdout), wall


def bench_model(exe, name, model, data, seq_len, threads, work, max_tokens):
    common = ["--seq-len", str(seq_len), "--threads", str(threads)]
    if max_tokens:
        common += ["--max-tokens", str(max_tokens)]
    ev, ev_wall = run_json([exe, "eval", model, "--data", data, "--json"] + common)
    trace = os.path.join(work, f"{name}.trace")
    pr, pr_wall = run_json([exe, "profile", model, "--data", data, "--save-trace", trace, "--force",
                            "-o", os.path.join(work, f"{name}-report"), "--json"] + common)
    tokens = pr["data"]["tokens"]
    n_moe = len(pr["model"]["moe_layers"])
    out = {
        "model": name, "path": model, "tokens": tokens, "moe_layers": n_moe, "threads": threads,
        "n_expert": pr["model"]["n_expert"], "n_expert_used": pr["model"]["n_expert_used"],
        "eval": {"eval_s": ev["timing"]["eval_s"], "wall_s": ev_wall},
        "profile": {"record_s": pr["timing"]["record_s"], "stats_s": pr["timing"]["stats_s"], "wall_s": pr_wall,
                    "logit_sample_stride": pr["params"]["logit_sample_stride"]},
    }
    out["record_overhead"] = out["profile"]["record_s"] / out["eval"]["eval_s"] - 1.0
    out["wall_ratio"] = pr_wall / ev_wall
    for resamples in (1000, 0):
        tr, tr_wall = run_json([exe, "profile", "--trace", trace, "--bootstrap-resamples", str(resamples), "--threads",
                                str(threads), "--force", "-o", os.path.join(work, f"{name}-trace-report"), "--json"])
        out[f"trace_r{resamples}"] = {"stats_s": tr["timing"]["stats_s"], "wall_s": tr_wall,
                                      "tokens_per_s": tokens / tr["timing"]["stats_s"]}
    size = os.path.getsize(trace)
    out["trace_bytes"] = size
    out["trace_bytes_per_token_layer"] = size / (tokens * n_moe)
    import profile_stats
    t0 = time.perf_counter()
    profile_stats.compute([trace])
    ref_s = time.perf_counter() - t0
    out["python_reference"] = {"s": ref_s, "tokens_per_s": tokens / ref_s}
    out["trace_speedup_vs_python"] = ref_s / out["trace_r0"]["stats_s"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moekit", default=os.path.join(ROOT, "build", "moekit"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--demo-tokens", type=int, default=4000, help="per domain (8 domains)")
    ap.add_argument("--synthetic-tokens", type=int, default=8192)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="moekit-bench-profile-")
    os.makedirs(work, exist_ok=True)

    eval_dir = os.path.join(ROOT, "assets", "corpus", "eval")
    data = ",".join(f"{os.path.splitext(f)[0]}={os.path.join(eval_dir, f)}" for f in sorted(os.listdir(eval_dir)))
    results = [bench_model(args.moekit, "demo-moe", os.path.join(ROOT, "assets", "demo-moe"), data, args.seq_len,
                           args.threads, work, args.demo_tokens)]
    if not args.skip_synthetic:
        syn = os.path.join(work, "olmoe-synthetic")
        ids = os.path.join(syn, "ids.bin")
        if not os.path.exists(ids):
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_model.py"), syn,
                            "--layers", "2", "--ids", ids, str(args.synthetic_tokens)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results.append(bench_model(args.moekit, "olmoe-synthetic", syn, "random=" + ids, args.seq_len, args.threads,
                                   work, 0))

    doc = {"benchmark": "moekit profile: recording overhead over eval, statistics, trace recomputation",
           "machine": {"cpu": platform.machine(), "cpu_count": os.cpu_count()},
           "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
           "seq_len": args.seq_len, "results": results}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "profile.json"), "w") as f:
        json.dump(doc, f, indent=2)

    print("| model | tokens | eval s | record s (overhead) | stats s | trace recompute tok/s (1000 / 0 resamples) "
          "| Python reference tok/s | moekit / Python | trace B/token/layer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['tokens']} | {r['eval']['eval_s']:.2f} | {r['profile']['record_s']:.2f} "
              f"({100 * r['record_overhead']:+.1f} %) | {r['profile']['stats_s']:.2f} | "
              f"{r['trace_r1000']['tokens_per_s']:.0f} / {r['trace_r0']['tokens_per_s']:.0f} | "
              f"{r['python_reference']['tokens_per_s']:.0f} | {r['trace_speedup_vs_python']:.1f}x | "
              f"{r['trace_bytes_per_token_layer']:.1f} |")


if __name__ == "__main__":
    main()
