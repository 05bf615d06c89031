#!/usr/bin/env python3
"""`moekit svd` output against transformers and numpy, on the fixture of every architecture.

For each fixture in tests/fixtures (mixtral, mixtral_hf4, qwen2_moe, qwen3_moe, olmoe,
deepseek_v2, deepseek_v3, whichever exist), compress with moekit (svd-llm, --ratio 0.5, a little
calibration text) in both formats, then:

1. dense: transformers loads it as-is (fp32, eager) and its logits equal moekit's engine logits on
   the same checkpoint ($MOEKIT_ENGINE_LOGITS): max |diff| <= 1e-4 * max |logit|; every tensor that
   is not a routed expert weight is byte-identical to the input; config.json is unchanged;
2. factored: numpy rebuilds W = A B (+ the d2-moe base) from the written factors in fp32 into a
   plain checkpoint transformers loads; its logits equal moekit's engine running the factored
   checkpoint through its two-GEMM path (1e-4 relative), on every dtype;
3. factored vs dense, both in moekit's engine: 1e-4 relative where the checkpoint is fp32 (in
   bf16/f16 the dense format rounds the product A B to the dtype, so the difference is that
   rounding; it is printed, and bounded by 3e-3 relative);
4. the factored dense-equivalent is not the original (something was compressed).
Plus d2-moe (factored and dense) on olmoe through the same checks.

Usage: test_svd_interop.py MOEKIT TESTS_DIR    (exit 77 = skipped: no transformers)
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
oracle = Oracle("test_svd_interop", moekit)  # exits 77 without torch/transformers
torch, transformers = oracle.torch, oracle.transformers
from safetensors.torch import save_file  # noqa: E402
tensors, logits_transformers, logits_moekit = oracle.tensors, oracle.logits_transformers, oracle.logits_moekit
check = Checks()
calib = root / "assets" / "corpus" / "train" / "en.txt"


def raw(t):
    t = t.contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def is_expert_weight(name):
    parts = name.split(".")
    return "experts" in parts and parts[parts.index("experts") + 1].isdigit() and name.endswith(".weight")


def rebuild_fp32(fact_dir, out_dir):
    """Factored checkpoint -> plain fp32 checkpoint with W = A B (+ base), by numpy."""
    src = tensors(fact_dir)
    cfg = json.loads((fact_dir / "config.json").read_text())
    lowrank = cfg.pop("moekit_lowrank")
    out = {}
    for name, t in src.items():
        if ".experts.base." in name or name.endswith(".lowrank_b"):
            continue
        if name.endswith(".lowrank_a"):
            stem = name[:-len(".lowrank_a")]
            a = t.float().numpy().astype(np.float64)
            b = src[stem + ".lowrank_b"].float().numpy().astype(np.float64)
            w = a @ b
            if lowrank["base"]:
                parts = stem.split(".")
                i = parts.index("experts")
                base = ".".join(parts[:i + 1] + ["base"] + parts[i + 2:]) + ".weight"
                w = w + src[base].float().numpy()
            out[stem + ".weight"] = torch.from_numpy(w.astype(np.float32))
        else:
            out[name] = t.float().contiguous()
    out_dir.mkdir(parents=True)
    save_file(out, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in fact_dir.iterdir():
        if f.name.startswith("tokenizer") or f.name == "generation_config.json":
            shutil.copy(f, out_dir / f.name)


def compare(what, got, want, tol):
    scale = float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    check(f"{what} ({tol:g} relative)", err <= tol * scale, f"{err / scale:.3e}")
    return err / scale


tmp = Path(tempfile.mkdtemp(prefix="moekit_svd_interop_"))
t0 = time.time()
try:
    names = [n for n in ("mixtral", "mixtral_hf4", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3")
             if (tests / "fixtures" / n / "config.json").exists()]
    runs = [(n, "svd-llm") for n in names] + ([("olmoe", "d2-moe")] if "olmoe" in names else [])
    rng = np.random.default_rng(7)
    for name, method in runs:
        src = tests / "fixtures" / name
        tag = f"{name}/{method}"
        dense, fact, rebuilt = tmp / f"{name}-{method}-dense", tmp / f"{name}-{method}-fact", tmp / f"{name}-{method}-rebuilt"
        common = [moekit, "svd", src, "--method", method, "--ratio", "0.5", "--calib", calib,
                  "--max-tokens", 512, "--seq-len", 64, "--json"]
        res = json.loads(run(common + ["-o", dense]))
        run(common + ["--format", "factored", "-o", fact])
        check(f"{tag}: ranks recorded", all(v >= 1 for v in res["result"]["rank"].values()), str(res["result"]))

        # dense: untouched tensors byte-identical, config unchanged
        a, b = tensors(src), tensors(dense)
        check(f"{tag}: dense tensor names", set(a) == set(b))
        bad = [n for n in a if not is_expert_weight(n) and raw(a[n]) != raw(b[n])]
        check(f"{tag}: dense non-expert tensors byte-identical", not bad, str(bad[:5]))
        changed = [n for n in a if is_expert_weight(n) and raw(a[n]) != raw(b[n])]
        check(f"{tag}: dense expert weights replaced", len(changed) > 0 and all(a[n].dtype == b[n].dtype and a[n].shape == b[n].shape for n in changed))
        check(f"{tag}: dense config unchanged", (src / "config.json").read_bytes() == (dense / "config.json").read_bytes())

        vocab = json.loads((src / "config.json").read_text())["vocab_size"]
        ids = rng.integers(0, vocab, size=(2, 16))
        try:
            want_dense = logits_transformers(dense, ids)
            check(f"{tag}: transformers loads the dense checkpoint", True)
        except Exception as e:  # noqa: BLE001
            check(f"{tag}: transformers loads the dense checkpoint", False, repr(e)[:500])
            continue
        got_dense = logits_moekit(dense, ids, tmp)
        r1 = compare(f"{tag}: dense logits moekit == transformers", got_dense, want_dense, 1e-4)

        rebuild_fp32(fact, rebuilt)
        want_fact = logits_transformers(rebuilt, ids)
        got_fact = logits_moekit(fact, ids, tmp)
        r2 = compare(f"{tag}: factored engine == transformers on numpy's A B", got_fact, want_fact, 1e-4)
        fp32 = all(t.dtype == torch.float32 for t in a.values() if t.is_floating_point())
        r3 = compare(f"{tag}: factored engine == dense engine", got_fact, got_dense, 1e-4 if fp32 else 3e-3)
        orig = logits_moekit(src, ids, tmp)
        check(f"{tag}: compression changed the logits", float(np.abs(orig - got_dense).max()) > 1e-6 * float(np.abs(orig).max()))
        print(f"  {tag:22s} rel. diff: dense moekit/transformers {r1:.1e}, factored/numpy-rebuilt {r2:.1e}, "
              f"factored/dense {r3:.1e}{'' if fp32 else ' (16-bit dtype)'}", flush=True)
finally:
    shutil.rmtree(tmp, ignore_errors=True)

check.finish()
