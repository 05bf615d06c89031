#!/usr/bin/env python3
"""Writes a random OLMoE checkpoint with transformers (OlmoeForCausalLM(config), seeded), shaped
like OLMoE-1B-7B scaled down, for benchmarks that need realistic MoE proportions without a
download: d_model 1024, 64 experts, top-8, expert intermediate 512, 16 heads, vocab 8192.

No tokenizer is written (vocab 8192 matches no bundled tokenizer): feed pre-tokenized ids, e.g.
`--ids OUT/ids.bin N` writes N random int32 ids (seeded) that `moekit eval --data ids.bin` reads.

Usage: .venv/bin/python scripts/make_synthetic_model.py OUT_DIR [--layers 2] [--d-model 1024]
       [--experts 64] [--top-k 8] [--ffn 512] [--heads 16] [--vocab 8192] [--dtype float32|bfloat16]
       [--seed 0] [--ids FILE N]
"""
import argparse
import os

import numpy as np
import torch
from transformers import OlmoeConfig, OlmoeForCausalLM


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=1024)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--max-pos", type=int, default=4096)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", nargs=2, metavar=("FILE", "N"), help="also write N random int32 token ids to FILE")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    cfg = OlmoeConfig(
        vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.heads,
        num_experts=args.experts, num_experts_per_tok=args.top_k, max_position_embeddings=args.max_pos,
        norm_topk_prob=False, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, bos_token_id=None,
        initializer_range=0.02,
    )
    model = OlmoeForCausalLM(cfg).to(getattr(torch, args.dtype))
    # Random init leaves norms at 1; perturb them a little so they are exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(args.out)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {n_params / 1e6:.1f}M parameters ({args.dtype})")

    if args.ids:
        path, n = args.ids[0], int(args.ids[1])
        rng = np.random.default_rng(args.seed)
        ids = rng.integers(0, args.vocab, size=n, dtype=np.int32)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        ids.astype("<i4").tofile(path)
        print(f"wrote {path}: {n} int32 ids")


if __name__ == "__main__":
    main()
