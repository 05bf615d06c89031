#!/usr/bin/env python3
"""Quality of `moekit svd` on the bundled demo model: perplexity per domain and KL against the
original for svd-llm and d2-moe at several kept-parameter ratios (a curve), with plain
unwhitened SVD (`--method svd`) as the baseline, and the size of each factored checkpoint.

Every configuration is written in the factored format (the checkpoint whose memory saving is
real) and evaluated by `moekit eval --ref` through moekit's engine, which runs the factors as two
GEMMs; the dense format holds the bf16 rounding of the same products (tests/unit/test_svd_engine
bounds the difference). Calibration: the demo's training split (first --calib-tokens tokens of
each domain); evaluation: the held-out split (first --eval-tokens of each domain).

Writes the table into docs/RESULTS.md between `<!-- svd-results:begin -->` and
`<!-- svd-results:end -->`, and every number into bench/results/svd_quality.json.

Usage: .venv/bin/python scripts/svd_results.py [--moekit build/moekit] [--calib-tokens 4096]
       [--eval-tokens 4096] [--ratios 0.9,0.75,0.5,0.3] [--threads N]
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]
METHODS = ["svd", "svd-llm", "d2-moe"]
BEGIN, END = "<!-- svd-results:begin -->", "<!-- svd-results:end -->"


def run_json(cmd):
    t = time.time()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} -> exit {r.returncode}: {r.stderr[-1500:]}")
    return json.loads(r.stdout), time.time() - t


def data_spec(split):
    return ",".join(f"{d}={ROOT / 'assets' / 'corpus' / split / (d + '.txt')}" for d in DOMAINS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--model", default=str(ROOT / "assets" / "demo-moe"))
    ap.add_argument("--calib-tokens", type=int, default=4096)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--ratios", default="0.9,0.75,0.5,0.3")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "svd_quality.json"))
    args = ap.parse_args()
    threads = ["--threads", args.threads] if args.threads else []
    model = Path(args.model)
    ratios = [float(r) for r in args.ratios.split(",")]

    base, _ = run_json([args.moekit, "eval", model, "--data", data_spec("eval"), "--max-tokens", args.eval_tokens,
                        "--json", *threads])
    out = {"params": {"model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
                      "calib": "assets/corpus/train/<domain>.txt", "calib_tokens_per_domain": args.calib_tokens,
                      "eval": "assets/corpus/eval/<domain>.txt", "eval_tokens_per_domain": args.eval_tokens,
                      "domains": DOMAINS, "format": "factored", "ratios": ratios},
           "original": {d: base["domains"][d]["ppl"] for d in DOMAINS} | {"all": base["total"]["ppl"]},
           "original_tensor_bytes": None, "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="moekit_svd_results_"))
    try:
        for ratio in ratios:
            for method in METHODS:
                dst = tmp / f"{method}-{ratio}"
                calib = [] if method == "svd" else ["--calib", data_spec("train"), "--max-tokens", args.calib_tokens]
                try:
                    sv, svd_s = run_json([args.moekit, "svd", model, "--method", method, "--ratio", ratio,
                                          "--format", "factored", *calib, "-o", dst, "--json", *threads])
                except SystemExit as e:  # d2-moe refuses ratios whose base leaves no rank
                    print(f"{ratio} {method}: skipped ({str(e)[-200:]})", flush=True)
                    continue
                ev, _ = run_json([args.moekit, "eval", dst, "--data", data_spec("eval"), "--max-tokens",
                                  args.eval_tokens, "--ref", model, "--json", *threads])
                out["original_tensor_bytes"] = sv["result"]["input_tensor_bytes"]
                row = {"ratio": ratio, "method": method, "rank": sv["result"]["rank"],
                       "kept_fraction": sv["result"]["kept_fraction"],
                       "factored_tensor_bytes": sv["result"]["output_tensor_bytes"],
                       "ppl": {d: ev["domains"][d]["ppl"] for d in DOMAINS} | {"all": ev["total"]["ppl"]},
                       "kl_mean": ev["total"]["kl_mean"], "top1_agreement": ev["total"]["top1_agreement"],
                       "routing_agreement": ev["total"]["routing_agreement"]["mean"],
                       "fallback_experts": sum(len(l["fallback_experts"]) for l in sv["layers"]),
                       "svd_wall_s": svd_s, "timing": sv["timing"]}
                out["runs"].append(row)
                print(f"{ratio} {method:8s}: ppl {row['ppl']['all']:.2f}  KL {row['kl_mean']:.4f}  "
                      f"top-1 {row['top1_agreement']:.3f}  {row['factored_tensor_bytes'] / 1e6:.2f} MB  ({svd_s:.1f} s)",
                      flush=True)
                shutil.rmtree(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    write_markdown(out, Path(args.results))


def write_markdown(out, path):
    p = out["params"]
    cols = DOMAINS + ["all"]
    orig = out["original"]
    lines = [BEGIN, "",
             f"Generated by `scripts/svd_results.py`: model `{p['model']}`, calibration on the first "
             f"{p['calib_tokens_per_domain']} tokens of each domain of `{p['calib']}`, evaluation on the first "
             f"{p['eval_tokens_per_domain']} tokens of each domain of `{p['eval']}` (held out). Every row is a "
             "factored checkpoint run by moekit's engine (`moekit eval --ref`). ratio = kept fraction of the routed "
             "experts' parameters (d2-moe's shared base included); rank = gate/up/down rank per expert; size = "
             f"the checkpoint's tensor bytes (original {out['original_tensor_bytes'] / 1e6:.2f} MB, of which the "
             "routed experts are 6.29 MB in bf16). Cells are perplexities; KL = mean KL(original || compressed), "
             "top-1 = argmax agreement with the original, pooled over the domains.", "",
             "| ratio | method | rank | size MB | " + " | ".join(cols) + " | KL | top-1 |",
             "|---:|---|---:|---:|" + "---:|" * (len(cols) + 2),
             "| 1 | original | full | " + f"{out['original_tensor_bytes'] / 1e6:.2f} | " +
             " | ".join(f"{orig[c]:.1f}" for c in cols) + " | 0 | 1 |"]
    for r in out["runs"]:
        lines.append(f"| {r['ratio']:g} | {r['method']} | {r['rank']['gate']} | {r['factored_tensor_bytes'] / 1e6:.2f} | " +
                     " | ".join(f"{r['ppl'][c]:.1f}" for c in cols) + f" | {r['kl_mean']:.3f} | {r['top1_agreement']:.3f} |")
    lines += ["", END]
    text = path.read_text()
    block = "\n".join(lines)
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
