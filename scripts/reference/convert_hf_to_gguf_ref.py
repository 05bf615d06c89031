#!/usr/bin/env python3
"""Runs llama.cpp's own convert_hf_to_gguf.py (from .deps/llama.cpp, which scripts/setup.sh
fetches) on a checkpoint, as the reference for the metadata and tensor shapes moekit's GGUF
writer must produce. The converter identifies a BPE pre-tokenizer by hashing how it tokenizes a
test string and refuses tokenizers it has no hash for (every tokenizer trained for moekit's
fixtures and demo model); this wrapper answers that one question the way moekit does (a
ByteLevel pre-tokenizer with the GPT-2 regex is "gpt2") and leaves everything else to the
converter.

Usage: convert_hf_to_gguf_ref.py MODEL_DIR OUT.gguf [--outtype f32|f16|bf16|q8_0] [--llama-cpp DIR]
"""
import argparse
import json
import os
import sys
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--outtype", default="f32")
    ap.add_argument("--llama-cpp", default=str(Path(__file__).resolve().parents[2] / ".deps" / "llama.cpp"))
    a = ap.parse_args()
    root = Path(a.llama_cpp)
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "gguf-py"))
    sys.argv = ["convert_hf_to_gguf.py", a.model, "--outtype", a.outtype, "--outfile", a.out]
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
            return "gpt2"
        raise NotImplementedError(f"reference wrapper: no pre-tokenizer name for {p}")

    base.TextModel.get_vocab_base_pre = pre
    conv.main()


if __name__ == "__main__":
    main()
