#!/usr/bin/env python3
"""Eval throughput: `moekit eval` versus transformers on the CPU, same thread count: fp32 (both
exact), and with --precisions fp32,bf16 (default) also `moekit eval --compute bf16` (bf16 GEMMs with
fp32 accumulation through oneDNN) and transformers with dtype bfloat16.

For each model ((a) assets/demo-moe, (b) a random OLMoE-shaped checkpoint written by
scripts/make_synthetic_model.py: d_model 1024, 64 experts of 512, top-8, 16 heads, vocab 8192):
  * moekit: `moekit eval MODEL --data ids.bin --seq-len L --threads N --json`; tokens/s is the
    JSON's timing.tokens_per_s (forward passes + scoring, weights streamed from the mmap'ed
    checkpoint on every batch, as the engine always does); the command's wall time is also kept,
    and the engine's phase times (MOEKIT_ENGINE_PROFILE=1: attention, router+MoE incl. expert
    loading, logits, ...) as engine_profile_s.
  * transformers: the same ids cut into the same non-overlapping windows of L tokens (a final
    partial window of >= 2 ids kept), model loaded with dtype float32, attn_implementation
    "sdpa" (transformers' default; --hf-attn eager for the other), torch.set_num_threads(N),
    torch.inference_mode(), batches of B windows; mean NLL of positions 0..n-2 predicting
    1..n-1 (cross-entropy summed in float64). Timed: forward + loss, after one untimed warm-up
    batch, best of --runs passes over the data (as for moekit); model loading excluded.
  * the fp32 bound: GEMM peak / transformers' GFLOP/s is the ratio an implementation running
    every matmul at the measured peak, and spending no time elsewhere, would reach.
  * perplexities must agree within 0.1 % (relative) in fp32; bf16 rows report their perplexity's
    relative difference to moekit's fp32 one.
  * bf16: `moekit eval --compute bf16` (weights packed to bf16 once per layer, activations rounded
    per GEMM, fp32 accumulation; norms/softmax/routing/NLL fp32); transformers loaded with dtype
    bfloat16 (all of its math in bf16, as a user of torch on the CPU would run it).
Data: pre-tokenized int32 ids (.bin), so no tokenizer is involved: for demo-moe the English eval
text tokenized with its tokenizer.json (no special tokens), for the synthetic model seeded random
ids (its vocabulary has no tokenizer).

GEMM peak: torch.mm fp32 2048 x 2048 x 2048 on N threads in the same run (best of 10); also the
bf16 one (torch.mm bfloat16, same shape) for the bf16 rows.
moekit GFLOP/s = 2 x (active matmul parameters per token) x tokens / s, where active parameters
are q/k/v/o projections, router, the top-k routed experts (3 matrices each), shared experts and
lm_head; embeddings (a gather) and norms are excluded. Attention score/value matmuls
(2 x 2 x n_layer x d_model x mean context, mean context = (L + 1) / 2) are reported separately
as "incl. attention".

Usage: .venv/bin/python bench/bench_eval.py [--moekit build-mem/moekit] [--threads 1,2]
       [--seq-len 256] [--tokens 8192] [--layers 2] [--work DIR] [--skip-synthetic]
       [--precisions fp32,bf16]
Writes bench/results/eval.json and prints a Markdown table.
"""
import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gemm_peak(threads, n=2048, reps=10, dtype="float32"):
    import torch
    torch.set_num_threads(threads)
    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def active_params(cfg):
    d, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    h = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or d // h
    kv = cfg.get("num_key_value_heads", h)
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    e, k = cfg.get("num_experts", cfg.get("num_local_experts")), cfg["num_experts_per_tok"]
    ff = cfg.get("moe_intermediate_size") or cfg["intermediate_size"]
    moe = e * d + k * 3 * d * ff
    shared = cfg.get("shared_expert_intermediate_size") or 0
    moe += 3 * d * shared
    return L * (attn + moe) + cfg["vocab_size"] * d, attn


def windows(ids, seq_len):
    out = []
    for s in range(0, len(ids), seq_len):
        w = ids[s:s + seq_len]
        if len(w) >= 2:
            out.append(w)
    return out


def group_windows(wins, batch_windows):
    """Batches of up to batch_windows same-length windows; a final partial window runs alone."""
    groups, cur = [], []
    for w in wins:
        if cur and (len(w) != len(cur[0]) or len(cur) == batch_windows):
            groups.append(cur)
            cur = []
        cur.append(w)
    if cur:
        groups.append(cur)
    return groups


def profile(stderr):
    """Engine phase times (MOEKIT_ENGINE_PROFILE=1 prints them to stderr at exit), seconds."""
    for line in stderr.splitlines():
        if line.startswith("[engine profile]"):
            out = {}
            for item in line[len("[engine profile]"):].split(";"):
                if item.strip():
                    k, v = item.strip().rsplit(" ", 1)
                    out[k.strip("() ").replace("of which ", "")] = float(v.rstrip("s"))
            return out
    return None


def run_moekit(exe, model, data, seq_len, threads, runs, compute="fp32"):
    best = None
    for _ in range(runs):
        t = time.perf_counter()
        res = subprocess.run([exe, "eval", model, "--data", data, "--seq-len", str(seq_len), "--threads", str(threads),
                              "--compute", compute, "--json"], capture_output=True, text=True, env={**os.environ, "MOEKIT_ENGINE_PROFILE": "1"})
        wall = time.perf_counter() - t
        if res.returncode != 0:
            sys.exit(f"moekit eval failed ({res.returncode}):\n{res.stderr}")
        j = json.loads(res.stdout)
        r = {"tokens": j["total"]["tokens"], "scored": j["total"]["scored"], "mean_nll": j["total"]["mean_nll"],
             "ppl": j["total"]["ppl"], "eval_s": j["timing"]["eval_s"], "tool_wall_s": j["timing"]["wall_s"],
             "process_wall_s": wall, "tokens_per_s": j["timing"]["tokens_per_s"], "engine_profile_s": profile(res.stderr),
             "compute": j["params"].get("compute", "fp32"), "gemm_backend": j["params"].get("gemm_backend")}
        if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
            best = r
    return best


def run_transformers(model_dir, ids, seq_len, threads, batch_windows, runs, attn, dtype="float32"):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype), attn_implementation=attn)
    model.eval()
    groups = group_windows(windows(ids, seq_len), batch_windows)

    def step(g):
        x = torch.tensor(np.stack(g), dtype=torch.long)
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1),
                               reduction="sum").double().item(), x.shape[0] * (x.shape[1] - 1), x.numel()

    best = None
    with torch.inference_mode():
        step(groups[0][:1])  # warm-up
        for _ in range(runs):  # best of `runs`, like moekit's
            nll, scored, tokens = 0.0, 0, 0
            t = time.perf_counter()
            for g in groups:
                a, b, c = step(g)
                nll, scored, tokens = nll + a, scored + b, tokens + c
            dt = time.perf_counter() - t
            if best is None or dt < best:
                best = dt
    experts_impl = getattr(model.config, "_experts_implementation", None)
    return {"tokens": tokens, "scored": scored, "mean_nll": nll / scored, "ppl": math.exp(nll / scored),
            "eval_s": best, "tokens_per_s": tokens / best, "batch_windows": batch_windows, "runs": runs,
            "attn_implementation": attn, "experts_implementation": experts_impl,
            "torch_threads": torch.get_num_threads(), "dtype": dtype}


def demo_ids(path, n_tokens):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(ROOT, "assets", "demo-moe", "tokenizer.json"))
    text = open(os.path.join(ROOT, "assets", "corpus", "eval", "en.txt"), encoding="utf-8").read()
    ids = np.array(tok.encode(text, add_special_tokens=False).ids, dtype="<i4")
    reps = max(1, -(-n_tokens // len(ids)))
    ids = np.tile(ids, reps)[:n_tokens]
    ids.tofile(path)
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", default=os.path.join(ROOT, "build-mem", "moekit"))
    ap.add_argument("--threads", default=str(os.cpu_count()),
                    help="comma-separated thread counts, each run for both tools (e.g. 1,2)")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=8192, help="ids per model")
    ap.add_argument("--layers", type=int, default=2, help="synthetic model depth")
    ap.add_argument("--ffn", type=int, default=512, help="synthetic expert intermediate size")
    ap.add_argument("--batch-windows", type=int, default=16, help="transformers windows per forward")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (best kept, for both tools)")
    ap.add_argument("--hf-attn", default="sdpa",
                    help="transformers attn_implementation (default sdpa: transformers' own default, what a user runs)")
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 rows (both tools)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "eval.json"))
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="moekit_bench_eval_")
    os.makedirs(work, exist_ok=True)
    import torch

    models = [("demo-moe", os.path.join(ROOT, "assets", "demo-moe"), None)]
    if not args.skip_synthetic:
        syn = os.path.join(work, f"olmoe-synthetic-{args.layers}l")
        if not os.path.exists(os.path.join(syn, "model.safetensors")):
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_model.py"), syn,
                            "--layers", str(args.layers), "--ffn", str(args.ffn), "--dtype", "float32"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        models.append(("olmoe-synthetic", syn, None))

    thread_counts = [int(t) for t in args.threads.split(",")]
    peaks = {}
    results = []
    for threads, (name, path, _) in [(t, m) for t in thread_counts for m in models]:
        data = os.path.join(work, f"{name}.bin")
        if name == "demo-moe":
            ids = demo_ids(data, args.tokens)
        else:
            cfg = json.load(open(os.path.join(path, "config.json")))
            ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=args.tokens, dtype=np.int32)
            ids.astype("<i4").tofile(data)
        cfg = json.load(open(os.path.join(path, "config.json")))
        # Peak measured right before each pair of runs: on a shared machine the cores available
        # change over time, and the fraction is only meaningful against the same conditions.
        peak = gemm_peak(threads)
        peaks.setdefault(threads, []).append(peak)
        print(f"[{name}, {threads} threads] GEMM peak {peak:.1f} GFLOP/s; moekit eval ...", file=sys.stderr)
        precisions = args.precisions.split(",")
        peak_bf16 = gemm_peak(threads, dtype="bfloat16") if "bf16" in precisions else None
        mk = run_moekit(args.moekit, path, data, args.seq_len, threads, args.runs) if "fp32" in precisions else None
        mk_bf = None
        if "bf16" in precisions:
            print(f"[{name}, {threads} threads] bf16 GEMM peak {peak_bf16:.1f} GFLOP/s; moekit eval --compute bf16 ...",
                  file=sys.stderr)
            mk_bf = run_moekit(args.moekit, path, data, args.seq_len, threads, args.runs, compute="bf16")
        print(f"[{name}, {threads} threads] transformers ...", file=sys.stderr)
        hf = (run_transformers(path, ids, args.seq_len, threads, args.batch_windows, args.runs, args.hf_attn)
              if "fp32" in precisions else None)
        hf_bf = (run_transformers(path, ids, args.seq_len, threads, args.batch_windows, args.runs, args.hf_attn,
                                  dtype="bfloat16")
                 if "bf16" in precisions else None)
        n_active, attn_params = active_params(cfg)
        mean_ctx = (args.seq_len + 1) / 2
        attn_flops_tok = 2 * 2 * cfg["num_hidden_layers"] * cfg["hidden_size"] * mean_ctx
        r = {
            "model": name, "threads": threads, "gemm_peak_gflops": peak, "gemm_peak_bf16_gflops": peak_bf16,
            "path": os.path.relpath(path, ROOT) if path.startswith(ROOT) else path,
            "config": {k: cfg.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_experts",
                                               "num_experts_per_tok", "intermediate_size", "vocab_size")},
            "active_matmul_params_per_token": n_active,
            "moekit": mk, "transformers": hf, "moekit_bf16": mk_bf, "transformers_bf16": hf_bf,
        }
        if mk and hf:
            gf = 2 * n_active * mk["tokens_per_s"] / 1e9
            gf_hf = 2 * n_active * hf["tokens_per_s"] / 1e9
            rel = abs(mk["ppl"] - hf["ppl"]) / hf["ppl"]
            r.update({"speedup": mk["tokens_per_s"] / hf["tokens_per_s"], "ppl_rel_diff": rel,
                      "ppl_agree_0.1pct": rel <= 1e-3, "moekit_gflops": gf,
                      "moekit_gflops_incl_attention": (2 * n_active + attn_flops_tok) * mk["tokens_per_s"] / 1e9,
                      "moekit_fraction_of_gemm_peak": gf / peak,
                      "transformers_gflops": gf_hf, "transformers_fraction_of_gemm_peak": gf_hf / peak,
                      # The ratio an implementation running every matmul at the GEMM peak (and
                      # nothing else) would reach against this transformers run.
                      "fp32_speedup_bound_at_gemm_peak": peak / gf_hf})
        if mk_bf:
            gf = 2 * n_active * mk_bf["tokens_per_s"] / 1e9
            r.update({"moekit_bf16_gflops": gf, "moekit_bf16_fraction_of_bf16_gemm_peak": gf / peak_bf16})
            if hf:
                r["speedup_bf16_vs_transformers_fp32"] = mk_bf["tokens_per_s"] / hf["tokens_per_s"]
            if hf_bf:
                r["speedup_bf16_vs_transformers_bf16"] = mk_bf["tokens_per_s"] / hf_bf["tokens_per_s"]
            if mk:
                r["speedup_bf16_vs_moekit_fp32"] = mk_bf["tokens_per_s"] / mk["tokens_per_s"]
                r["ppl_bf16_rel_diff_vs_fp32"] = (mk_bf["ppl"] - mk["ppl"]) / mk["ppl"]
        if hf_bf and mk:
            r["transformers_bf16_ppl_rel_diff_vs_fp32"] = (hf_bf["ppl"] - mk["ppl"]) / mk["ppl"]
        results.append(r)

    out = {
        "benchmark": "eval tokens/s, moekit eval vs transformers, CPU, fp32 and bf16",
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "threads": thread_counts},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "seq_len": args.seq_len, "tokens_per_model": args.tokens,
        "gemm_peak_gflops": {str(t): max(v) for t, v in peaks.items()},
        "gemm_peak_method": "torch.mm fp32 2048x2048x2048, best of 10, measured before each model's runs",
        "gemm_peak_bf16_method": "torch.mm bfloat16 2048x2048x2048, best of 10, measured before each model's runs",
        "precisions": args.precisions.split(","),
        "command": " ".join(sys.argv),
        "flop_convention": "2 x active matmul params per token (q/k/v/o, router, top-k experts x3, shared, lm_head); "
                           "attention QK^T and PV excluded (added in *_incl_attention with mean context (L+1)/2)",
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)

    def tps(x):
        return f"{x['tokens_per_s']:.0f}" if x else "-"

    def ratio(r, key):
        return f"{r[key]:.2f}x" if key in r else "-"

    print(f"seq_len {args.seq_len}; GEMM peak = torch.mm 2048^3 (fp32 / bf16) on the same threads, measured before each row\n")
    print("| model | threads | moekit fp32 tok/s | moekit bf16 tok/s | transformers fp32 tok/s | transformers bf16 tok/s "
          "| moekit fp32 / hf fp32 | moekit bf16 / hf fp32 | moekit bf16 / hf bf16 | ppl fp32 (moekit / hf) "
          "| ppl bf16 rel diff (moekit / hf) | moekit GFLOP/s fp32 (of fp32 peak) | hf GFLOP/s fp32 (of peak) "
          "| fp32 bound at GEMM peak | bf16 (of bf16 peak) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mk, hf, mkb = r["moekit"], r["transformers"], r["moekit_bf16"]
        ppl = f"{mk['ppl']:.4f} / {hf['ppl']:.4f}" if mk and hf else "-"
        dpp = (f"{100 * r['ppl_bf16_rel_diff_vs_fp32']:+.3f}% / {100 * r['transformers_bf16_ppl_rel_diff_vs_fp32']:+.3f}%"
               if "ppl_bf16_rel_diff_vs_fp32" in r and "transformers_bf16_ppl_rel_diff_vs_fp32" in r else "-")
        g32 = (f"{r['moekit_gflops']:.0f} ({100 * r['moekit_fraction_of_gemm_peak']:.0f}% of {r['gemm_peak_gflops']:.0f})"
               if "moekit_gflops" in r else "-")
        ghf = (f"{r['transformers_gflops']:.0f} ({100 * r['transformers_fraction_of_gemm_peak']:.0f}%)"
               if "transformers_gflops" in r else "-")
        g16 = (f"{r['moekit_bf16_gflops']:.0f} ({100 * r['moekit_bf16_fraction_of_bf16_gemm_peak']:.0f}% of "
               f"{r['gemm_peak_bf16_gflops']:.0f})" if mkb else "-")
        print(f"| {r['model']} | {r['threads']} | {tps(mk)} | {tps(mkb)} | {tps(hf)} | {tps(r['transformers_bf16'])} | "
              f"{ratio(r, 'speedup')} | {ratio(r, 'speedup_bf16_vs_transformers_fp32')} | "
              f"{ratio(r, 'speedup_bf16_vs_transformers_bf16')} | {ppl} | {dpp} | {g32} | {ghf} | "
              f"{ratio(r, 'fp32_speedup_bound_at_gemm_peak')} | {g16} |")

if __name__ == "__main__":
    main()
