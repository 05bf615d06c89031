#!/usr/bin/env python3
"""Eval throughput on a GPU: `moekit eval --device cuda` versus transformers on the same GPU.

Runs on the GPU machine (scripts/gpu_checks.sh calls it there); needs torch with CUDA and
transformers (that machine's python3 has both), numpy and safetensors.

Model: a random OLMoE-shaped checkpoint (scripts/make_synthetic_model.py, bf16 weights), by default
OLMoE-1B-7B's shape with fewer layers: d_model 2048, 64 experts of 1024, top-8, 16 heads,
vocab 50304, --layers 4. Data: seeded random int32 ids (--tokens), cut into non-overlapping windows
of --seq-len ids exactly as `moekit eval` does.
  * moekit: `moekit eval MODEL --data ids.bin --seq-len L --device cuda --compute C --json`;
    tokens/s is timing.tokens_per_s (every forward pass and its scoring, including the first
    batch's conversion and upload of the weights, which later batches find on the GPU), best of
    --runs; also tokens/s without that one-time weight loading (the engine profile's load_layer +
    load_experts, MOEKIT_ENGINE_PROFILE=1), comparable to transformers' number, whose model is
    loaded before its timer starts. C = bf16 (GEMM weights bf16 on the GPU, fp32 accumulation)
    and fp32.
  * transformers: the same windows, model loaded on cuda with dtype bfloat16 (and float32 for the
    fp32 row), attn_implementation "sdpa", batches of --batch-windows windows; timed forward +
    cross-entropy (float32 logits, summed in float64) with torch.cuda.synchronize, after one
    untimed warm-up batch; loading excluded.
  * the perplexities of the fp32 rows must agree within 0.1 %; bf16 rows report their relative
    difference to the fp32 ones.
Machine ceilings measured in the same run: bf16 torch.mm 8192^3 (TFLOP/s) and a device-to-device
copy (GB/s, bytes read + written). moekit's achieved TFLOP/s = 2 x active matmul parameters per
token x tokens/s (q/k/v/o, router, top-k experts, lm_head), its fraction of the bf16 peak, and the
bytes of bf16 weights one pass reads against the copy bandwidth.

Usage: python3 bench/bench_eval_gpu.py --moekit PATH [--layers 4] [--tokens 65536] [--seq-len 2048]
       [--runs 2] [--work DIR] [--out bench/results/eval_gpu.json]
       [--device cpu]   (a smoke run of this script on a machine without a GPU; numbers meaningless)
Prints a Markdown table and writes the JSON.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_eval import active_params, group_windows, profile, windows  # noqa: E402  (the CPU benchmark's helpers)


def ceilings(device):
    import torch
    if device != "cuda":
        return {"bf16_mm_tflops": float("nan"), "copy_gb_s": float("nan"), "gpu": "none (" + device + " smoke run)"}
    n = 8192
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        torch.mm(a, b)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    torch.cuda.synchronize()
    tflops = 2 * n ** 3 * 10 / (time.perf_counter() - t) / 1e12
    x = torch.empty(2 ** 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    gbs = 2 * x.numel() * 10 / (time.perf_counter() - t) / 1e9
    return {"bf16_mm_tflops": tflops, "copy_gb_s": gbs, "gpu": torch.cuda.get_device_name(0)}


def weight_bytes(cfg):
    d, f, e = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_experts"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"]) * hd
    return 2 * (cfg["num_hidden_layers"] * (d * d * 2 + d * kv * 2 + e * d + e * 3 * d * f) + cfg["vocab_size"] * d)


def run_moekit(exe, model, data, seq_len, runs, compute, device):
    best = None
    for _ in range(runs):
        res = subprocess.run([exe, "eval", model, "--data", data, "--seq-len", str(seq_len), "--device", device,
                              "--compute", compute, "--json"], capture_output=True, text=True,
                             env={**os.environ, "MOEKIT_ENGINE_PROFILE": "1"})
        if res.returncode != 0:
            sys.exit(f"moekit eval --device {device} failed ({res.returncode}):\n{res.stderr}")
        j = json.loads(res.stdout)
        prof = profile(res.stderr) or {}
        load_s = prof.get("load_layer", 0.0) + prof.get("load_experts", 0.0)
        r = {"tokens": j["total"]["tokens"], "ppl": j["total"]["ppl"], "eval_s": j["timing"]["eval_s"],
             "tokens_per_s": j["timing"]["tokens_per_s"], "weight_load_s": load_s,
             "tokens_per_s_loaded": j["total"]["tokens"] / max(1e-9, j["timing"]["eval_s"] - load_s),
             "device": j["params"]["device"], "gemm_backend": j["params"]["gemm_backend"], "compute": compute,
             "engine_profile_s": prof}
        if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
            best = r
    return best


def run_transformers(model_dir, ids, seq_len, batch_windows, dtype, device):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype), attn_implementation="sdpa").to(device)
    model.eval()
    groups = group_windows(windows(ids, seq_len), batch_windows)

    def step(g):
        x = torch.tensor(np.stack(g), dtype=torch.long, device=device)
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), x[:, 1:].reshape(-1), reduction="sum")
        return loss.double().item(), x.shape[0] * (x.shape[1] - 1), x.numel()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    nll, scored, tokens = 0.0, 0, 0
    with torch.inference_mode():
        step(groups[0][:1])
        sync()
        t = time.perf_counter()
        for g in groups:
            a, b, c = step(g)
            nll, scored, tokens = nll + a, scored + b, tokens + c
        sync()
        dt = time.perf_counter() - t
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"tokens": tokens, "ppl": math.exp(nll / scored), "eval_s": dt, "tokens_per_s": tokens / dt, "dtype": dtype,
            "batch_windows": batch_windows, "attn_implementation": "sdpa"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--ffn", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-windows", type=int, default=8)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--work", default=None)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "eval_gpu.json"))
    a = ap.parse_args()

    work = a.work or tempfile.mkdtemp(prefix="moekit_bench_gpu_")
    model = os.path.join(work, "olmoe-synthetic")
    ids_path = os.path.join(work, "ids.bin")
    if not os.path.exists(os.path.join(model, "config.json")):
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_synthetic_model.py"), model, "--layers", str(a.layers),
                        "--d-model", str(a.d_model), "--ffn", str(a.ffn), "--vocab", str(a.vocab), "--dtype", "bfloat16",
                        "--ids", ids_path, str(a.tokens)], check=True)
    ids = np.fromfile(ids_path, dtype="<i4")
    cfg = json.load(open(os.path.join(model, "config.json")))

    ceil = ceilings(a.device)
    rows = []
    for compute, dtype in (("bf16", "bfloat16"), ("fp32", "float32")):
        m = run_moekit(a.moekit, model, ids_path, a.seq_len, a.runs, compute, a.device)
        t = run_transformers(model, ids, a.seq_len, a.batch_windows, dtype, a.device)
        tflops = 2 * active_params(cfg)[0] * m["tokens_per_s"] / 1e12
        rows.append({"compute": compute, "moekit": m, "transformers": t, "speedup": m["tokens_per_s"] / t["tokens_per_s"],
                     "speedup_weights_loaded": m["tokens_per_s_loaded"] / t["tokens_per_s"],
                     "moekit_tflops": tflops, "moekit_fraction_of_bf16_peak": tflops / ceil["bf16_mm_tflops"],
                     "weight_bytes": weight_bytes(cfg),
                     "weight_upload_gb_s": weight_bytes(cfg) / max(1e-9, m["weight_load_s"]) / 1e9})
    fp32 = next(r for r in rows if r["compute"] == "fp32")
    ok = abs(fp32["moekit"]["ppl"] / fp32["transformers"]["ppl"] - 1) <= 1e-3
    result = {"gpu": ceil["gpu"], "ceilings": ceil, "model": {k: cfg[k] for k in ("hidden_size", "num_experts", "num_experts_per_tok",
              "intermediate_size", "num_hidden_layers", "vocab_size")}, "seq_len": a.seq_len, "rows": rows,
              "fp32_ppl_agree": ok}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"GPU: {ceil['gpu']}; bf16 mm {ceil['bf16_mm_tflops']:.0f} TFLOP/s; copy {ceil['copy_gb_s']:.0f} GB/s")
    print("| compute | moekit tok/s (weights loaded) | transformers tok/s | ratio (loaded) | weight load s | "
          "moekit TFLOP/s (of bf16 peak) | ppl moekit / transformers |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["moekit"]
        print(f"| {r['compute']} | {m['tokens_per_s']:.0f} ({m['tokens_per_s_loaded']:.0f}) | "
              f"{r['transformers']['tokens_per_s']:.0f} | {r['speedup']:.2f}x ({r['speedup_weights_loaded']:.2f}x) | "
              f"{m['weight_load_s']:.2f} | {r['moekit_tflops']:.1f} ({100 * r['moekit_fraction_of_bf16_peak']:.1f}%) | "
              f"{m['ppl']:.4f} / {r['transformers']['ppl']:.4f} |")
    if not ok:
        sys.exit("fp32 perplexities differ by more than 0.1%")


if __name__ == "__main__":
    main()
