#!/usr/bin/env python3
"""Golden data for moekit's tokenizer (tests/unit/test_io_tokenizer.cpp).

Builds small tokenizer.json files with the Hugging Face `tokenizers` library that reproduce the
*pipeline configuration* of real MoE checkpoint families (normalizers, pre-tokenizer regexes,
added tokens, post-processors, decoders), each with a tiny BPE vocab trained on an embedded
multilingual + code corpus; then records, for every tokenizer (plus any
tests/fixtures/*/tokenizer.json), the ids of `tests/golden/tokenizer/test_text.txt` encoded as a
whole and line by line, with and without special tokens, ids of generated "fuzz" strings, and
decode round trips. The C++ test must reproduce every id exactly.

Usage:  python scripts/make_tokenizer_golden.py            # (re)write tests/golden/tokenizer/
        python scripts/make_tokenizer_golden.py --bench    # tokens/s of `tokenizers` on test_text

Training with `tokenizers` is deterministic for a given corpus and version; the committed
tokenizer.json files and their goldens are generated together, so a regeneration with another
`tokenizers` version stays self-consistent even if merges differ.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "tokenizer"

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
DEEPSEEK3_PATTERNS = [
    r"\p{N}{1,3}",
    "[一-龥\u3040-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
# DeepSeek-LLM / early DeepSeek-MoE style: several Split regexes incl. a line-anchored \s+$.
DEEPSEEK_LLM_PATTERNS = [
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u1f7dᾀ-ᾴᾶ-ᾼ\u1fbeῂ-ῄῆ-ῌῐ-\u1fd3ῖ-\u1fdbῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u2126ℨ\u212a-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+",
    "\\s+$",
    "[一-龥ࠀ-一가-\ud7ff]+",
    "\\p{N}+",
]

CORPUS = """\
Mixture-of-experts models route every token to a few experts chosen by a learned router.
The router computes logits, keeps the top-k experts, and mixes their outputs with softmax weights.
Pruning removes experts that are rarely used; merging combines similar experts into one.
It's not hard: we're measuring how often each expert is selected, and they'll be compared later.
I've seen 8 experts, 64 experts, and even 256 experts with 2, 6 or 8 active per token.
Numbers like 1024, 4096, 32768 and 131072 appear in configs; learning rates like 3e-4 or 0.0001.
Der Router wählt für jedes Token die besten Experten aus. Größere Modelle brauchen mehr Speicher.
Les experts sont sélectionnés par un routeur appris ; l'équilibrage de charge est très important.
El modelo elige dos expertos por token. ¿Cuántos expertos hay? ¡Muchos más que antes!
Модель выбирает несколько экспертов для каждого токена. Это очень эффективно и быстро.
专家混合模型为每个词元选择少数专家。路由器学习如何分配计算。
専門家の混合モデルは、各トークンに対して少数の専門家を選びます。とても効率的です。
전문가 혼합 모델은 각 토큰마다 몇 명의 전문가를 선택합니다.
نموذج خليط الخبراء يختار عددا قليلا من الخبراء لكل رمز.
def route(hidden, router_weight, top_k=2):
    logits = hidden @ router_weight.T
    weights, experts = logits.softmax(dim=-1).topk(top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), experts

for layer in range(num_layers):
    for expert in range(num_experts):
        counts[layer][expert] += (selected == expert).sum().item()

int topk(const float *logits, int n, int k, int *out) {
    for (int i = 0; i < k; ++i) {
        int best = -1;
        for (int j = 0; j < n; ++j) {
            if (best < 0 || logits[j] > logits[best]) best = j;
        }
        out[i] = best;
    }
    return k;
}
{"model_type": "qwen2_moe", "num_experts": 60, "num_experts_per_tok": 4, "hidden_size": 2048}
Emoji and symbols 😀 👍 🎉 ✓ → ∑ € appear in web text too. Tabs\tand  double  spaces   matter.
"""

SPECIAL_STRINGS = [
    "<s>", "</s>", "<unk>", "[INST]", "[/INST]", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|eot_id|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "[MASK]",
    "<think>", "</think>", "<0x41>", "▁", "▁▁",
]


def corpus_lines() -> list[str]:
    lines = CORPUS.replace("\\t", "\t").splitlines()
    # Repeat with small variations so that frequent pairs dominate but merges stay varied.
    out = []
    for r in range(6):
        for i, line in enumerate(lines):
            out.append(line if (i + r) % 3 else line.lower())
    return out


def byte_level_trainer(vocab_size: int, special: list[str], **kw) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), **kw)


def added(content: str, special: bool, **kw) -> AddedToken:
    kw.setdefault("normalized", not special)
    return AddedToken(content, special=special, **kw)


# ---- the families ---------------------------------------------------------------------------

def build_gpt2_olmoe() -> Tokenizer:
    """GPT-2 / GPT-NeoX (OLMoE) byte-level BPE; NeoX-style whitespace-run added tokens; EOS suffix."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(900, ["<|endoftext|>", "<|padding|>"]))
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([added("|||IP_ADDRESS|||", True)])
    tok.add_tokens([added("  ", False), added("   ", False), added("    ", False), added("\t\t", False)])
    eos = tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(single="$A:0 <|endoftext|>:0", pair="$A:0 $B:1",
                                                       special_tokens=[("<|endoftext|>", eos)])
    return tok


def build_gpt2_prefix_space() -> Tokenizer:
    """RoBERTa-like: ByteLevel(add_prefix_space=True), RobertaProcessing, lstrip <mask>."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(700, ["<s>", "<pad>", "</s>", "<unk>"]))
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([added("[MASK]", True, lstrip=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok


def build_qwen2() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(1000, ["<|endoftext|>"]))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([added("<|im_start|>", True), added("<|im_end|>", True)])
    # Qwen3 adds <think> as non-special; a normalized=True token is matched after NFC.
    tok.add_tokens([added("<think>", False, normalized=False), added("</think>", False, normalized=False),
                    added("cre\u0302pes", False, normalized=True)])
    return tok


def build_llama3() -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(1200, specials))
    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    return tok


def build_deepseek_v3() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in DEEPSEEK3_PATTERNS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    specials = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(1100, specials))
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([added("<｜fim▁hole｜>", False, normalized=True), added("<think>", False, normalized=True)])
    bos = tok.token_to_id("<｜begin▁of▁sentence｜>")
    tok.post_processor = processors.TemplateProcessing(
        single="<｜begin▁of▁sentence｜> $A", pair="<｜begin▁of▁sentence｜> $A <｜begin▁of▁sentence｜>:1 $B:1",
        special_tokens=[("<｜begin▁of▁sentence｜>", bos)])
    return tok


def build_deepseek_llm() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(p), behavior="isolated", invert=False) for p in DEEPSEEK_LLM_PATTERNS]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(800, ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]))
    tok.decoder = decoders.ByteLevel()
    bos = tok.token_to_id("<｜begin▁of▁sentence｜>")
    tok.post_processor = processors.TemplateProcessing(single="<｜begin▁of▁sentence｜> $A", pair="$A $B:1",
                                                       special_tokens=[("<｜begin▁of▁sentence｜>", bos)])
    return tok


def with_byte_fallback_vocab(tok: Tokenizer, n_special: int) -> Tokenizer:
    """Llama-2/Mistral layout: specials, then <0x00>..<0xFF> in the model vocab, then the rest."""
    j = json.loads(tok.to_str())
    vocab = j["model"]["vocab"]
    ordered = sorted(vocab.items(), key=lambda kv: kv[1])
    new_vocab = {}
    for t, _ in ordered[:n_special]:
        new_vocab[t] = len(new_vocab)
    for b in range(256):
        new_vocab[f"<0x{b:02X}>"] = len(new_vocab)
    for t, _ in ordered[n_special:]:
        if t not in new_vocab:
            new_vocab[t] = len(new_vocab)
    j["model"]["vocab"] = new_vocab
    for a in j["added_tokens"]:
        a["id"] = new_vocab[a["content"]]
    if j.get("post_processor") and j["post_processor"].get("type") == "TemplateProcessing":
        for st in j["post_processor"]["special_tokens"].values():
            st["ids"] = [new_vocab[t] for t in st["tokens"]]
    return Tokenizer.from_str(json.dumps(j, ensure_ascii=False))


def sp_decoder() -> decoders.Decoder:
    return decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                              decoders.Strip(" ", 1, 0)])


def build_mistral_sp() -> Tokenizer:
    """Mistral/Mixtral/Llama-2 SentencePiece BPE as tokenizer.json (legacy Prepend+Replace)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = None
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=120,
                                  max_token_length=12, show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.decoder = sp_decoder()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok = with_byte_fallback_vocab(tok, 3)
    tok.add_special_tokens([added("[INST]", True), added("[/INST]", True)])
    return tok


def build_metaspace_first() -> Tokenizer:
    """Newer Llama/Mistral conversions: Metaspace pre-tokenizer with prepend_scheme "first"."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(vocab_size=650, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=110,
                                  max_token_length=12, show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False),
                                     decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok = with_byte_fallback_vocab(tok, 3)
    tok.add_special_tokens([added("[INST]", True), added("[/INST]", True)])
    return tok


def build_metaspace_split_unk() -> Tokenizer:
    """Metaspace(split=True, prepend "always") without byte fallback: <unk> fusing."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=70,
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


def build_misc_features() -> Tokenizer:
    """Less common components: NFKC+Lowercase+regex Replace, WhitespaceSplit/Digits/Punctuation,
    end_of_word_suffix, BPEDecoder, single_word/lstrip/rstrip and normalized added tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.Punctuation()])
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"], end_of_word_suffix="</w>",
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tok.add_special_tokens([added("[MASK]", True, lstrip=True, rstrip=True, normalized=True)])
    tok.add_tokens([added("the", False, single_word=True), added("text", False, single_word=True, rstrip=True)])
    tok.post_processor = processors.BertProcessing(("</s>", 2), ("<s>", 1))
    return tok


def build_misc_split() -> Tokenizer:
    """NFD+StripAccents+Strip, Split behaviors (merged_with_previous/next, contiguous, removed,
    invert), ByteLevel(add_prefix_space) after Split, continuing_subword_prefix, ignore_merges."""
    tok = Tokenizer(models.BPE(continuing_subword_prefix="##", ignore_merges=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\d+"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[.,;:!?]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\w+|\s+"), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False),
    ])
    tok.train_from_iterator(corpus_lines(), byte_level_trainer(700, ["<bos>", "<eos>"], continuing_subword_prefix="##"))
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>", pair="<bos> $A <eos> $B:1 <eos>:1",
                                                       special_tokens=[("<bos>", 0), ("<eos>", 1)])
    tok.add_special_tokens([added("<sep>", True, rstrip=True)])
    return tok


def build_gpt2_trunc() -> Tokenizer:
    """The GPT-2 family tokenizer with truncation + padding set in tokenizer.json."""
    tok = build_gpt2_olmoe()
    tok.enable_truncation(max_length=20, direction="left")
    tok.enable_padding(direction="right", pad_id=tok.token_to_id("<|padding|>"), pad_token="<|padding|>",
                       length=None, pad_to_multiple_of=8)
    return tok


def build_rare_metaspace() -> Tokenizer:
    """Metaspace "first" after Punctuation(merged_with_next)/Digits, Prepend+Replace normalizers
    (the prepended ▁ aligns with offset 0), normalized/non-normalized added tokens, a Metaspace +
    Fuse + Strip decoder sequence."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation(behavior="merged_with_next"),
                                                 pre_tokenizers.Digits(individual_digits=False),
                                                 pre_tokenizers.Metaspace(prepend_scheme="first", split=True)])
    tok.train_from_iterator(corpus_lines(), trainers.BpeTrainer(vocab_size=450, special_tokens=["<unk>", "<s>", "</s>"],
                                                                show_progress=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace("ab", ""), normalizers.Prepend("▁")])
    tok.decoder = decoders.Sequence([decoders.Metaspace(prepend_scheme="first"), decoders.Fuse(), decoders.Strip(" ", 0, 1)])
    tok.add_tokens([added("abc", False, normalized=True), added("▁the", False, normalized=False)])
    return tok


def build_rare_whitespace() -> Tokenizer:
    """Whitespace pre-tokenizer (regex-crate \\w), NFKD+Lowercase, regex Replace + Strip decoders,
    a single_word/lstrip/rstrip normalized added token, left padding to a fixed length."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus_lines(), trainers.BpeTrainer(vocab_size=450, special_tokens=["<unk>", "<s>", "</s>"],
                                                                show_progress=False))
    tok.decoder = decoders.Sequence([decoders.Replace(Regex("a+"), "A"), decoders.Strip("x", 2, 0)])
    tok.add_tokens([added("hello world", False, single_word=True, lstrip=True, rstrip=True, normalized=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    tok.enable_padding(direction="left", pad_id=0, pad_token="<unk>", length=64)
    return tok


FAMILIES = {
    "gpt2_olmoe": build_gpt2_olmoe,
    "gpt2_prefix_space": build_gpt2_prefix_space,
    "qwen2": build_qwen2,
    "llama3": build_llama3,
    "deepseek_v3": build_deepseek_v3,
    "deepseek_llm": build_deepseek_llm,
    "mistral_sp": build_mistral_sp,
    "metaspace_first": build_metaspace_first,
    "metaspace_split_unk": build_metaspace_split_unk,
    "misc_features": build_misc_features,
    "misc_split": build_misc_split,
    "gpt2_trunc": build_gpt2_trunc,
    "rare_metaspace": build_rare_metaspace,
    "rare_whitespace": build_rare_whitespace,
}

TOKENIZER_CONFIGS = {
    "gpt2_olmoe": {"bos_token": None, "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"},
    "qwen2": {"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "deepseek_v3": {"bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>"},
                    "eos_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>"},
                    "add_bos_token": True, "add_eos_token": False},
    "mistral_sp": {"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False},
}


def fuzz_texts(n: int = 100) -> list[str]:
    rng = random.Random(20240611)
    pools = [
        list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
        list("0123456789"), list(".,;:!?'\"-_()[]{}<>/\\|@#$%^&*+=~`"),
        [" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u180e", "\u2003", "\x0b", "\x0c"],
        ["'s", "'S", "'ll", "'LL", "'ve", "'re", "'d", "'m", "'t", "n't", "ſ"],
        list("中文字词日本語ひらがなカタカナ한국어"), list("Привет мир العربية ελληνικά"),
        ["😀", "👍🏽", "🇩🇪", "👨\u200d👩\u200d👧", "❤️", "\u0301", "\u0308", "e\u0301", "ﬁ", "Ａ", "１", "½", "²", "Ⅻ", "\u200b", "\ufeff"],
        ["123", "4567", "3.14", "1,000", "0x1F", "١٢٣", "٣"],
        SPECIAL_STRINGS,
        ["hello", "world", " the", " experts", "Größe", "crêpes", "cre\u0302pes", "Hello World", "text", "THE"],
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(k))
        out.append(s)
    out += ["", " ", "  ", "\n", "\n\n", "\t", "a", " a", "a ", "▁", "<s>", " <s> ", "<s><s>", "[MASK]", " [MASK] x",
            "x[MASK]y", "  [MASK]  ", "the other thEe", "text, text.", "<sep>  x"]
    return out


def golden_for(tok: Tokenizer, text: str, fuzz: list[str]) -> dict:
    lines = text.split("\n")
    vocab = tok.get_vocab(with_added_tokens=True)

    def enc(s: str, special: bool) -> list[int]:
        return tok.encode(s, add_special_tokens=special).ids

    def dec(ids: list[int], skip: bool = False):
        try:
            return tok.decode(ids, skip_special_tokens=skip)
        except BaseException:  # tokenizers panics (e.g. Strip decoder on an empty token): no golden
            return None

    def special_delta(plain: list[int], special: list[int]):
        """{"p": prefix, "s": suffix} when special == prefix + plain + suffix, else the full list."""
        for k in range(len(special) - len(plain) + 1):
            if special[k:k + len(plain)] == plain:
                return {"p": special[:k], "s": special[k + len(plain):]}
        return special

    whole_plain, whole_special = enc(text, False), enc(text, True)
    decode = dec(whole_special)
    decode_skip = dec(whole_special, True)
    fuzz_plain = [enc(s, False) for s in fuzz]
    g = {
        "vocab_size": max(vocab.values()) + 1,
        "whole": {
            "plain": whole_plain, "special": special_delta(whole_plain, whole_special),
            "decode": decode,
            # decode(skip_special_tokens=True); null when equal to "decode"
            "decode_skip": None if decode_skip == decode else decode_skip,
        },
        "lines_plain": [enc(l, False) for l in lines],
        "lines_decode": [dec(enc(l, False)) for l in lines],
        "fuzz_plain": fuzz_plain,
        "fuzz_special": [special_delta(p, enc(s, True)) for p, s in zip(fuzz_plain, fuzz)],
        "fuzz_decode": [dec(enc(s, True)) for s in fuzz],
    }
    if tok.truncation or tok.padding:  # otherwise with-special = prefix + plain + suffix (checked by fuzz)
        g["lines_special"] = [enc(l, True) for l in lines]
    return g


def dump(obj, path: Path) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", action="store_true", help="measure tokenizers' encode speed on test_text.txt")
    args = ap.parse_args()
    text = (OUT / "test_text.txt").read_bytes().decode("utf-8")  # keep the \r of the CRLF line
    fuzz = fuzz_texts()

    if args.bench:
        for name in FAMILIES:
            tok = Tokenizer.from_file(str(OUT / name / "tokenizer.json"))
            reps = 200
            n = len(tok.encode(text, add_special_tokens=False).ids)
            t0 = time.perf_counter()
            for _ in range(reps):
                tok.encode(text, add_special_tokens=False)
            dt = time.perf_counter() - t0
            print(f"{name:22s} {n:6d} tokens  {n * reps / dt / 1e6:7.3f} M tokens/s  ({len(text.encode()) * reps / dt / 1e6:.2f} MB/s)")
        return 0

    dump(fuzz, OUT / "fuzz_texts.json")
    index = []
    for name, build in FAMILIES.items():
        tok = build()
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        tok.save(str(d / "tokenizer.json"), pretty=False)
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))  # golden from the file as committed
        cfg = TOKENIZER_CONFIGS.get(name)
        if cfg is not None:
            dump(cfg, d / "tokenizer_config.json")
        elif (d / "tokenizer_config.json").exists():
            (d / "tokenizer_config.json").unlink()
        g = golden_for(tok, text, fuzz)
        g["tokenizer_dir"] = f"tests/golden/tokenizer/{name}"
        dump(g, OUT / f"{name}.golden.json")
        index.append(name)

    # Fixture tokenizers written by the fixture generator (deduplicated by content).
    seen = set()
    for tj in sorted((ROOT / "tests" / "fixtures").glob("*/tokenizer.json")):
        digest = hashlib.sha256(tj.read_bytes()).hexdigest()
        if digest in seen or tj.parent.name == "broken":
            continue
        seen.add(digest)
        tok = Tokenizer.from_file(str(tj))
        g = golden_for(tok, text, fuzz)
        g["tokenizer_dir"] = str(tj.parent.relative_to(ROOT))
        name = f"fixture_{tj.parent.name}"
        dump(g, OUT / f"{name}.golden.json")
        index.append(name)

    dump({"tokenizers_version": __import__("tokenizers").__version__, "goldens": index}, OUT / "index.json")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(index)} goldens to {OUT.relative_to(ROOT)} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
