#!/usr/bin/env python3
"""Generate moekit's committed test fixtures: tiny RANDOM MoE checkpoints built with
transformers' own model classes and ``save_pretrained`` (safetensors), their tokenizers,
oracle facts (``expected.json``) and deliberately broken checkpoints.

Everything is deterministic from ``--seed``: re-running regenerates the committed files
bit-for-bit (``--check`` verifies exactly that against ``tests/fixtures/MANIFEST.json``).

    python scripts/make_fixtures.py                 # (re)write tests/fixtures
    python scripts/make_fixtures.py --out /tmp/fx   # write elsewhere
    python scripts/make_fixtures.py --check         # regenerate into a temp dir, compare sha256

Pinned toolchain (scripts/requirements*.txt): torch 2.15.0, transformers 5.24.0,
tokenizers 0.23.3, safetensors 0.8.0. Other versions may write different bytes.

Layout written under OUT:
    mixtral/ qwen2_moe/ qwen3_moe/ olmoe/ deepseek_v2/ deepseek_v3/   one model each:
        config.json generation_config.json model.safetensors (or index + shards)
        tokenizer.json tokenizer_config.json [special_tokens_map.json] expected.json
    mixtral_hf4/       same weights/tokenizer as mixtral, config.json in transformers-4.x spelling
    tiny/              2-layer 4-expert bf16 mixtral, base of the broken cases
    broken/<case>/     a copy of tiny/ with exactly one defect; broken/CASES.json describes them
    MANIFEST.json      relative path -> sha256 of every other file under OUT
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAYON_NUM_THREADS"] = "1"  # BPE training order independent of cores
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------------------------
# Training text for the tokenizers: English, German, French, Chinese, Japanese, Python, C.
# --------------------------------------------------------------------------------------------
CORPUS = r"""
The quick brown fox jumps over the lazy dog. A mixture of experts routes every token to a
small number of feed-forward networks, called experts, chosen by a learned router. The router
computes a score for each expert, keeps the top ones, and mixes their outputs with the gate
weights. Sparse models have many parameters but use only a few of them for each token, which
makes them fast to run and expensive to store. Pruning removes experts that are rarely used;
merging combines similar experts into one; quantization stores the weights with fewer bits.
In the beginning the model knows nothing, and the loss is high. After training on many
documents the experts specialize: one prefers numbers, another punctuation, another code.
Questions? Answers! Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1000 3.14159 2.71828 -1 +7 50%.

Der schnelle braune Fuchs springt über den faulen Hund. Ein Mischmodell aus Experten leitet
jedes Token an wenige Netzwerke weiter. Die Gewichte werden gespeichert, geladen und geprüft.
Größere Modelle brauchen mehr Speicher; kleinere Modelle sind schneller. Übung macht den Meister.
Straße, Fußgänger, Äpfel, Öl, Übersetzung, Prüfung, schön, müde, heißen, weiß.

Le renard brun rapide saute par-dessus le chien paresseux. Un mélange d'experts envoie chaque
jeton vers quelques réseaux choisis par un routeur appris. Les poids sont stockés à l'aide de
tenseurs; l'élève a étudié très tôt, à côté de la forêt. Où est la bibliothèque? C'est là-bas.
Français, garçon, été, hôpital, noël, naïf, cœur, œuvre, déjà vu.

敏捷的棕色狐狸跳过了懒狗。专家混合模型把每个词元发送给少数几个专家网络。路由器为每个专家计算分数，
选择得分最高的专家，并用门控权重混合它们的输出。我们在北京和上海测试了这个模型，结果很好。
人工智能、机器学习、深度学习、自然语言处理、大型语言模型、参数、推理、训练。

素早い茶色の狐がのろまな犬を飛び越える。専門家の混合モデルは、各トークンを少数の専門家に送ります。
ルーターは各専門家のスコアを計算し、上位の専門家を選びます。東京は日本の首都です。ありがとうございます。
カタカナ、ひらがな、漢字、テスト、モデル、トークン、エキスパート。

def softmax(logits):
    m = max(logits)
    exps = [math.exp(x - m) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]

class Router(nn.Module):
    def __init__(self, hidden_size: int, num_experts: int, top_k: int = 2):
        super().__init__()
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)
        self.top_k = top_k

    def forward(self, hidden_states):
        logits = self.gate(hidden_states)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
        weights, selected = torch.topk(probs, self.top_k, dim=-1)
        return weights / weights.sum(dim=-1, keepdim=True), selected

for i in range(10):
    if i % 2 == 0:
        print(f"even {i}")
    else:
        print("odd", i, sep=", ")

#include <stdio.h>
#include <stdint.h>
#include <string.h>

static float dot(const float *a, const float *b, size_t n) {
    float s = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        s += a[i] * b[i];
    }
    return s;
}

int main(int argc, char **argv) {
    uint64_t header_len = 0;
    FILE *f = fopen(argv[1], "rb");
    if (f == NULL) { perror("fopen"); return 1; }
    if (fread(&header_len, sizeof header_len, 1, f) != 1) return 2;
    printf("header: %llu bytes\n", (unsigned long long)header_len);
    fclose(f);
    return 0;
}
"""

# Every char of the corpus, split into documents (training input for the tokenizers).
DOCS = [d.strip("\n") for d in CORPUS.split("\n\n") if d.strip()]


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------
def train_byte_level_bpe(vocab_size: int):
    """GPT-2 style byte-level BPE (what Qwen / OLMoE / DeepSeek ship), no special tokens yet."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(DOCS, trainer=trainer)
    return tok


def train_llama_bpe(n_merges_target: int):
    """Llama/Mistral SentencePiece-BPE as tokenizer.json encodes it (Mixtral-8x7B-v0.1 layout):
    ids 0..2 = <unk> <s> </s>, ids 3..258 = <0x00>..<0xFF> byte-fallback tokens, then pieces
    with '▁' for spaces; normalizer Prepend('▁') + Replace(' ', '▁'); no pre-tokenizer;
    decoder Replace('▁',' ') + ByteFallback + Fuse + Strip(1 leading space);
    post-processor prepends <s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    # Train on '▁word' pieces (SentencePiece never merges across a space boundary).
    tr = Tokenizer(models.BPE(unk_token="<unk>"))
    tr.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=n_merges_target, min_frequency=2, show_progress=False, special_tokens=[]
    )
    tr.train_from_iterator(DOCS, trainer=trainer)
    trained = json.loads(tr.to_str())["model"]
    pieces = sorted(trained["vocab"].items(), key=lambda kv: kv[1])

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in pieces:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = trained["merges"]

    def added(i, content):
        return {"id": i, "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": True}

    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
            "ignore_merges": False, "vocab": vocab, "merges": merges,
        },
    }
    return Tokenizer.from_str(json.dumps(tj, ensure_ascii=False))


_TOK_CACHE: dict = {}


def base_tokenizer(kind: str):
    if kind not in _TOK_CACHE:
        if kind == "bytelevel":
            _TOK_CACHE[kind] = train_byte_level_bpe(520).to_str()
        elif kind == "bytelevel_tiny":
            _TOK_CACHE[kind] = train_byte_level_bpe(280).to_str()
        elif kind == "llama":
            _TOK_CACHE[kind] = train_llama_bpe(440).to_str()
        else:
            raise ValueError(kind)
    from tokenizers import Tokenizer
    return Tokenizer.from_str(_TOK_CACHE[kind])


def make_tokenizer(spec: dict):
    """Returns a transformers PreTrainedTokenizerFast built from a trained base + added tokens."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    tok = base_tokenizer(spec["base"])
    specials = spec.get("special", [])
    if specials:
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    plain = spec.get("added", [])
    if plain:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    kw = {k: spec[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if spec.get(k)}
    if spec.get("extra_special_tokens"):
        kw["additional_special_tokens"] = spec["extra_special_tokens"]
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=spec.get("max_len", 4096),
                                 clean_up_tokenization_spaces=False, **kw)
    return hf


# --------------------------------------------------------------------------------------------
# Model specs
# --------------------------------------------------------------------------------------------
BYTE_TOK_QWEN = {"base": "bytelevel", "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                 "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}
BYTE_TOK_QWEN3 = dict(BYTE_TOK_QWEN, added=["<think>", "</think>"])
BYTE_TOK_OLMOE = {"base": "bytelevel", "special": ["|||IP_ADDRESS|||", "<|padding|>", "<|endoftext|>"],
                  "eos_token": "<|endoftext|>", "pad_token": "<|padding|>", "bos_token": None}
BYTE_TOK_DEEPSEEK = {"base": "bytelevel",
                     "special": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
                     "added": ["<｜fim▁hole｜>", "<｜fim▁begin｜>"],
                     "bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>",
                     "pad_token": "<｜end▁of▁sentence｜>"}
LLAMA_TOK = {"base": "llama", "special": ["[INST]", "[/INST]"], "bos_token": "<s>",
             "eos_token": "</s>", "unk_token": "<unk>"}
TINY_TOK = {"base": "bytelevel_tiny", "special": ["<s>", "</s>"], "bos_token": "<s>",
            "eos_token": "</s>"}

INIT_RANGE = 0.15

MODELS = {
    "mixtral": {
        "cls": "MixtralForCausalLM", "dtype": "float32", "tok": LLAMA_TOK,
        "config": dict(hidden_size=32, intermediate_size=16, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                       num_experts_per_tok=2, max_position_embeddings=512, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       tie_word_embeddings=False, sliding_window=None,
                       router_aux_loss_coef=0.02),
    },
    "qwen2_moe": {
        "cls": "Qwen2MoeForCausalLM", "dtype": "bfloat16", "tok": BYTE_TOK_QWEN,
        "config": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, num_experts=8,
                       num_experts_per_tok=4, moe_intermediate_size=16,
                       shared_expert_intermediate_size=32, decoder_sparse_step=1,
                       mlp_only_layers=[2], norm_topk_prob=False, qkv_bias=True,
                       max_position_embeddings=512, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       tie_word_embeddings=False, use_sliding_window=False),
    },
    "qwen3_moe": {
        "cls": "Qwen3MoeForCausalLM", "dtype": "float32", "tok": BYTE_TOK_QWEN3,
        "shard": 70_000,
        "config": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       num_experts=8, num_experts_per_tok=3, moe_intermediate_size=16,
                       decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True,
                       max_position_embeddings=512, rms_norm_eps=1e-6, attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                       tie_word_embeddings=False, use_sliding_window=False),
    },
    "olmoe": {
        "cls": "OlmoeForCausalLM", "dtype": "float32", "tok": BYTE_TOK_OLMOE,
        "config": dict(hidden_size=32, intermediate_size=16, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=4, num_experts=8,
                       num_experts_per_tok=2, norm_topk_prob=False, clip_qkv=None,
                       max_position_embeddings=512, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=False),
    },
    "deepseek_v2": {
        "cls": "DeepseekV2ForCausalLM", "dtype": "bfloat16", "tok": BYTE_TOK_DEEPSEEK,
        "config": dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                       num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                       n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2,
                       first_k_dense_replace=1, q_lora_rank=None, kv_lora_rank=16,
                       qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                       topk_method="group_limited_greedy", n_group=4, topk_group=2,
                       routed_scaling_factor=1.5, norm_topk_prob=False,
                       max_position_embeddings=512, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                        "original_max_position_embeddings": 128,
                                        "beta_fast": 32.0, "beta_slow": 1.0,
                                        "mscale": 0.707, "mscale_all_dim": 0.707},
                       tie_word_embeddings=False),
    },
    "deepseek_v3": {
        "cls": "DeepseekV3ForCausalLM", "dtype": "float16", "tok": BYTE_TOK_DEEPSEEK,
        "config": dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                       num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                       n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                       first_k_dense_replace=1, q_lora_rank=24, kv_lora_rank=16,
                       qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8,
                       n_group=2, topk_group=1, topk_method="noaux_tc",
                       routed_scaling_factor=2.5, norm_topk_prob=True,
                       max_position_embeddings=512, rms_norm_eps=1e-6, rope_interleave=True,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=False),
    },
    "tiny": {
        "cls": "MixtralForCausalLM", "dtype": "bfloat16", "tok": TINY_TOK,
        "config": dict(hidden_size=8, intermediate_size=8, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
                       num_experts_per_tok=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       tie_word_embeddings=False, sliding_window=None),
    },
}

MAIN_ARCHES = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3"]


# --------------------------------------------------------------------------------------------
# Model building
# --------------------------------------------------------------------------------------------
def build_model(name: str, spec: dict, seed: int, out_dir: Path):
    import torch
    import transformers

    hf_tok = make_tokenizer(spec["tok"])
    vocab_size = len(hf_tok)
    cls = getattr(transformers, spec["cls"])
    cfg_cls = cls.config_class
    ckw = dict(spec["config"])
    ckw.update(vocab_size=vocab_size, initializer_range=INIT_RANGE,
               bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
               pad_token_id=hf_tok.pad_token_id)
    config = cfg_cls(**ckw)
    dtype = getattr(torch, spec["dtype"])

    # Per-model seed: independent of build order.
    model_seed = seed * 1000 + sorted(MODELS).index(name)
    torch.manual_seed(model_seed)
    with torch.device("cpu"):
        model = cls(config)
    model.eval()

    # Constant-initialised tensors (norm weights = 1, biases = 0, e_score_correction_bias = 0)
    # get a random perturbation so that forgetting to apply one is detectable in tests.
    gen = torch.Generator().manual_seed(model_seed + 7)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            flat = p.detach().reshape(-1)
            if flat.numel() and bool((flat == flat[0]).all()):
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                p.add_((0.1 * noise).to(p.dtype))
        for bname, b in sorted(model.named_buffers(), key=lambda kv: kv[0]):
            if bname.endswith("e_score_correction_bias"):
                noise = torch.randn(b.shape, generator=gen, dtype=torch.float32)
                b.copy_((0.05 * noise).to(b.dtype))
    model = model.to(dtype)
    model.config.dtype = dtype

    out_dir.mkdir(parents=True, exist_ok=True)
    save_kw = {}
    if spec.get("shard"):
        save_kw["max_shard_size"] = spec["shard"]
    model.save_pretrained(out_dir, safe_serialization=True, **save_kw)
    hf_tok.save_pretrained(out_dir)
    return model, hf_tok


# --------------------------------------------------------------------------------------------
# Oracle facts
# --------------------------------------------------------------------------------------------
def read_saved_tensors(d: Path):
    from safetensors import safe_open

    idx = d / "model.safetensors.index.json"
    files = sorted(set(json.loads(idx.read_text())["weight_map"].values())) if idx.exists() \
        else ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(str(d / f), framework="pt") as sf:
            for k in sf.keys():
                sl = sf.get_slice(k)
                out[k] = {"shape": list(sl.get_shape()), "dtype": sl.get_dtype(), "file": f}
    return dict(sorted(out.items()))


def categorize(name: str) -> str:
    import re
    if "embed_tokens" in name:
        return "embedding"
    if name.startswith("lm_head"):
        return "lm_head"
    leaf = name.rsplit(".", 2)[-2] if name.endswith((".weight", ".bias")) else name.rsplit(".", 1)[-1]
    if "norm" in leaf or "layernorm" in leaf:
        return "norm"
    if re.search(r"\.experts\.\d+\.", name):
        return "routed_expert"
    if ".shared_expert." in name or ".shared_experts." in name or "shared_expert_gate" in name:
        return "shared_expert"
    if re.search(r"\.(mlp|block_sparse_moe)\.gate\.(weight|e_score_correction_bias)$", name) \
            or name.endswith("e_score_correction_bias"):
        return "router"
    if ".self_attn." in name:
        return "attention"
    if re.search(r"\.mlp\.(gate_proj|up_proj|down_proj)\.", name):
        return "dense_mlp"
    return "other"


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def expected_facts(name: str, model, hf_tok, d: Path) -> dict:
    cfg = model.config
    layers = model.model.layers
    moe_layers, layer_kinds = [], []
    for i, layer in enumerate(layers):
        cls_name = type(layer.mlp).__name__
        is_moe = hasattr(layer.mlp, "experts")
        layer_kinds.append({"index": i, "mlp_class": cls_name, "moe": is_moe})
        if is_moe:
            moe_layers.append(i)

    n_expert = getattr(cfg, "num_local_experts", None) or getattr(cfg, "n_routed_experts", None) \
        or getattr(cfg, "num_experts", None)
    top_k = cfg.num_experts_per_tok
    if hasattr(cfg, "n_shared_experts"):
        n_shared = cfg.n_shared_experts
    elif getattr(cfg, "shared_expert_intermediate_size", 0):
        n_shared = 1
    else:
        n_shared = 0
    expert_ff = getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size

    # transformers' own count: state_dict (in-memory, fused expert tensors), de-duplicated by storage.
    sd = model.state_dict()
    seen, total_sd = set(), 0
    for k, v in sd.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key in seen:
            continue
        seen.add(key)
        total_sd += v.numel()
    total_params = sum(p.numel() for p in model.parameters())  # de-duplicates tied params itself

    tensors = read_saved_tensors(d)
    total_saved = sum(numel(t["shape"]) for t in tensors.values())
    cats: dict = {}
    for k, t in tensors.items():
        c = categorize(k)
        cats[c] = cats.get(c, 0) + numel(t["shape"])
    assert "other" not in cats, [k for k in tensors if categorize(k) == "other"]
    assert total_saved == total_sd, (name, total_saved, total_sd)

    first = moe_layers[0]
    import re
    pat = re.compile(rf"^model\.layers\.{first}\.[a-z_]+\.experts\.0\.")
    per_expert = sum(numel(t["shape"]) for k, t in tensors.items() if pat.match(k))
    active = total_sd - (n_expert - top_k) * per_expert * len(moe_layers)

    # Tokenizer sanity facts (for the C++ tokenizer's tests).
    sample = "The router picks 2 experts. Größe: 42! 专家 🙂 def f(x):\n    return x"
    ids = hf_tok(sample, add_special_tokens=True)["input_ids"]

    return {
        "schema_version": SCHEMA_VERSION,
        "model_type": cfg.model_type,
        "architecture_class": type(model).__name__,
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "vocab_size": cfg.vocab_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "hidden_size": cfg.hidden_size,
        "moe_layers": moe_layers,
        "dense_layers": [i for i in range(len(layers)) if i not in moe_layers],
        "layer_mlp_classes": layer_kinds,
        "n_routed_experts": n_expert,
        "experts_per_token": top_k,
        "n_shared_experts": n_shared,
        "expert_intermediate_size": expert_ff,
        "shared_expert_intermediate_size": getattr(cfg, "shared_expert_intermediate_size", None)
        or (n_shared * expert_ff if n_shared else 0),
        "dense_intermediate_size": cfg.intermediate_size,
        "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
        "total_params": total_sd,
        "total_params_convention": "sum of numel over model.state_dict() de-duplicated by storage "
                                   "(tied weights counted once); equals sum over model.parameters() "
                                   "plus buffers that are saved (e.g. e_score_correction_bias); "
                                   "equals the sum over all saved safetensors tensors",
        "total_params_parameters_only": total_params,
        "params_per_routed_expert": per_expert,
        "active_params_per_token": active,
        "active_params_convention": "total_params - (n_routed_experts - experts_per_token) * "
                                    "params_per_routed_expert * len(moe_layers); shared experts, "
                                    "router, embedding and lm_head all count as active",
        "params_by_category": dict(sorted(cats.items())),
        "category_rules": {
            "embedding": "embed_tokens", "lm_head": "lm_head.*",
            "norm": "any *norm*/*layernorm* weight incl. q_norm, k_norm, q_a_layernorm, kv_a_layernorm",
            "router": "mlp.gate.weight / block_sparse_moe.gate.weight, e_score_correction_bias",
            "routed_expert": "*.experts.N.*",
            "shared_expert": "shared_expert.*, shared_experts.*, shared_expert_gate",
            "attention": "self_attn.* except norms", "dense_mlp": "mlp.{gate,up,down}_proj in dense layers",
        },
        "bos_token_id": hf_tok.bos_token_id,
        "eos_token_id": hf_tok.eos_token_id,
        "pad_token_id": hf_tok.pad_token_id,
        "tokenizer_sample": {"text": sample, "input_ids": ids,
                             "decoded": hf_tok.decode(ids, skip_special_tokens=True)},
        "n_tensors": len(tensors),
        "tensors": tensors,
    }


# --------------------------------------------------------------------------------------------
# transformers-4.x style config (real hub spelling)
# --------------------------------------------------------------------------------------------
def hf4_config(cfg5: dict) -> dict:
    c = dict(cfg5)
    rp = c.pop("rope_parameters", None) or {}
    if "rope_theta" in rp:
        c["rope_theta"] = rp["rope_theta"]
    if rp.get("rope_type", "default") != "default":
        rs = {k: v for k, v in rp.items() if k not in ("rope_theta", "rope_type")}
        rs["type"] = rp["rope_type"]
        c["rope_scaling"] = rs
    if c.get("head_dim", 0) is None:
        del c["head_dim"]
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    c["transformers_version"] = "4.46.3"
    return dict(sorted(c.items()))


def write_hf4_tokenizer_files(d: Path, gen5: dict) -> None:
    """tokenizer_config.json / special_tokens_map.json / generation_config.json as transformers 4.x
    wrote them for Mistral/Mixtral (LlamaTokenizer class, add_bos_token, dict-valued special
    tokens, an integer model_max_length that does not fit in 64 bits)."""
    tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))

    def tok_entry(t):
        return {"content": t["content"], "lstrip": t["lstrip"], "normalized": t["normalized"],
                "rstrip": t["rstrip"], "single_word": t["single_word"], "special": t["special"]}

    def special(content):
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False}

    tc = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(t["id"]): tok_entry(t) for t in tj["added_tokens"]},
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": "__BIGINT__",
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    }
    txt = json.dumps(tc, indent=2, ensure_ascii=False) + "\n"
    txt = txt.replace('"__BIGINT__"', "1000000000000000019884624838656")
    (d / "tokenizer_config.json").write_text(txt, encoding="utf-8")
    write_json(d / "special_tokens_map.json", {"bos_token": special("<s>"), "eos_token": special("</s>"),
                                               "unk_token": special("<unk>")})
    write_json(d / "generation_config.json", {"_from_model_config": True,
                                              "bos_token_id": gen5.get("bos_token_id"),
                                              "eos_token_id": gen5.get("eos_token_id"),
                                              "transformers_version": "4.46.3"})


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Raw safetensors crafting for the broken cases
# --------------------------------------------------------------------------------------------
DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def st_parse(raw: bytes):
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    return header, raw[8 + n:]


def st_pack(header: dict, data: bytes, pad: bool = True) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def st_tensors(header):
    return sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                  key=lambda kv: kv[1]["data_offsets"][0])


def st_rebuild(header: dict, data: bytes, drop=(), add=None) -> bytes:
    """Re-layout: keep tensors except `drop`, append `add` = {name: (dtype, shape, bytes)}."""
    new_h = {"__metadata__": header.get("__metadata__", {"format": "pt"})}
    buf = bytearray()
    for k, v in st_tensors(header):
        if k in drop:
            continue
        a, b = v["data_offsets"]
        new_h[k] = {"dtype": v["dtype"], "shape": v["shape"], "data_offsets": [len(buf), len(buf) + b - a]}
        buf += data[a:b]
    for k, (dt, shape, blob) in (add or {}).items():
        new_h[k] = {"dtype": dt, "shape": shape, "data_offsets": [len(buf), len(buf) + len(blob)]}
        buf += blob
    return st_pack(new_h, bytes(buf))


def make_broken(tiny: Path, root: Path) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    raw = (tiny / "model.safetensors").read_bytes()
    header, data = st_parse(raw)
    tensors = st_tensors(header)
    cases = {}

    def case(name, what, expect):
        d = root / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(tiny, d, ignore=shutil.ignore_patterns("expected.json"))
        cases[name] = {"what": what, "expect": expect}
        return d

    E1_W2 = "model.layers.1.block_sparse_moe.experts.1.w2.weight"
    E0_W1 = "model.layers.0.block_sparse_moe.experts.2.w1.weight"
    assert E1_W2 in header and E0_W1 in header

    d = case("truncated_file", "data buffer cut short: last tensor's bytes run past end of file",
             "model.safetensors")
    (d / "model.safetensors").write_bytes(raw[:len(raw) - 100])

    d = case("header_len_beyond_file", "header length field is larger than the file itself",
             "model.safetensors")
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(raw) + 1000) + raw[8:])

    d = case("header_too_large", "header length field is 200,000,000 (> 100 MB limit) in a small file",
             "model.safetensors")
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 200_000_000) + raw[8:])

    d = case("invalid_json", "header is not valid JSON (a brace removed)", "model.safetensors")
    hb = json.dumps(header, separators=(",", ":")).encode()
    bad = hb[:-1] + b" "  # drop the final '}'
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(bad)) + bad + data)

    d = case("unknown_dtype", f"tensor {E0_W1} has dtype \"F12\"", E0_W1)
    h = copy.deepcopy(header)
    h[E0_W1]["dtype"] = "F12"
    (d / "model.safetensors").write_bytes(st_pack(h, data))

    d = case("size_mismatch", f"{E0_W1}: shape x dtype size != data_offsets range "
             "(shape's first dim doubled, offsets unchanged)", E0_W1)
    h = copy.deepcopy(header)
    h[E0_W1]["shape"] = [h[E0_W1]["shape"][0] * 2] + h[E0_W1]["shape"][1:]
    (d / "model.safetensors").write_bytes(st_pack(h, data))

    last_name, last = tensors[-1]
    d = case("offsets_outside", f"{last_name}: data_offsets end beyond the data buffer "
             "(both offsets shifted, file length unchanged)", last_name)
    h = copy.deepcopy(header)
    a, b = last["data_offsets"]
    h[last_name]["data_offsets"] = [a + 64, b + 64]
    (d / "model.safetensors").write_bytes(st_pack(h, data))

    def nbytes(t):
        return t["data_offsets"][1] - t["data_offsets"][0]
    i = next(i for i in range(len(tensors) - 1)
             if nbytes(tensors[i][1]) >= 64 and nbytes(tensors[i + 1][1]) >= 64)
    (n1, t1), (n2, t2) = tensors[i], tensors[i + 1]
    d = case("overlapping", f"{n2} starts inside {n1} (same size, ranges overlap; buffer shrunk so "
             "every byte is still covered)", n2)
    h = copy.deepcopy(header)
    shift = 16
    new_data = bytearray()
    for k, v in tensors:
        a, b = v["data_offsets"]
        if a >= t2["data_offsets"][0]:
            h[k]["data_offsets"] = [a - shift, b - shift]
    a2 = t2["data_offsets"][0]
    new_data = data[:a2 - shift] + data[a2:]
    (d / "model.safetensors").write_bytes(st_pack(h, bytes(new_data)))

    d = case("gap", f"64 bytes between {n1} and {n2} that no tensor covers", n2)
    h = copy.deepcopy(header)
    for k, v in tensors:
        a, b = v["data_offsets"]
        if a >= a2:
            h[k]["data_offsets"] = [a + 64, b + 64]
    new_data = data[:a2] + bytes(64) + data[a2:]
    (d / "model.safetensors").write_bytes(st_pack(h, new_data))

    # Sharded variants: split tiny into 3 shards + index.
    def shard_dir(d: Path, names_per_shard):
        (d / "model.safetensors").unlink()
        wm = {}
        n = len(names_per_shard)
        total = 0
        for i, names in enumerate(names_per_shard):
            fn = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            keep = set(names)
            blob = st_rebuild(header, data, drop=[k for k, _ in tensors if k not in keep])
            (d / fn).write_bytes(blob)
            for k in names:
                wm[k] = fn
                v = header[k]
                total += v["data_offsets"][1] - v["data_offsets"][0]
        write_json(d / "model.safetensors.index.json",
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))})
        return wm

    all_names = sorted(k for k, _ in tensors)
    thirds = [all_names[i::3] for i in range(3)]

    d = case("missing_shard", "sharded checkpoint; index names model-00002-of-00003.safetensors "
             "which is absent", "model-00002-of-00003.safetensors")
    shard_dir(d, thirds)
    (d / "model-00002-of-00003.safetensors").unlink()

    victim = thirds[0][0]
    d = case("index_tensor_not_in_shard", f"index maps {victim} to model-00002-of-00003.safetensors "
             "but that shard does not contain it (it is in shard 1)", victim)
    wm = shard_dir(d, thirds)
    wm[victim] = "model-00002-of-00003.safetensors"
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    idx["weight_map"] = dict(sorted(wm.items()))
    write_json(d / "model.safetensors.index.json", idx)

    cfg = json.loads((tiny / "config.json").read_text())

    d = case("config_missing_field", "config.json lacks num_hidden_layers", "num_hidden_layers")
    c = dict(cfg)
    del c["num_hidden_layers"]
    write_json(d / "config.json", c)

    d = case("config_invalid_json", "config.json is truncated mid-object (invalid JSON)", "config.json")
    txt = (tiny / "config.json").read_text()
    (d / "config.json").write_text(txt[: len(txt) // 2])

    d = case("unknown_model_type", "config.json model_type is \"gpt2\" (not a supported MoE)", "gpt2")
    c = dict(cfg, model_type="gpt2", architectures=["GPT2LMHeadModel"])
    write_json(d / "config.json", c)

    d = case("shape_mismatch_config", f"{E1_W2} has shape [hidden, intermediate+1]: disagrees with "
             "config intermediate_size", E1_W2)
    sh = header[E1_W2]["shape"]
    bad_shape = [sh[0], sh[1] + 1]
    dt = header[E1_W2]["dtype"]
    blob = bytes(numel(bad_shape) * DTYPE_SIZE[dt])
    # keep original values and zero-pad the new column (content is irrelevant)
    (d / "model.safetensors").write_bytes(
        st_rebuild(header, data, drop=[E1_W2], add={E1_W2: (dt, bad_shape, blob)}))

    d = case("missing_tensor", f"{E1_W2} removed from model.safetensors", E1_W2)
    (d / "model.safetensors").write_bytes(st_rebuild(header, data, drop=[E1_W2]))

    extra = "model.layers.0.block_sparse_moe.experts.0.w4.weight"
    d = case("unexpected_tensor", f"extra tensor {extra} that no architecture expects", extra)
    sh = header[E0_W1]["shape"]
    blob = bytes(numel(sh) * DTYPE_SIZE[header[E0_W1]["dtype"]])
    (d / "model.safetensors").write_bytes(
        st_rebuild(header, data, add={extra: (header[E0_W1]["dtype"], sh, blob)}))

    d = case("empty_file", "model.safetensors is 0 bytes", "model.safetensors")
    (d / "model.safetensors").write_bytes(b"")

    write_json(root / "CASES.json", dict(sorted(cases.items())))
    return cases


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------
README = """# moekit test fixtures (generated; do not edit by hand)

Written by `scripts/make_fixtures.py` (seed 0) with torch 2.15.0, transformers 5.24.0,
tokenizers 0.23.3, safetensors 0.8.0. Regenerate with `python scripts/make_fixtures.py`;
verify with `python scripts/make_fixtures.py --check` (sha256 of every file vs MANIFEST.json).

- `mixtral/ qwen2_moe/ qwen3_moe/ olmoe/ deepseek_v2/ deepseek_v3/`: tiny random checkpoints
  saved by transformers' `save_pretrained` (per-expert tensor names), with trained tokenizers.
  `expected.json` holds oracle facts computed from the transformers model object: MoE layer
  indices, expert counts, parameter counts (total / per expert / active / per category) and
  every saved tensor's name, shape, dtype (and shard file).
- `mixtral_hf4/`: the mixtral weights and tokenizer.json with config.json, tokenizer_config.json,
  special_tokens_map.json and generation_config.json in transformers-4.x / hub spelling
  (`rope_theta` top level, `torch_dtype`, no `head_dim`, `LlamaTokenizer`).
- `tiny/`: 2-layer, 4-expert, hidden-8 bf16 mixtral; base of `broken/`.
- `broken/<case>/`: tiny with exactly one defect; `broken/CASES.json` gives each case's
  description (`what`) and a substring the error message must contain (`expect`).

Norm weights, biases and DeepSeek-V3's e_score_correction_bias are randomly perturbed away from
their constant init (so a forgotten norm/bias is detectable); initializer_range = 0.15.
"""


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def manifest(out: Path) -> dict:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    return {p.relative_to(out).as_posix(): sha256(p) for p in files}


def generate(out: Path, seed: int) -> None:
    import torch

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    for name in MAIN_ARCHES + ["tiny"]:
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        model, tok = build_model(name, MODELS[name], seed, d)
        facts = expected_facts(name, model, tok, d)
        write_json(d / "expected.json", facts)
        print(f"[make_fixtures] {name}: {facts['total_params']} params, "
              f"{facts['n_tensors']} tensors, moe layers {facts['moe_layers']}", file=sys.stderr)
        if name == "mixtral":
            d4 = out / "mixtral_hf4"
            if d4.exists():
                shutil.rmtree(d4)
            shutil.copytree(d, d4, ignore=shutil.ignore_patterns("config.json"))
            write_json(d4 / "config.json", hf4_config(json.loads((d / "config.json").read_text())))
            write_hf4_tokenizer_files(d4, json.loads((d / "generation_config.json").read_text()))
    (out / "README.md").write_text(README, encoding="utf-8")
    broken = out / "broken"
    if broken.exists():
        shutil.rmtree(broken)
    make_broken(out / "tiny", broken)
    for p in out.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # save_pretrained writes shards 0600
    write_json(out / "MANIFEST.json", manifest(out))


def main(argv=None) -> int:
    root = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=root / "tests" / "fixtures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temp dir and compare sha256 with --out's MANIFEST.json")
    args = ap.parse_args(argv)

    if not args.check:
        generate(args.out, args.seed)
        print(f"[make_fixtures] wrote {args.out}", file=sys.stderr)
        return 0

    committed_manifest = args.out / "MANIFEST.json"
    if not committed_manifest.exists():
        print(f"[make_fixtures] {committed_manifest} not found", file=sys.stderr)
        return 1
    want = json.loads(committed_manifest.read_text())
    have_disk = manifest(args.out)
    with tempfile.TemporaryDirectory(prefix="moekit-fixtures-") as tmp:
        generate(Path(tmp), args.seed)
        got = json.loads((Path(tmp) / "MANIFEST.json").read_text())
    bad = 0
    for k in sorted(set(want) | set(got) | set(have_disk)):
        w, g, h = want.get(k), got.get(k), have_disk.get(k)
        if w != g:
            print(f"MISMATCH {k}: manifest {w} regenerated {g}")
            bad += 1
        if h != w:
            print(f"ON-DISK  {k}: manifest {w} on disk {h}")
            bad += 1
    print(f"[make_fixtures] {len(got)} files regenerated, {bad} difference(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
