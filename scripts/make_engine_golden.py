#!/usr/bin/env python3
"""Golden values for moekit's forward engine (tests/unit/test_model_engine.cpp).

For every fixture checkpoint tests/fixtures/<arch>/ this runs transformers (fp32, eager
attention, one CPU thread) on a few seeded random token sequences of different lengths, one
sequence per forward call (no padding), and records:

  input_ids [T] int32, seq_lengths [n_seq] int32         (T = total tokens, sequences concatenated)
  layer<il>.router_logits [T, E] f32                      every MoE layer: the router module's outputs,
  layer<il>.selected      [T, k] int32                    captured with a forward hook on mlp.gate
  layer<il>.gates         [T, k] f32                      (the model's own routing code, not a re-derivation)
  hidden [T, d] f32                                       output of the final norm (hook on model.norm)
  logits [T, V] f32                                       (plain fixtures only)

into tests/golden/engine/<arch>.safetensors, plus <arch>.json (versions, seeds, shapes, fixture hashes).
DeepSeek routers use torch.topk(sorted=False): compare selected/gates per token as sets.
Variants (VARIANTS below) are a fixture's weights with config.json edited by a merge patch, recorded
in <variant>.json as base_fixture / config_overrides so the test can rebuild the same checkpoint.

Usage: python scripts/make_engine_golden.py [--arch mixtral ...]
Needs transformers 5.x + torch + safetensors. Regenerates bit-for-bit on the same versions.
"""
import argparse
import hashlib
import json
import pathlib
import sys
import tempfile

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ARCHS = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"]
# Config variants of the fixtures (same weights, config.json edited by a JSON merge patch) that
# exercise what the plain fixtures do not: sliding windows, rope scaling types on rotate-half
# models, OLMoE's clip_qkv, DeepSeek-V3 without rope_interleave. No logits stored (size).
VARIANTS = {
    "mixtral_sliding_llama3": ("mixtral", {
        "sliding_window": 6,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 1000000.0, "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
    }),
    "qwen2_moe_sliding": ("qwen2_moe", {
        "use_sliding_window": True, "sliding_window": 5,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    }),
    "qwen3_moe_yarn": ("qwen3_moe", {
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
                            "original_max_position_embeddings": 8},
    }),
    "olmoe_clip_linear": ("olmoe", {
        "clip_qkv": 0.3,
        "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    }),
    "deepseek_v3_rope_half": ("deepseek_v3", {"rope_interleave": False}),
}
LENGTHS = [20, 13, 7]
SEED = 20240611
ROOT = pathlib.Path(__file__).resolve().parent.parent


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def merge_patch(target, patch):
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = value


def run_arch(arch: str, index: int, out_dir: pathlib.Path, base: str | None = None, overrides: dict | None = None) -> None:
    fixture = ROOT / "tests" / "fixtures" / (base or arch)
    if overrides:
        tmp = tempfile.TemporaryDirectory()
        load_dir = pathlib.Path(tmp.name)
        for f in fixture.iterdir():
            if f.name != "config.json":
                (load_dir / f.name).symlink_to(f)
        cfg_json = json.loads((fixture / "config.json").read_text())
        cfg_json.pop("rope_parameters", None) if "rope_parameters" in overrides else None
        merge_patch(cfg_json, overrides)
        (load_dir / "config.json").write_text(json.dumps(cfg_json, indent=2))
    else:
        load_dir = fixture
    model, info = AutoModelForCausalLM.from_pretrained(
        load_dir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", []) if not k.endswith("e_score_correction_bias")]
    if missing or info.get("mismatched_keys"):
        raise SystemExit(f"{arch}: fixture did not load cleanly: missing {missing}, mismatched {info.get('mismatched_keys')}")
    model.eval()
    cfg = model.config

    moe_layers = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]
    captured = {i: [] for i in moe_layers}
    hidden_parts = []
    hooks = []
    for i in moe_layers:
        def hook(module, args, output, i=i):
            logits, weights, indices = output
            captured[i].append((logits.detach().float().clone(), indices.detach().clone(), weights.detach().float().clone()))
        hooks.append(model.model.layers[i].mlp.gate.register_forward_hook(hook))
    hooks.append(model.model.norm.register_forward_hook(lambda m, a, o: hidden_parts.append(o.detach().float()[0].clone())))

    gen = torch.Generator().manual_seed(SEED + index)
    seqs = [torch.randint(0, cfg.vocab_size, (n,), generator=gen) for n in LENGTHS]
    logits_parts = []
    with torch.no_grad():
        for seq in seqs:
            out = model(input_ids=seq[None, :], use_cache=False)
            logits_parts.append(out.logits[0].float().clone())
    for h in hooks:
        h.remove()

    tensors = {
        "input_ids": torch.cat(seqs).to(torch.int32).contiguous(),
        "seq_lengths": torch.tensor(LENGTHS, dtype=torch.int32),
        "hidden": torch.cat(hidden_parts).contiguous(),
    }
    if not overrides:
        tensors["logits"] = torch.cat(logits_parts).contiguous()
    for i in moe_layers:
        assert len(captured[i]) == len(seqs), (arch, i, len(captured[i]))
        tensors[f"layer{i}.router_logits"] = torch.cat([c[0] for c in captured[i]]).contiguous()
        tensors[f"layer{i}.selected"] = torch.cat([c[1] for c in captured[i]]).to(torch.int32).contiguous()
        tensors[f"layer{i}.gates"] = torch.cat([c[2] for c in captured[i]]).contiguous()

    out_dir.mkdir(parents=True, exist_ok=True)
    st_path = out_dir / f"{arch}.safetensors"
    save_file(tensors, str(st_path), metadata={"format": "pt"})
    st_path.chmod(0o644)
    meta = {
        "schema_version": 1,
        "arch": arch,
        "base_fixture": base or arch,
        "config_overrides": overrides or {},
        "generator": "scripts/make_engine_golden.py",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "attn_implementation": "eager",
        "seed": SEED + index,
        "seq_lengths": LENGTHS,
        "moe_layers": moe_layers,
        "n_expert_used": int(tensors[f"layer{moe_layers[0]}.selected"].shape[1]) if moe_layers else 0,
        "vocab_size": int(cfg.vocab_size),
        "selected_order": "unspecified (torch.topk sorted=False)" if arch.startswith("deepseek") else "descending",
        "fixture_sha256": {p.name: sha256(p) for p in sorted(fixture.glob("*.safetensors"))} | {"config.json": sha256(fixture / "config.json")},
        "golden_sha256": sha256(st_path),
    }
    (out_dir / f"{arch}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"{arch}: {st_path.stat().st_size} bytes, moe layers {moe_layers}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", choices=ARCHS + list(VARIANTS), help="only these (default: all)")
    ap.add_argument("--out", default=str(ROOT / "tests" / "golden" / "engine"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    names = args.arch or ARCHS + list(VARIANTS)
    for arch in names:
        if arch in VARIANTS:
            base, overrides = VARIANTS[arch]
            run_arch(arch, ARCHS.index(base), pathlib.Path(args.out), base, overrides)
        else:
            run_arch(arch, ARCHS.index(arch), pathlib.Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
