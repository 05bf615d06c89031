#!/usr/bin/env python3
"""Quality of `moekit prune` on the bundled demo model: perplexity per domain after pruning 25% and
50% of the experts with every method, next to the unpruned model and the random baseline (several
seeds), plus KL(original || pruned), top-1 and routing agreement from `moekit eval --ref`.

Calibration: the demo's training split (assets/corpus/train/<domain>.txt, first --calib-tokens
tokens of each domain); evaluation: the held-out split (assets/corpus/eval/<domain>.txt, first
--eval-tokens tokens of each domain). The two splits share no documents (scripts/make_demo_corpus.py).

Writes the tables into docs/RESULTS.md between the markers
`<!-- prune-results:begin -->` and `<!-- prune-results:end -->` (the text around them is kept),
and every number into bench/results/prune_quality.json.

Usage: .venv/bin/python scripts/prune_results.py [--moekit build/moekit] [--calib-tokens 8192]
       [--eval-tokens 4096] [--random-seeds 3] [--threads N]
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]
METHODS = ["frequency", "weighted-frequency", "ean", "reap", "tcess", "easy-ep", "naee"]
BEGIN, END = "<!-- prune-results:begin -->", "<!-- prune-results:end -->"


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
    ap.add_argument("--calib-tokens", type=int, default=8192)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--random-seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--results", default=str(ROOT / "docs" / "RESULTS.md"))
    ap.add_argument("--json", default=str(ROOT / "bench" / "results" / "prune_quality.json"))
    args = ap.parse_args()
    threads = ["--threads", args.threads] if args.threads else []
    model = Path(args.model)
    n_expert = json.loads((model / "config.json").read_text())["num_experts"]
    keeps = [(25, round(n_expert * 0.75)), (50, round(n_expert * 0.5))]

    base, _ = run_json([args.moekit, "eval", model, "--data", data_spec("eval"), "--max-tokens", args.eval_tokens,
                        "--json", *threads])
    out = {"params": {"model": str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else str(model),
                      "calib": "assets/corpus/train/<domain>.txt", "calib_tokens_per_domain": args.calib_tokens,
                      "eval": "assets/corpus/eval/<domain>.txt", "eval_tokens_per_domain": args.eval_tokens,
                      "domains": DOMAINS, "n_expert": n_expert, "random_seeds": args.random_seeds,
                      "protect_super_experts": True, "budget": "uniform"},
           "unpruned": {d: base["domains"][d]["ppl"] for d in DOMAINS} | {"all": base["total"]["ppl"]},
           "runs": []}
    tmp = Path(tempfile.mkdtemp(prefix="moekit_prune_results_"))
    try:
        for pct, keep in keeps:
            runs = [(m, 0) for m in METHODS] + [("random", s) for s in range(args.random_seeds)]
            for method, seed in runs:
                dst = tmp / f"{method}-{keep}-{seed}"
                pr, prune_s = run_json([args.moekit, "prune", model, "--method", method, "--keep", keep, "--seed", seed,
                                        "--calib", data_spec("train"), "--max-tokens", args.calib_tokens,
                                        "-o", dst, "--json", *threads])
                ev, _ = run_json([args.moekit, "eval", dst, "--data", data_spec("eval"), "--max-tokens",
                                  args.eval_tokens, "--ref", model, "--json", *threads])
                row = {"pruned_pct": pct, "keep": keep, "method": method, "seed": seed,
                       "ppl": {d: ev["domains"][d]["ppl"] for d in DOMAINS} | {"all": ev["total"]["ppl"]},
                       "kl_mean": ev["total"]["kl_mean"], "kl_p99": ev["total"]["kl_p99"],
                       "top1_agreement": ev["total"]["top1_agreement"],
                       "routing_agreement": ev["total"]["routing_agreement"]["mean"],
                       "kl_by_domain": {d: ev["domains"][d]["kl_mean"] for d in DOMAINS},
                       "removed": {str(l["layer"]): l["removed"] for l in pr["layers"]},
                       "super_experts": [[s["layer"], s["expert"]] for s in pr["super_experts"]["experts"]],
                       "prune_wall_s": prune_s}
                if method == "naee":
                    row["naee_search"] = sorted({l["naee"]["search"] for l in pr["layers"]})
                out["runs"].append(row)
                print(f"{pct}% {method:18s} seed {seed}: ppl {row['ppl']['all']:.2f}  KL {row['kl_mean']:.4f}  "
                      f"top-1 {row['top1_agreement']:.3f}  ({prune_s:.1f} s)", flush=True)
                shutil.rmtree(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    write_markdown(out, Path(args.results))


def table(out, pct):
    unp = out["unpruned"]
    cols = DOMAINS + ["all"]
    lines = ["| method | " + " | ".join(cols) + " | KL | top-1 | routing |",
             "|---|" + "---:|" * (len(cols) + 3)]
    lines.append("| unpruned | " + " | ".join(f"{unp[c]:.1f}" for c in cols) + " | 0 | 1 | 1 |")
    rows = [r for r in out["runs"] if r["pruned_pct"] == pct]
    rnd = [r for r in rows if r["method"] == "random"]
    ranked = sorted((r for r in rows if r["method"] != "random"), key=lambda r: r["kl_mean"])
    for r in ranked:
        name = r["method"] + (" (" + "/".join(r["naee_search"]) + ")" if r["method"] == "naee" else "")
        lines.append(f"| {name} | " + " | ".join(f"{r['ppl'][c]:.1f}" for c in cols) +
                     f" | {r['kl_mean']:.3f} | {r['top1_agreement']:.3f} | {r['routing_agreement']:.3f} |")
    if rnd:
        def mean(f):
            return sum(f(r) for r in rnd) / len(rnd)

        def cell(c):
            vals = [r["ppl"][c] for r in rnd]
            return f"{math.exp(sum(math.log(v) for v in vals) / len(vals)):.1f}"
        lines.append(f"| random (geo-mean of {len(rnd)} seeds) | " + " | ".join(cell(c) for c in cols) +
                     f" | {mean(lambda r: r['kl_mean']):.3f} | {mean(lambda r: r['top1_agreement']):.3f} | "
                     f"{mean(lambda r: r['routing_agreement']):.3f} |")
        lo = min(rnd, key=lambda r: r["ppl"]["all"])
        hi = max(rnd, key=lambda r: r["ppl"]["all"])
        lines.append(f"| random, best / worst seed (all) | " + " | ".join("" for _ in DOMAINS) +
                     f" | {lo['ppl']['all']:.1f} / {hi['ppl']['all']:.1f} | {lo['kl_mean']:.3f} / {hi['kl_mean']:.3f} | | |")
    return "\n".join(lines)


def write_markdown(out, path):
    p = out["params"]
    keeps = sorted({(r["pruned_pct"], r["keep"]) for r in out["runs"]})
    body = [BEGIN, "",
            f"Generated by `scripts/prune_results.py`: model `{p['model']}` ({p['n_expert']} experts per layer), "
            f"calibration on the first {p['calib_tokens_per_domain']} tokens of each domain of `{p['calib']}`, "
            f"evaluation on the first {p['eval_tokens_per_domain']} tokens of each domain of `{p['eval']}` (held out), "
            "uniform budget, super experts protected (moekit's defaults). Cells are perplexities; "
            "KL = mean KL(original || pruned) per next-token distribution, top-1 = agreement of the argmax "
            "with the original, routing = mean per-layer agreement of the selected experts (through "
            "moekit.json's expert_map), all pooled over the domains. Rows sorted by KL.", ""]
    for pct, keep in keeps:
        body += [f"### {pct}% of the experts removed ({keep} of {p['n_expert']} kept per layer)", "",
                 table(out, pct), ""]
    body.append(END)
    block = "\n".join(body)
    text = path.read_text() if path.exists() else "# Results\n\n" + BEGIN + "\n" + END + "\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
