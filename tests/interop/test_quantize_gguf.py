#!/usr/bin/env python3
"""moekit quantize --format gguf against independent readers and llama.cpp's own converter.

For the demo model and every architecture fixture GGUF supports, and every ggml type:
  * the `gguf` package (gguf-py, PyPI) reads the file; every tensor's shape is what llama.cpp
    expects (experts stacked {row, rows, n_expert}); gguf-py's numpy dequantizer gives exactly
    the values moekit's own dequantizer wrote into the matching --format hf-fake checkpoint
    (experts stacked, Mixtral Q/K rows permuted as the converter does);
  * for Q8_0, Q4_0 and Q5_0, gguf-py's numpy quantizer (a second, independent implementation of
    ggml's reference) produces the same bytes from the source weights;
  * F32 tensors (norms, routers) are the source values; F16/BF16 are their roundings;
  * llama.cpp's convert_hf_to_gguf.py (run once, in one subprocess, through
    scripts/reference/convert_hf_to_gguf_ref.py) writes the same metadata keys and values and
    the same tensor names, shapes and types as `moekit quantize --type f32` (only general.name,
    general.size_label, general.quantized_by may differ), and the same f32 data — for the demo
    model, OLMoE, Qwen3-MoE, DeepSeek-V2, DeepSeek-V3 and Mixtral (llama vocabulary, permuted Q/K;
    needs sentencepiece). DeepSeek: kv_b_proj split into attn_k_b (transposed) / attn_v_b is
    checked against numpy's split of the source; the only metadata moekit writes differently are
    the documented keys of DEEPSEEK_DELIBERATE (q_lora_rank = 0 without q LoRA; V3's sigmoid
    gating when config.json has no scoring_func; V2 groups written as one when topk_group >= top-k
    makes its group-limited greedy plain top-k), each with its expected value;
  * deepseek64: a 2-layer DeepSeek-V3 with rows of 32/64 (the fixtures' MLA rows of 8/16 only
    ever fall back to F16), so Q8_0/Q4_0 really quantize the transposed attn_k_b blocks.
transformers loads --format hf-fake output of every fixture architecture without missing or
unexpected keys, holding exactly the values moekit wrote.
Refusals: Qwen2-MoE with dense layers, gptq format, unsupported bits: exit 1, nothing written.
Exit 77 (skip) without the gguf package.
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import numpy as np
    import gguf
    from gguf import GGUFReader, GGMLQuantizationType as Q
except ImportError as e:  # pragma: no cover
    print(f"skip: {e}")
    sys.exit(77)

MOEKIT = sys.argv[1]
DATA = Path(sys.argv[2])
ROOT = DATA.parent
FIXTURES = DATA / "fixtures"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args, expect=0):
    p = subprocess.run([MOEKIT] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
    check(p.returncode == expect, f"exit {p.returncode} != {expect}: moekit {' '.join(map(str, args))}")
    return p


def load_source_f32(d):
    """Source checkpoint as fp32 (bf16 decoded by hand: safetensors.numpy cannot)."""
    import struct
    out = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        raw = f.read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            buf = raw[base + b: base + e]
            dt = info["dtype"]
            if dt == "BF16":
                a = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dt == "F16":
                a = np.frombuffer(buf, np.float16).astype(np.float32)
            elif dt == "F32":
                a = np.frombuffer(buf, np.float32).copy()
            else:
                continue
            out[name] = a.reshape(info["shape"])
    return out


def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_gguf_tensor(gname, hf, cfg, experts_prefix):
    """The HF tensor(s) a GGUF tensor comes from, in GGUF numpy layout."""
    if gname.endswith("_exps.weight"):
        il = int(gname.split(".")[1])
        proj = {"ffn_gate_exps": 0, "ffn_up_exps": 1, "ffn_down_exps": 2}[gname.split(".")[2]]
        n_expert = cfg.get("num_local_experts", cfg.get("num_experts"))
        names = experts_prefix(il, proj)
        return np.stack([hf[names[ie]] for ie in range(n_expert)])
    return None


def gguf_key_values(path):
    r = GGUFReader(path)
    kv = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        kv[k] = (tuple(int(t) for t in f.types), f.contents())
    return r, kv


def split_kv_b(w, cfg, which):
    """convert_hf_to_gguf.py's DeepseekV2Model split of kv_b_proj [n_head*(nope+v), r] (numpy)."""
    nh, nope, v = cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["v_head_dim"]
    kv = w.reshape(nh, nope + v, w.shape[-1])
    return np.ascontiguousarray(kv[:, :nope, :].transpose(0, 2, 1) if which == "k" else kv[:, nope:, :])


# Metadata moekit writes on purpose where convert_hf_to_gguf.py writes nothing (gguf_deepseek.cpp):
# {fixture: {key: expected moekit value}}.
DEEPSEEK_DELIBERATE = {
    # config q_lora_rank null: llama.cpp needs the key; topk_group (2) >= top-k (2): V2's group-limited
    # greedy is plain top-k, written without groups so llama.cpp does not apply V3's group rule
    "deepseek_v2": {"deepseek2.attention.q_lora_rank": 0, "deepseek2.expert_group_count": 1,
                    "deepseek2.expert_group_used_count": 1},
    "deepseek_v3": {"deepseek2.expert_gating_func": 2},     # no scoring_func in config; V3 routes with sigmoid
    "deepseek64": {"deepseek2.expert_gating_func": 2},
}


def hf_to_gguf_names(model_type):
    mixtral = model_type == "mixtral"
    deepseek = model_type.startswith("deepseek")
    ex = "block_sparse_moe.experts" if mixtral else "mlp.experts"
    proj = ["w1", "w3", "w2"] if mixtral else ["gate_proj", "up_proj", "down_proj"]

    def experts(il, p):
        return {ie: f"model.layers.{il}.{ex}.{ie}.{proj[p]}.weight" for ie in range(256)}

    def single(gname):
        m = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
        if gname in m:
            return m[gname]
        parts = gname.split(".")
        il, rest = parts[1], ".".join(parts[2:])
        p = f"model.layers.{il}."
        table = {
            "attn_norm.weight": "input_layernorm.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
            "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
            "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
            "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
            "attn_v.bias": "self_attn.v_proj.bias",
            "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
            "ffn_gate_inp.weight": ("block_sparse_moe.gate.weight" if mixtral else "mlp.gate.weight"),
            "ffn_gate_shexp.weight": "mlp.shared_expert.gate_proj.weight",
            "ffn_up_shexp.weight": "mlp.shared_expert.up_proj.weight",
            "ffn_down_shexp.weight": "mlp.shared_expert.down_proj.weight",
            "ffn_gate_inp_shexp.weight": "mlp.shared_expert_gate.weight",
        }
        if deepseek:
            table.update({
                "attn_q_a.weight": "self_attn.q_a_proj.weight", "attn_q_b.weight": "self_attn.q_b_proj.weight",
                "attn_q_a_norm.weight": "self_attn.q_a_layernorm.weight",
                "attn_kv_a_mqa.weight": "self_attn.kv_a_proj_with_mqa.weight",
                "attn_kv_a_norm.weight": "self_attn.kv_a_layernorm.weight",
                "attn_k_b.weight": "self_attn.kv_b_proj.weight", "attn_v_b.weight": "self_attn.kv_b_proj.weight",
                "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
                "ffn_down.weight": "mlp.down_proj.weight",
                "ffn_gate_shexp.weight": "mlp.shared_experts.gate_proj.weight",
                "ffn_up_shexp.weight": "mlp.shared_experts.up_proj.weight",
                "ffn_down_shexp.weight": "mlp.shared_experts.down_proj.weight",
                "exp_probs_b.bias": "mlp.gate.e_score_correction_bias",
            })
        return p + table[rest]

    return experts, single


def check_model(name, model_dir, types, tmp):
    cfg = json.loads((model_dir / "config.json").read_text())
    src = load_source_f32(model_dir)
    experts, single = hf_to_gguf_names(cfg["model_type"])
    n_head, n_kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    for t in types:
        out = tmp / f"{name}-{t}.gguf"
        fake = tmp / f"{name}-{t}-fake"
        run(["quantize", model_dir, "--type", t, "--format", "gguf", "-o", out])
        run(["quantize", model_dir, "--type", t, "--format", "hf-fake", "-o", fake])
        side = json.loads(out.with_suffix(".moekit.json").read_text())
        check(side["schema_version"] == 1 and len(side["tensors"]) > 0, f"{name} {t}: moekit.json")
        hf = load_source_f32(fake)
        r = GGUFReader(out)
        for tensor in r.tensors:
            g = tensor.name
            deq = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            if g.endswith("_exps.weight"):
                il = int(g.split(".")[1])
                p = {"ffn_gate_exps": 0, "ffn_up_exps": 1, "ffn_down_exps": 2}[g.split(".")[2]]
                names = experts(il, p)
                n_expert = cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts")))
                want = np.stack([hf[names[ie]] for ie in range(n_expert)])
                orig = np.stack([src[names[ie]] for ie in range(n_expert)])
            elif g.endswith(("attn_k_b.weight", "attn_v_b.weight")):
                # hf-fake quantizes kv_b_proj along its own rows, GGUF the split (transposed) halves:
                # the oracle is gguf-py's quantizer on numpy's split of the source.
                orig = split_kv_b(src[single(g)], cfg, "k" if "attn_k_b" in g else "v")
                want = gguf.quants.dequantize(gguf.quants.quantize(orig, tensor.tensor_type),
                                              tensor.tensor_type).reshape(orig.shape)
            else:
                hn = single(g)
                want, orig = hf[hn], src[hn]
                if cfg["model_type"] == "mixtral" and g.endswith(("attn_q.weight", "attn_k.weight")):
                    nh = n_head if "attn_q" in g else n_kv
                    want, orig = permute(want, nh), permute(orig, nh)
            shape_ok = list(reversed([int(x) for x in tensor.shape])) == list(want.shape) or \
                (want.ndim == 1 and int(tensor.shape[0]) == want.shape[0])
            check(shape_ok, f"{name} {t} {g}: shape {list(tensor.shape)} vs {list(want.shape)}")
            if not shape_ok:
                continue
            deq = deq.reshape(want.shape)
            if tensor.tensor_type == Q.F32:
                check(np.array_equal(deq, orig), f"{name} {t} {g}: F32 tensor is not the source")
            else:
                check(np.array_equal(deq, want),
                      f"{name} {t} {g} ({tensor.tensor_type.name}): gguf-py dequantization != moekit "
                      f"(max diff {np.max(np.abs(deq - want))})")
            if tensor.tensor_type in (Q.Q8_0, Q.Q4_0, Q.Q5_0):
                ref = gguf.quants.quantize(orig.astype(np.float32), tensor.tensor_type)
                check(np.array_equal(np.asarray(ref).reshape(-1).view(np.uint8),
                                     np.asarray(tensor.data).reshape(-1).view(np.uint8)),
                      f"{name} {t} {g}: bytes differ from gguf-py's numpy {tensor.tensor_type.name} quantizer")
        print(f"ok: {name} {t}: {len(r.tensors)} tensors")


def compare_with_converter(pairs, tmp):
    conv = ROOT / "scripts" / "reference" / "convert_hf_to_gguf_ref.py"
    llama = ROOT / ".deps" / "llama.cpp"
    if not (llama / "convert_hf_to_gguf.py").exists():
        print("note: .deps/llama.cpp missing; converter comparison skipped (scripts/setup.sh fetches it)")
        return
    args = []
    for name, d in pairs:
        args += [str(d), str(tmp / f"ref-{name}.gguf")]
    p = subprocess.run([sys.executable, str(conv)] + args + ["--outtype", "f32"], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr[-3000:])
    check(p.returncode == 0, "convert_hf_to_gguf.py failed")
    ignore = {"general.name", "general.size_label", "general.quantized_by"}
    for name, d in pairs:
        ours = tmp / f"{name}-f32.gguf"
        if not ours.exists():
            run(["quantize", d, "--type", "f32", "-o", ours])
        r_ref, kv_ref = gguf_key_values(tmp / f"ref-{name}.gguf")
        r_our, kv_our = gguf_key_values(ours)
        deliberate = DEEPSEEK_DELIBERATE.get(name, {})
        for k, v in deliberate.items():
            check(k not in kv_ref or kv_ref[k][1] != v,
                  f"{name}: the converter now writes {k} = {v} too; drop it from DEEPSEEK_DELIBERATE")
            check(k in kv_our and kv_our[k][1] == v, f"{name}: moekit's {k} = {kv_our.get(k)} (expected {v})")
        for k in sorted(set(kv_ref) | set(kv_our)):
            if k in ignore or k in deliberate:
                continue
            check(k in kv_ref and k in kv_our and kv_ref[k] == kv_our[k],
                  f"{name}: metadata {k}: converter {kv_ref.get(k, ('absent',))[:2] if k in kv_ref else 'absent'}"
                  f" vs moekit {kv_our.get(k, 'absent') if k in kv_our else 'absent'}"[:400])
        t_ref = {t.name: t for t in r_ref.tensors}
        t_our = {t.name: t for t in r_our.tensors}
        check(set(t_ref) == set(t_our), f"{name}: tensor names differ: {sorted(set(t_ref) ^ set(t_our))}")
        for n in set(t_ref) & set(t_our):
            a, b = t_ref[n], t_our[n]
            check(list(a.shape) == list(b.shape) and a.tensor_type == b.tensor_type,
                  f"{name} {n}: converter {list(a.shape)} {a.tensor_type.name} vs moekit {list(b.shape)} {b.tensor_type.name}")
            check(np.array_equal(np.asarray(a.data), np.asarray(b.data)), f"{name} {n}: f32 data differs from the converter")
        extra = f" (plus {', '.join(deliberate)} by design)" if deliberate else ""
        print(f"ok: {name}: metadata, tensor names, shapes, types and f32 data equal convert_hf_to_gguf.py{extra}")


def make_olmoe256(d):
    """A one-layer OLMoE with rows of 256 (every fixture and the demo model have shorter rows, so
    Q4_K/Q6_K would only ever fall back): the olmoe fixture's tokenizer, random weights."""
    import shutil
    from safetensors.numpy import save_file
    d.mkdir()
    cfg = json.loads((FIXTURES / "olmoe" / "config.json").read_text())
    cfg.update(hidden_size=256, intermediate_size=256, num_hidden_layers=1, num_experts=4, num_attention_heads=4,
               num_key_value_heads=4)
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(FIXTURES / "olmoe" / f, d / f)
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)
    V, D = cfg["vocab_size"], 256
    t = {"model.embed_tokens.weight": w(V, D), "model.norm.weight": 1 + w(D), "lm_head.weight": w(V, D)}
    p = "model.layers.0."
    t.update({p + "input_layernorm.weight": 1 + w(D), p + "post_attention_layernorm.weight": 1 + w(D),
              p + "self_attn.q_norm.weight": 1 + w(D), p + "self_attn.k_norm.weight": 1 + w(D),
              p + "mlp.gate.weight": w(4, D)})
    for n in "qkvo":
        t[p + f"self_attn.{n}_proj.weight"] = w(D, D)
    t[p + "self_attn.q_proj.weight"][:, :7] *= 40  # outliers: sub-blocks with very different scales
    for e in range(4):
        for n in ["gate_proj", "up_proj", "down_proj"]:
            t[p + f"mlp.experts.{e}.{n}.weight"] = w(D, D)
    t[p + "mlp.experts.0.up_proj.weight"][3, :] = 0  # an all-zero row
    save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})


def make_deepseek64(d):
    """A 2-layer DeepSeek-V3 (q LoRA, a dense layer, a shared expert, correction bias, an MTP layer)
    whose MLA rows are 32/64 long, so attn_k_b/attn_v_b hold real Q8_0/Q4_0 blocks: the deepseek_v3
    fixture's tokenizer, random weights."""
    import shutil
    from safetensors.numpy import save_file
    d.mkdir()
    cfg = json.loads((FIXTURES / "deepseek_v3" / "config.json").read_text())
    cfg.update(hidden_size=64, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=2, q_lora_rank=32, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=32,
               qk_head_dim=64, head_dim=32, v_head_dim=32, n_routed_experts=4, n_group=2, topk_group=1,
               first_k_dense_replace=1, n_shared_experts=1, num_nextn_predict_layers=1)
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(FIXTURES / "deepseek_v3" / f, d / f)
    rng = np.random.default_rng(1)
    w = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)
    V, D, H = cfg["vocab_size"], 64, 2
    t = {"model.embed_tokens.weight": w(V, D), "model.norm.weight": 1 + w(D), "lm_head.weight": w(V, D)}
    for il in range(2):
        p = f"model.layers.{il}."
        a = p + "self_attn."
        t.update({p + "input_layernorm.weight": 1 + w(D), p + "post_attention_layernorm.weight": 1 + w(D),
                  a + "q_a_proj.weight": w(32, D), a + "q_a_layernorm.weight": 1 + w(32), a + "q_b_proj.weight": w(H * 64, 32),
                  a + "kv_a_proj_with_mqa.weight": w(64 + 32, D), a + "kv_a_layernorm.weight": 1 + w(64),
                  a + "kv_b_proj.weight": w(H * (32 + 32), 64), a + "o_proj.weight": w(D, H * 32)})
        t[a + "kv_b_proj.weight"][:, :3] *= 30  # outliers: the transposed k_b blocks see very different scales
        if il == 0:
            t.update({p + "mlp.gate_proj.weight": w(64, D), p + "mlp.up_proj.weight": w(64, D),
                      p + "mlp.down_proj.weight": w(D, 64)})
            continue
        t.update({p + "mlp.gate.weight": w(4, D), p + "mlp.gate.e_score_correction_bias": w(4)})
        for e in range(4):
            for n, shape in [("gate_proj", (32, D)), ("up_proj", (32, D)), ("down_proj", (D, 32))]:
                t[p + f"mlp.experts.{e}.{n}.weight"] = w(*shape)
        for n, shape in [("gate_proj", (32, D)), ("up_proj", (32, D)), ("down_proj", (D, 32))]:
            t[p + f"mlp.shared_experts.{n}.weight"] = w(*shape)
    # A multi-token-prediction layer after the decoder: the converter and moekit both leave it out.
    t.update({"model.layers.2.eh_proj.weight": w(D, 2 * D), "model.layers.2.enorm.weight": 1 + w(D),
              "model.layers.2.hnorm.weight": 1 + w(D)})
    save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})


def check_hf_fake_loads(tmp):
    """transformers loads --format hf-fake output of every architecture (no missing or unexpected
    keys) and holds exactly the dequantized values moekit wrote."""
    try:
        import torch
        import transformers
    except ImportError:
        print("note: transformers not installed; hf-fake load check skipped")
        return
    for fx in ["olmoe", "qwen2_moe", "qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3"]:
        out = tmp / f"hf-{fx}"
        run(["quantize", FIXTURES / fx, "--format", "hf-fake", "--bits", "4", "--group-size", "16", "-o", out])
        model, info = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32,
                                                                         output_loading_info=True)
        check(not info["missing_keys"] and not info["unexpected_keys"],
              f"{fx}: transformers loading info {info}")
        written = load_source_f32(out)
        sd = model.state_dict()
        # transformers 5 fuses experts on load; compare a tensor it keeps as is.
        attn = next(k for k in written if k.endswith("o_proj.weight"))
        check(np.array_equal(sd[attn].numpy(), written[attn]), f"{fx}: {attn} differs after loading")
        print(f"ok: transformers loads hf-fake {fx}")


def main():
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        # q4_K on the demo model is its q5_0 fallback (rows of 128); f16 is covered by bf16's path.
        check_model("demo", ROOT / "assets" / "demo-moe", ["q8_0", "q4_0", "q5_0", "bf16"], tmp)
        make_olmoe256(tmp / "olmoe256")
        check_model("olmoe256", tmp / "olmoe256", ["q4_K", "q6_K"], tmp)
        for fx in ["qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3"]:  # OLMoE: the demo model and olmoe256
            check_model(fx, FIXTURES / fx, ["q8_0"], tmp)
        make_deepseek64(tmp / "deepseek64")
        check_model("deepseek64", tmp / "deepseek64", ["q8_0", "q4_0", "q4_K"], tmp)
        pairs = [("demo", ROOT / "assets" / "demo-moe"), ("olmoe", FIXTURES / "olmoe"), ("qwen3_moe", FIXTURES / "qwen3_moe"),
                 ("deepseek_v2", FIXTURES / "deepseek_v2"), ("deepseek_v3", FIXTURES / "deepseek_v3"),
                 ("deepseek64", tmp / "deepseek64")]
        try:  # the converter's llama-vocabulary path imports sentencepiece
            import sentencepiece  # noqa: F401
            pairs.append(("mixtral", FIXTURES / "mixtral"))
        except ImportError:
            print("note: sentencepiece not installed; Mixtral converter comparison skipped")
        compare_with_converter(pairs, tmp)
        check_hf_fake_loads(tmp)
        # Refusals: exit 1, nothing written.
        for args, what in [
            ([FIXTURES / "qwen2_moe", "-o", tmp / "x.gguf"], "dense MLP layer"),
            ([ROOT / "assets" / "demo-moe", "--bits", "3", "-o", tmp / "x.gguf"], "--bits 3"),
            ([ROOT / "assets" / "demo-moe", "--type", "q3_K", "-o", tmp / "x.gguf"], "q3_K"),
            ([ROOT / "assets" / "demo-moe", "--format", "gptq", "-o", tmp / "x.gguf"], "not implemented yet"),
        ]:
            p = run(["quantize"] + args, expect=1)
            check(what in p.stderr, f"refusal message for {what!r}: {p.stderr.strip()}")
            check(not (tmp / "x.gguf").exists(), f"{what}: output written")
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
