#!/usr/bin/env python3
"""Quality of `moekit merge` on the bundled demo model: perplexity per domain after merging each
layer's experts down to 75% and 50% with every grouping method and router mode, next to the
original and to pruning (REAP, `moekit prune`) to the same expert count, plus KL(original ||
merged), top-1 and routing agreement from `moekit eval --ref` (routing through moekit.json's
expert_map: a merged expert stands for all its originals).

Calibration: the demo's training split (assets/corpus/train/<domain>.txt, first --calib-tokens
tokens of each domain); evaluation: the held-out split (assets/corpus/eval/<domain>.txt, first
--eval-tokens tokens of each domain), exactly as scripts/prune_results.py does.

Writes the tables into docs/RESULTS.md between `<!-- merge-results:begin -->` and
`<!-- merge-results:end -->` (the text around them is kept) and every number into
bench/results/merge_quality.json.

Usage: .venv/bin/python scripts/merge_results.py [--moekit build/moekit] [--calib-tokens 4096]
       [--eval-tokens 4096] [--threads N]
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
# (label, command, extra flags)
RUNS = [
    ("m-smoe, refit router", "merge", ["--method", "m-smoe"]),
    ("m-smoe, mean router", "merge", ["--method", "m-smoe", "--router", "mean"]),
    ("m-smoe, refit, no alignment", "merge", ["--method", "m-smoe", "--no-align"]),
    ("hc-smoe, refit router", "merge", ["--method", "hc-smoe"]),
    ("hc-smoe, mean router", "merge", ["--method", "hc-smoe", "--router", "mean"]),
    ("sub-moe, refit router", "merge", ["--method", "sub-moe"]),
    ("sub-moe, mean router", "merge", ["--method", "sub-moe", "--router", "mean"]),
    ("prune: reap", "prune", ["--method", "reap"]),
]
BEGIN, END = "<!-- merge-results:begin -->", "<!-- merge-results:end -->"


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
    ap.add_argument("--sample-tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "merge_quality.json"))
    args = ap.parse_args()
    threads = ["--threads", args.threads] if args.threads else []
    model = Path(args.model)
    n_expert = json.loads((model / "config.json").read_text())["num_experts"]
    levels = [(75, round(n_expert * 0.75)), (50, round(n_expert * 0.5))]

    base, _ = run_json([args.moekit, "eval", model, "--data", data_spec("eval"), "--max-tokens", args.eval_tokens,
                        "--json", *threads])
    out = {"params": {"model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
                      "calib": "assets/corpus/train/<domain>.txt", "calib_tokens_per_domain": args.calib_tokens,
                      "eval": "assets/corpus/eval/<domain>.txt", "eval_tokens_per_domain": args.eval_tokens,
                      "sample_tokens": args.sample_tokens, "domains": DOMAINS, "n_expert": n_expert},
           "original": {d: base["domains"][d]["ppl"] for d in DOMAINS} | {"all": base["total"]["ppl"]},
           "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="moekit_merge_results_"))
    try:
        for pct, count in levels:
            for label, command, flags in RUNS:
                dst = tmp / f"{command}-{count}-{len(out['runs'])}"
                size = ["--experts", count, "--sample-tokens", args.sample_tokens] if command == "merge" else ["--keep", count]
                res, wall = run_json([args.moekit, command, model, *flags, *size, "--calib", data_spec("train"),
                                      "--max-tokens", args.calib_tokens, "-o", dst, "--json", *threads])
                ev, _ = run_json([args.moekit, "eval", dst, "--data", data_spec("eval"), "--max-tokens",
                                  args.eval_tokens, "--ref", model, "--json", *threads])
                row = {"experts_pct": pct, "experts": count, "label": label, "command": command, "flags": flags,
                       "ppl": {d: ev["domains"][d]["ppl"] for d in DOMAINS} | {"all": ev["total"]["ppl"]},
                       "kl_mean": ev["total"]["kl_mean"], "kl_p99": ev["total"]["kl_p99"],
                       "top1_agreement": ev["total"]["top1_agreement"],
                       "routing_agreement": ev["total"]["routing_agreement"]["mean"],
                       "kl_by_domain": {d: ev["domains"][d]["kl_mean"] for d in DOMAINS},
                       "wall_s": wall}
                if command == "merge":
                    row["calib_routing_agreement"] = res["result"]["routing_agreement"]
                    row["groups"] = {str(l["layer"]): l["groups"] for l in res["layers"]}
                out["runs"].append(row)
                print(f"{pct}% {label:30s}: ppl {row['ppl']['all']:.2f}  KL {row['kl_mean']:.4f}  "
                      f"top-1 {row['top1_agreement']:.3f}  routing {row['routing_agreement']:.3f}  ({wall:.1f} s)", flush=True)
                shutil.rmtree(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    write_markdown(out, Path(args.results))


def table(out, pct):
    orig = out["original"]
    cols = DOMAINS + ["all"]
    lines = ["| method | " + " | ".join(cols) + " | KL | top-1 | routing |",
             "|---|" + "---:|" * (len(cols) + 3)]
    lines.append("| original | " + " | ".join(f"{orig[c]:.1f}" for c in cols) + " | 0 | 1 | 1 |")
    rows = sorted((r for r in out["runs"] if r["experts_pct"] == pct), key=lambda r: r["kl_mean"])
    for r in rows:
        name = f"**{r['label']}**" if r["command"] == "prune" else r["label"]
        lines.append(f"| {name} | " + " | ".join(f"{r['ppl'][c]:.1f}" for c in cols) +
                     f" | {r['kl_mean']:.3f} | {r['top1_agreement']:.3f} | {r['routing_agreement']:.3f} |")
    return "\n".join(lines)


def write_markdown(out, path):
    p = out["params"]
    levels = sorted({(r["experts_pct"], r["experts"]) for r in out["runs"]}, reverse=True)
    body = [BEGIN, "",
            f"Generated by `scripts/merge_results.py`: model `{p['model']}` ({p['n_expert']} experts per layer), "
            f"calibration on the first {p['calib_tokens_per_domain']} tokens of each domain of `{p['calib']}` "
            f"(HC-SMoE / Sub-MoE run every expert on {p['sample_tokens']} sampled tokens), evaluation on the first "
            f"{p['eval_tokens_per_domain']} tokens of each domain of `{p['eval']}` (held out). Cells are perplexities; "
            "KL = mean KL(original || compressed) per next-token distribution, top-1 = agreement of the argmax with the "
            "original, routing = mean per-layer share of the original top-k whose expert (merged: whose group) the "
            "compressed model selects (moekit.json's expert_map), all pooled over the domains. Rows sorted by KL; "
            "the pruning row (bold) keeps the same number of experts.", ""]
    for pct, count in levels:
        body += [f"### {pct}% of the experts ({count} of {p['n_expert']} per layer)", "", table(out, pct), ""]
    body.append(END)
    block = "\n".join(body)
    text = path.read_text() if path.exists() else "# Results\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## `moekit merge` on the demo model\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
