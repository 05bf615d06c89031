#!/usr/bin/env python3
"""Quality of `moekit quantize` on the demo model: perplexity and KL(original || quantized) on the
eight held-out domains, for RTN, GPTQ (layer-wide Hessian), expert-aware GPTQ (routed tokens
only), AGQ (gate-weighted) and the ggml types llama.cpp computes with; writes the table into
docs/RESULTS.md between the quantize markers.

Usage: .venv/bin/python scripts/quantize_results.py [--moekit build/moekit] [--calib-tokens 2048]
       [--eval-tokens 2048] [--out docs/RESULTS.md]
"""
import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]
BEGIN, END = "<!-- quantize-results:begin -->", "<!-- quantize-results:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--calib-tokens", type=int, default=2048)
    ap.add_argument("--eval-tokens", type=int, default=2048)
    ap.add_argument("--out", default=str(ROOT / "docs" / "RESULTS.md"))
    a = ap.parse_args()
    model = ROOT / "assets" / "demo-moe"
    calib = ",".join(str(ROOT / "assets" / "corpus" / "train" / f"{d}.txt") for d in DOMAINS)
    data = ",".join(f"{d}={ROOT / 'assets' / 'corpus' / 'eval' / (d + '.txt')}" for d in DOMAINS)
    gptq = ["--calib", calib, "--max-tokens", str(a.calib_tokens)]
    variants = [
        ("RTN int4 g128 sym", ["--bits", "4"]),
        ("RTN int4 g128 asym", ["--bits", "4", "--asym"]),
        ("GPTQ int4 g128, layer Hessian", ["--bits", "4", "--method", "gptq", "--hessian", "layer"] + gptq),
        ("GPTQ int4 g128, expert-aware", ["--bits", "4", "--method", "gptq", "--hessian", "expert"] + gptq),
        ("GPTQ int4 g128, AGQ (gate-weighted)", ["--bits", "4", "--method", "gptq", "--hessian", "agq"] + gptq),
        ("GPTQ int4 g128, expert-aware, act-order", ["--bits", "4", "--method", "gptq", "--act-order"] + gptq),
        ("RTN int3 g32 sym", ["--bits", "3", "--group-size", "32"]),
        ("GPTQ int3 g32, layer Hessian", ["--bits", "3", "--group-size", "32", "--method", "gptq", "--hessian", "layer"] + gptq),
        ("GPTQ int3 g32, expert-aware", ["--bits", "3", "--group-size", "32", "--method", "gptq"] + gptq),
        ("GPTQ int3 g32, AGQ", ["--bits", "3", "--group-size", "32", "--method", "gptq", "--hessian", "agq"] + gptq),
        ("RTN mixed precision, experts avg 3.0 of {2,3,4} g32", ["--bits", "3", "--group-size", "32", "--mixed-precision",
                                                                 "--avg-bits", "3", "--candidate-bits", "2,3,4"] + gptq),
        ("GPTQ expert-aware + mixed precision, experts avg 3.0 of {2,3,4} g32",
         ["--bits", "3", "--group-size", "32", "--method", "gptq", "--mixed-precision", "--avg-bits", "3",
          "--candidate-bits", "2,3,4"] + gptq),
        ("ggml q8_0 (= GGUF)", ["--type", "q8_0"]),
        ("ggml q4_K -> q5_0 fallback (= GGUF)", ["--type", "q4_K"]),
        ("ggml q4_0 (= GGUF)", ["--type", "q4_0"]),
    ]
    rows = []
    with tempfile.TemporaryDirectory() as td:
        for label, args in variants:
            out = Path(td) / "q"
            t = time.time()
            subprocess.run([a.moekit, "quantize", str(model), "--format", "hf-fake", "-o", str(out), "--force"] + args,
                           check=True, capture_output=True)
            qs = time.time() - t
            mj = json.loads((out / "moekit.json").read_text())
            ev = json.loads(subprocess.run([a.moekit, "eval", str(out), "--data", data, "--ref", str(model),
                                            "--max-tokens", str(a.eval_tokens), "--json"],
                                           check=True, capture_output=True, text=True).stdout)
            tot = ev["total"]
            starved = sum(1 for e in mj.get("gptq_experts", []) if e["starved"])
            rows.append((label, mj["avg_bits_quantized"], tot["ppl"], tot["ref_ppl"], tot["kl_mean"], tot["kl_p99"],
                         tot["top1_agreement"], tot["routing_agreement"]["mean"], qs, starved))
            print(f"{label}: ppl {tot['ppl']:.3f} KL {tot['kl_mean']:.4f} ({qs:.1f} s)", flush=True)
    lines = [BEGIN, "",
             f"Demo model (`assets/demo-moe`, OLMoE, 16 experts top-2, d_model 128), {len(DOMAINS)} held-out domains x "
             f"{a.eval_tokens} tokens (`moekit eval --ref`); GPTQ calibrated on the training corpus, "
             f"{a.calib_tokens} tokens per domain. Bits = average stored bits per quantized weight (scales included). "
             "GPTQ applies to the routed experts; attention, embedding and head are RTN on the same grid in every row; "
             "mixed precision allocates widths to the routed experts only (rest at 3 bits), so its rows match the int3 "
             "rows' average bits exactly. "
             "Produced by `scripts/quantize_results.py`.", "",
             "| variant | bits | ppl | ppl (original) | KL mean | KL p99 | top-1 agree | routing agree | quantize s | starved experts |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.4f} | {r[5]:.3f} | {100 * r[6]:.2f}% | "
                     f"{100 * r[7]:.2f}% | {r[8]:.1f} | {r[9]} |")
    lines += ["", END]
    block = "\n".join(lines)
    p = Path(a.out)
    text = p.read_text()
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## Quantization (`moekit quantize`)\n\n" + block + "\n"
    p.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
