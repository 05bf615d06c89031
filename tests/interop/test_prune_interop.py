#!/usr/bin/env python3
"""`moekit prune` output against transformers, on the fixture of every architecture.

For each fixture in tests/fixtures (mixtral, mixtral_hf4, qwen2_moe, qwen3_moe, olmoe,
deepseek_v2, deepseek_v3, whichever exist), prune with moekit (reap, a keep the architecture's
routing can use, calibrated on a little text), then:

1. transformers loads the result as-is (AutoModelForCausalLM, fp32, eager attention) and its
   logits on the same token ids equal moekit's engine logits on the pruned checkpoint
   ($MOEKIT_ENGINE_LOGITS, tests/tools/engine_logits.cpp): max |diff| <= 1e-4 * max |logit|;
2. every output tensor is byte-identical to its source in the input (kept experts under their
   new index through moekit.json's expert_map; router weights / biases / e_score_correction_bias
   are exactly the kept rows; removed experts are gone; nothing else differs), read with the
   `safetensors` package;
3. config.json keeps every field, in order, except the expert count, which is the kept count.

Plus one global-budget prune (per-layer counts differ): moekit's engine runs it, config.json
carries moekit_experts_per_layer, and transformers refuses to load it (the documented limitation).

Usage: test_prune_interop.py MOEKIT TESTS_DIR    (exit 77 = skipped: no transformers)
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
oracle = Oracle("test_prune_interop", moekit)  # exits 77 without torch/transformers
torch, transformers = oracle.torch, oracle.transformers
logits_transformers, logits_moekit = oracle.logits_transformers, oracle.logits_moekit
check = Checks()
calib = root / "assets" / "corpus" / "train" / "en.txt"
COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")
# Kept experts per fixture: half, except where group-limited routing needs a multiple of n_group
# with enough per group (deepseek_v2: n_group 4, topk_group 2, top-2 -> 1 per group is fine;
# deepseek_v3: n_group 2, sigmoid top-2 group score -> 2 per group).
KEEP = {"deepseek_v2": "4", "deepseek_v3": "4"}


def tensors(model_dir):
    """name -> (dtype, shape, raw bytes), read with the safetensors package."""
    out = {}
    for name, t in oracle.tensors(model_dir).items():
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        out[name] = (str(t.dtype), tuple(t.shape), raw)
    return out


def expert_prefix(name):
    """('model.layers.3.mlp.experts.', 5, 'gate_proj.weight') or None."""
    parts = name.split(".")
    if "experts" not in parts:
        return None
    i = parts.index("experts")
    if i + 1 >= len(parts) or not parts[i + 1].isdigit():
        return None
    return ".".join(parts[:i + 1]) + ".", int(parts[i + 1]), ".".join(parts[i + 2:])


def layer_of(name):
    parts = name.split(".")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "layers" else None


def check_bytes(name, src_dir, out_dir, meta):
    src, out = tensors(src_dir), tensors(out_dir)
    emap = {int(k): v for k, v in meta["expert_map"].items()}
    expected = {}  # output name -> input bytes
    for n, (dt, shape, raw) in src.items():
        ep = expert_prefix(n)
        il = layer_of(n)
        if ep and il in emap:
            prefix, e, rest = ep
            if e in emap[il]:
                expected[f"{prefix}{emap[il].index(e)}.{rest}"] = (dt, None, raw, n)
            continue
        if il in emap and (n.endswith(".gate.weight") or n.endswith(".gate.bias")
                           or n.endswith("e_score_correction_bias")) and "shared" not in n and shape \
                and shape[0] == meta["source"]["n_expert"]:
            row = len(raw) // shape[0]
            sliced = b"".join(raw[e * row:(e + 1) * row] for e in emap[il])
            expected[n] = (dt, (len(emap[il]),) + shape[1:], sliced, n)
            continue
        expected[n] = (dt, shape, raw, n)
    check(f"{name}: output tensor names", set(out) == set(expected),
          f"missing {sorted(set(expected) - set(out))[:5]} extra {sorted(set(out) - set(expected))[:5]}")
    bad = [n for n in set(out) & set(expected)
           if out[n][0] != expected[n][0] or out[n][2] != expected[n][2]
           or (expected[n][1] is not None and out[n][1] != expected[n][1])]
    check(f"{name}: tensor bytes (untouched, renumbered experts, sliced routers)", not bad, f"differ: {sorted(bad)[:5]}")
    sliced = [n for n, v in expected.items() if v[1] is not None and v[1] != src[v[3]][1]]
    check(f"{name}: router tensors were sliced", len(sliced) >= len(emap), str(sliced))


def check_config(name, src_dir, out_dir, n_keep):
    a = json.loads((src_dir / "config.json").read_text())
    b = json.loads((out_dir / "config.json").read_text())
    check(f"{name}: config keys and order preserved", list(a) == list(b), f"{list(a)} vs {list(b)}")
    changed = {k for k in a if a.get(k) != b.get(k)}
    check(f"{name}: only the expert count changed", len(changed) == 1 and changed <= set(COUNT_KEYS), str(changed))
    for k in changed:
        check(f"{name}: {k} = {n_keep}", b[k] == n_keep, f"got {b[k]}")


tmp = Path(tempfile.mkdtemp(prefix="moekit_prune_interop_"))
t0 = time.time()
try:
    names = [n for n in ("mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3")
             if (tests / "fixtures" / n / "config.json").exists()]
    rng = np.random.default_rng(5)
    for name in names:
        src = tests / "fixtures" / name
        out = tmp / name
        keep = KEEP.get(name, "0.5")
        res = json.loads(run([moekit, "prune", src, "--method", "reap", "--keep", keep, "--calib", calib,
                              "--max-tokens", 1024, "--seq-len", 128, "-o", out, "--json"]))
        meta = json.loads((out / "moekit.json").read_text())
        n_keep = int(res["result"]["experts_kept"] // len(meta["layers"]))
        check(f"{name}: uniform", res["result"]["uniform"] is True and res["result"]["transformers_loadable"] is True)
        check(f"{name}: moekit.json = --json record", meta["expert_map"] == res["expert_map"])
        check_config(name, src, out, n_keep)
        check_bytes(name, src, out, meta)

        vocab = json.loads((src / "config.json").read_text())["vocab_size"]
        ids = rng.integers(0, vocab, size=(2, 24))
        try:
            want = logits_transformers(out, ids)
        except Exception as e:  # noqa: BLE001 - report and go on with the next fixture
            check(f"{name}: transformers loads the pruned checkpoint", False, repr(e)[:500])
            continue
        check(f"{name}: transformers loads the pruned checkpoint", True)
        got = logits_moekit(out, ids, tmp)
        scale = float(np.abs(want).max())
        err = float(np.abs(got - want).max())
        print(f"  {name:12s} keep {n_keep}: max |logit diff| {err:.3e}, max |logit| {scale:.3f}, "
              f"relative {err / scale:.2e}", flush=True)
        check(f"{name}: logits moekit == transformers (1e-4 relative)", err <= 1e-4 * scale, f"{err / scale:.3e}")
        # The pruned model is not the original: something was actually removed.
        orig = logits_transformers(src, ids)
        check(f"{name}: pruning changed the logits", float(np.abs(orig - want).max()) > 1e-6 * scale)

    # Non-uniform (global budget): moekit's extension, which transformers cannot load.
    src = tests / "fixtures" / "olmoe"
    if src.exists():
        out = tmp / "olmoe_global"
        res = json.loads(run([moekit, "prune", src, "--method", "frequency", "--keep", "0.5", "--budget", "global",
                              "--min-keep", "2", "--calib", calib, "--max-tokens", 1024, "-o", out, "--json"]))
        counts = list(res["result"]["n_expert_per_layer"].values())
        cfg = json.loads((out / "config.json").read_text())
        if len(set(counts)) > 1:
            check("global: moekit_experts_per_layer written", cfg.get("moekit_experts_per_layer") == counts, str(cfg))
            check("global: expert count = largest layer", cfg["num_experts"] == max(counts))
            check("global: README says transformers cannot load it",
                  "transformers cannot load" in (out / "README.md").read_text())
            ids = rng.integers(0, cfg["vocab_size"], size=(1, 16))
            got = logits_moekit(out, ids, tmp)
            check("global: moekit's engine runs it", np.isfinite(got).all())
            try:
                logits_transformers(out, ids)
                check("global: transformers refuses the non-uniform checkpoint", False, "it loaded")
            except Exception:  # noqa: BLE001 - any failure is the documented limitation
                check("global: transformers refuses the non-uniform checkpoint", True)
        else:
            print(f"  note: global budget kept {counts} (uniform) on olmoe; non-uniform checks not exercised")
finally:
    shutil.rmtree(tmp, ignore_errors=True)

check.finish()
