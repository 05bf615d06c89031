#!/usr/bin/env python3
"""`moekit inspect --json` against the facts transformers itself reported about each fixture
(tests/fixtures/<arch>/expected.json, written by scripts/make_fixtures.py from the live
transformers model object): MoE layers, expert counts, dimensions, parameter counts (total,
per routed expert, active per token, per category), tensor count, dtypes and shard files.

Usage: test_inspect_oracle.py MOEKIT TESTS_DIR
"""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

moekit, tests = sys.argv[1], Path(sys.argv[2])
fixtures = sorted(p for p in (tests / "fixtures").iterdir() if (p / "expected.json").exists())
if not fixtures:
    print("SKIPPED: no fixtures with expected.json under", tests / "fixtures")
    sys.exit(77)

passed = failed = 0


def check(fixture, what, got, want):
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {fixture}: {what}: moekit {got!r} != transformers {want!r}")


for d in fixtures:
    want = json.loads((d / "expected.json").read_text())
    run = subprocess.run([moekit, "inspect", str(d), "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        failed += 1
        print(f"FAIL {d.name}: exit {run.returncode}: {run.stderr.strip()[:500]}")
        continue
    got = json.loads(run.stdout)
    n = d.name
    check(n, "ok", got["ok"], True)
    check(n, "model_type", got["architecture"]["model_type"], want["model_type"])
    check(n, "n_layer", got["layers"]["n_layer"], want["num_hidden_layers"])
    check(n, "moe layers", got["layers"]["moe"], want["moe_layers"])
    check(n, "dense layers", got["layers"]["dense"], want["dense_layers"])
    check(n, "n_expert", got["experts"]["n_expert"], want["n_routed_experts"])
    check(n, "n_expert_used", got["experts"]["n_expert_used"], want["experts_per_token"])
    check(n, "n_shared_expert", got["experts"]["n_shared_expert"], want["n_shared_experts"])
    check(n, "d_model", got["dims"]["d_model"], want["hidden_size"])
    check(n, "vocab_size", got["dims"]["vocab_size"], want["vocab_size"])
    check(n, "d_ff_expert", got["dims"]["d_ff_expert"], want["expert_intermediate_size"])
    check(n, "d_ff_shared", got["dims"]["d_ff_shared"], want["shared_expert_intermediate_size"])
    check(n, "tie_word_embeddings", got["dims"]["tie_word_embeddings"], want["tie_word_embeddings"])
    check(n, "total params", got["params_count"]["total"], want["total_params"])
    check(n, "params per routed expert", got["params_count"]["per_routed_expert"], want["params_per_routed_expert"])
    check(n, "active params per token", got["params_count"]["active_per_token"], want["active_params_per_token"])
    check(n, "params by category", {k: v["params"] for k, v in got["by_category"].items()}, want["params_by_category"])
    check(n, "tensor count", sum(v["tensors"] for v in got["by_category"].values()), want["n_tensors"])
    dtype_params = Counter()
    for t in want["tensors"].values():
        n_el = 1
        for s in t["shape"]:
            n_el *= s
        dtype_params[t["dtype"]] += n_el
    check(n, "params by dtype", {k: v["params"] for k, v in got["by_dtype"].items()}, dict(dtype_params))
    want_files = sorted({t["file"] for t in want["tensors"].values()})
    check(n, "shard files", sorted(s["file"] for s in got["files"]["shards"]), want_files)
    check(n, "sharded", got["files"]["sharded"], len(want_files) > 1)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
