#!/usr/bin/env python3
"""`moekit merge` output against transformers and numpy, on the fixture of every architecture.

For each fixture in tests/fixtures (mixtral, mixtral_hf4, qwen2_moe, qwen3_moe, olmoe,
deepseek_v2, deepseek_v3, whichever exist), merge with moekit to half the experts (4 of 8; the
grouping method rotates over m-smoe, hc-smoe and sub-moe so every method meets several
architectures), then:

1. transformers loads the result as-is (AutoModelForCausalLM, fp32, eager attention) and its
   logits on random token ids equal moekit's engine logits on the merged checkpoint
   ($MOEKIT_ENGINE_LOGITS, tests/tools/engine_logits.cpp): max |diff| <= 1e-4 * max |logit|;
2. config.json keeps every field, in order, except the expert count;
3. every tensor that is not a routed expert or a router is byte-identical to the input (shared
   experts, attention, norms, embeddings); a group of one is its original expert's bytes;
4. a second merge with --no-align --router mean is checked against numpy: every merged
   projection is sum_i f^_i W_i with f^ from moekit.json (and the loads it lists), every router
   row (and e_score_correction_bias) the same weighted mean, within the output dtype's rounding.

Usage: test_merge_interop.py MOEKIT TESTS_DIR    (exit 77 = skipped: no transformers)
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoint_oracle import Checks, Oracle, run  # noqa: E402

moekit, tests = sys.argv[1], Path(sys.argv[2]).resolve()
root = tests.parent
oracle = Oracle("test_merge_interop", moekit)  # exits 77 without torch/transformers
torch, transformers = oracle.torch, oracle.transformers
tensors, logits_transformers, logits_moekit = oracle.tensors, oracle.logits_transformers, oracle.logits_moekit
check = Checks()
calib = root / "assets" / "corpus" / "train" / "en.txt"
COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
METHODS = ("m-smoe", "hc-smoe", "sub-moe")


def raw(t):
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def expert_of(name):
    """(layer, expert, rest) of a routed expert tensor, else None."""
    parts = name.split(".")
    if "experts" not in parts or "shared_experts" in parts:
        return None
    i = parts.index("experts")
    if i + 1 >= len(parts) or not parts[i + 1].isdigit():
        return None
    return int(parts[2]), int(parts[i + 1]), ".".join(parts[:i + 1]), ".".join(parts[i + 2:])


def is_router(name, n_expert, t):
    return (name.endswith(".gate.weight") or name.endswith(".gate.bias") or name.endswith("e_score_correction_bias")) \
        and "shared" not in name and t.shape and t.shape[0] == n_expert


def rounding(dtype):
    return {torch.float32: 1e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}[dtype]


def check_untouched(name, src, out, meta):
    n_expert = meta["source"]["n_expert"]
    groups = {int(k): v for k, v in meta["expert_map"].items()}
    bad, missing = [], []
    for n, t in src.items():
        ep = expert_of(n)
        if ep or is_router(n, n_expert, t):
            continue
        if n not in out:
            if int(n.split(".")[2]) < meta["source"]["n_layer"] if n.startswith("model.layers.") else True:
                missing.append(n)
            continue
        if raw(out[n]) != raw(t) or out[n].dtype != t.dtype:
            bad.append(n)
    check(f"{name}: untouched tensors kept", not missing, str(missing[:5]))
    check(f"{name}: untouched tensors byte-identical", not bad, str(bad[:5]))
    # singleton groups: the original bytes under the new index
    bad = []
    for n, t in out.items():
        ep = expert_of(n)
        if not ep:
            continue
        il, j, prefix, rest = ep
        g = groups[il][j]
        if len(g) == 1 and raw(t) != raw(src[f"{prefix}.{g[0]}.{rest}"]):
            bad.append(n)
    check(f"{name}: singleton groups are their original expert", not bad, str(bad[:5]))


def check_numpy_merge(name, src, out, meta):
    """--no-align --router mean: merged = sum f^ W, router rows = sum f^ w."""
    worst = 0.0
    for layer in meta["layers"]:
        il = layer["layer"]
        for j, (g, w) in enumerate(zip(layer["groups"], layer["weights"])):
            load = np.array([layer["load"][e] for e in g], dtype=np.float64)
            want_w = load / load.sum() if load.sum() > 0 else np.full(len(g), 1.0 / len(g))
            check(f"{name}: layer {il} group {j} weights = normalized loads", np.allclose(w, want_w, atol=1e-12))
            for n, t in out.items():
                ep = expert_of(n)
                if not ep or ep[0] != il or ep[1] != j:
                    continue
                prefix, rest = ep[2], ep[3]
                want = sum(wi * src[f"{prefix}.{e}.{rest}"].double().numpy() for wi, e in zip(w, g))
                got = t.double().numpy()
                err = np.abs(got - want).max() / max(np.abs(want).max(), 1e-12)
                worst = max(worst, err / rounding(t.dtype))
        for n, t in out.items():
            if n.startswith(f"model.layers.{il}.") and is_router(n, len(layer["groups"]), t):
                s = src[n].double().numpy()
                want = np.stack([sum(wi * s[e] for wi, e in zip(w, g)) for g, w in zip(layer["groups"], layer["weights"])])
                err = np.abs(t.double().numpy() - want).max() / max(np.abs(want).max(), 1e-12)
                worst = max(worst, err / rounding(t.dtype))
    check(f"{name}: merged weights and router = numpy weighted means (within dtype rounding)", worst <= 1.0, f"{worst:.3g}")


def check_config(name, src_dir, out_dir, n_new):
    a = json.loads((src_dir / "config.json").read_text())
    b = json.loads((out_dir / "config.json").read_text())
    check(f"{name}: config keys and order preserved", list(a) == list(b), f"{list(a)} vs {list(b)}")
    changed = {k for k in a if a.get(k) != b.get(k)}
    check(f"{name}: only the expert count changed", len(changed) == 1 and changed <= set(COUNT_KEYS), str(changed))
    for k in changed:
        check(f"{name}: {k} = {n_new}", b[k] == n_new, f"got {b[k]}")


tmp = Path(tempfile.mkdtemp(prefix="moekit_merge_interop_"))
t0 = time.time()
try:
    names = [n for n in ("mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3")
             if (tests / "fixtures" / n / "config.json").exists()]
    rng = np.random.default_rng(6)
    for i, name in enumerate(names):
        src_dir = tests / "fixtures" / name
        method = METHODS[i % len(METHODS)]
        common = ["--experts", 4, "--calib", calib, "--max-tokens", 512, "--seq-len", 128, "--sample-tokens", 256]
        out_dir = tmp / name
        res = json.loads(run([moekit, "merge", src_dir, "--method", method, *common, "-o", out_dir, "--json"]))
        meta = json.loads((out_dir / "moekit.json").read_text())
        check(f"{name}: moekit.json = --json record", meta["expert_map"] == res["expert_map"])
        check(f"{name}: groups partition the experts",
              all(sorted(sum(l["groups"], [])) == list(range(meta["source"]["n_expert"])) for l in meta["layers"]))
        check_config(name, src_dir, out_dir, 4)
        src, out = tensors(src_dir), tensors(out_dir)
        check_untouched(name, src, out, meta)

        plain = tmp / (name + "_plain")
        run([moekit, "merge", src_dir, "--method", method, *common, "--no-align", "--router", "mean", "-o", plain])
        check_numpy_merge(name, src, tensors(plain), json.loads((plain / "moekit.json").read_text()))

        vocab = json.loads((src_dir / "config.json").read_text())["vocab_size"]
        ids = rng.integers(0, vocab, size=(2, 24))
        try:
            want = logits_transformers(out_dir, ids)
        except Exception as e:  # noqa: BLE001 - report and go on with the next fixture
            check(f"{name}: transformers loads the merged checkpoint", False, repr(e)[:500])
            continue
        check(f"{name}: transformers loads the merged checkpoint", True)
        got = logits_moekit(out_dir, ids, tmp)
        scale = float(np.abs(want).max())
        err = float(np.abs(got - want).max())
        print(f"  {name:12s} {method:8s} 8 -> 4: max |logit diff| {err:.3e}, max |logit| {scale:.3f}, "
              f"relative {err / scale:.2e}, routing agreement {res['result']['routing_agreement']:.3f}", flush=True)
        check(f"{name}: logits moekit == transformers (1e-4 relative)", err <= 1e-4 * scale, f"{err / scale:.3e}")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

check.finish()
