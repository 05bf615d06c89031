#!/usr/bin/env python3
"""Runs llama.cpp's own convert_hf_to_gguf.py (from .deps/llama.cpp, which scripts/setup.sh
fetches) on a checkpoint, as the reference for the metadata and tensor shapes moekit's GGUF
writer must produce. The converter identifies a BPE pre-tokenizer by hashing how it tokenizes a
test string and refuses tokenizers it has no hash for (every tokenizer trained for moekit's
fixtures and demo model); this wrapper answers that one question the way moekit does (a
ByteLevel pre-tokenizer with the GPT-2 regex is "gpt-2", the name the converter's own hash table
gives GPT-2 and the one llama.cpp's vocabulary loader accepts) and leaves everything else to the
converter.

Usage: convert_hf_to_gguf_ref.py MODEL_DIR OUT.gguf [MODEL_DIR OUT.gguf ...] [--outtype f32|f16|bf16|q8_0]
                                 [--llama-cpp DIR]
"""
import argparse
import json
import os
import sys
from pathlib import Path


DEFAULT_LLAMA_CPP = Path(__file__).resolve().parents[2] / ".deps" / "llama.cpp"


def convert(model, out, outtype="f32", llama_cpp=DEFAULT_LLAMA_CPP):
    """Runs the converter in this process (tests import torch once)."""
    root = Path(llama_cpp)
    for p in (str(root), str(root / "gguf-py")):
        if p not in sys.path:
            sys.path.insert(0, p)
    saved = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(model), "--outtype", outtype, "--outfile", str(out)]
    try:
        _run(root)
    finally:
        sys.argv = saved


def _run(root):
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", root / "convert_hf_to_gguf.py")
    conv = importlib.util.module_from_spec(spec)
    sys.modules["convert_hf_to_gguf"] = conv
    spec.loader.exec_module(conv)
    import conversion.base as base

    def pre(self, tokenizer):
        tj = json.loads((Path(self.dir_model) / "tokenizer.json").read_text())
        p = tj.get("pre_tokenizer") or {}
        if p.get("type") == "ByteLevel" and p.get("use_regex", True):
            return "gpt-2"
        raise NotImplementedError(f"reference wrapper: no pre-tokenizer name for {p}")

    base.TextModel.get_vocab_base_pre = pre
    conv.main()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+", help="MODEL_DIR OUT.gguf [MODEL_DIR OUT.gguf ...]")
    ap.add_argument("--outtype", default="f32")
    ap.add_argument("--llama-cpp", default=str(DEFAULT_LLAMA_CPP))
    a = ap.parse_args()
    if len(a.pairs) % 2:
        ap.error("give MODEL_DIR OUT.gguf pairs")
    for model, out in zip(a.pairs[0::2], a.pairs[1::2]):
        convert(model, out, a.outtype, a.llama_cpp)


if __name__ == "__main__":
    main()
