#!/usr/bin/env python3
"""llama.cpp's `llama-perplexity` on moekit's GGUF files against `moekit eval` on the same
weights and the same token ids: does llama.cpp run what moekit wrote as the model moekit thinks
it wrote?

For each --types T (default f32,q8_0,q4_K) on the demo model (assets/demo-moe):
  * `moekit quantize MODEL --type T --format gguf -o T.gguf`, and for a quantized T also
    `--format hf-fake` (the same ggml blocks dequantized to f32, in the HF layout; the interop test
    tests/interop/test_quantize_gguf.py proves gguf-py dequantizes the GGUF to exactly these values).
    For f32 the original checkpoint is used (bf16, which f32 holds exactly).
  * `llama-perplexity -m T.gguf -f TEXT -c CTX -b CTX --chunks N -t THREADS --kl-divergence-base
    T.kld` (CPU build of .deps/llama.cpp). What it computes: it tokenizes the whole file once
    (llama.cpp's tokenizer, BOS first if the vocabulary adds one), cuts the ids into N chunks of CTX,
    replaces each chunk's first id by BOS when the vocabulary adds BOS, runs each chunk as one
    causal sequence and scores only its second half: positions first = CTX/2 .. CTX-2 predict the
    ids at first+1 .. CTX-1 (CTX-1-first tokens per chunk); PPL = exp(mean NLL over all chunks).
    The --kl-divergence-base file's header carries the token ids it used; they are read back here.
  * `moekit eval` on the same ids, as raw int32 files (used as given: no tokenizer, BOS or EOS
    added): chunks.bin (every chunk, --seq-len CTX) and prefix.bin (every chunk's first first+1
    ids, --seq-len first+1). moekit eval scores positions 0..n-2 of each window, and a causal
    model's logits on a prefix do not depend on what follows, so
        NLL(second half) = nll_sum(chunks) - nll_sum(prefixes),  count = N * (CTX-1-first)
    is exactly the quantity llama-perplexity reports. Also printed: moekit's PPL over all positions.
What remains different is llama.cpp's arithmetic: f16 K/V cache unless --kv-f32, and for
quantized weights its CPU dot products quantize the activations to Q8 blocks (moekit multiplies
dequantized weights with f32 activations), so quantized rows agree to a few parts in 10^3, f32
rows more tightly.

Usage: .venv/bin/python bench/compare_llama_perplexity.py [--moekit build/moekit]
       [--llama-perplexity PATH | --llama-build DIR] [--model assets/demo-moe]
       [--text assets/corpus/eval/en.txt] [--ctx 256] [--chunks 16] [--types f32,q8_0,q4_K]
       [--threads N] [--kv-f32] [--work DIR] [--out bench/results/llama_perplexity.json]
Prints a Markdown table; exit 1 if llama.cpp and moekit disagree by more than --tol (relative)
on any type (default 0.02: a wrong tensor layout or metadata key moves the PPL by far more).
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def build_llama_perplexity(build_dir, jobs):
    """CPU Release build of llama-perplexity from .deps/llama.cpp (scripts/setup.sh fetches it)."""
    src = ROOT / ".deps" / "llama.cpp"
    if not (src / "CMakeLists.txt").exists():
        sys.exit(f"{src} missing: run scripts/setup.sh (it fetches the llama.cpp sources)")
    subprocess.run(["cmake", "-S", str(src), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                    "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                    "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_CUDA=OFF"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", "llama-perplexity"], check=True)
    return Path(build_dir) / "bin" / "llama-perplexity"


def read_kld_header(path):
    """llama-perplexity --kl-divergence-base file: "_logits_", i32 n_ctx, i32 n_vocab, i32 n_chunk,
    then n_chunk * n_ctx i32 token ids (the ids before the per-chunk BOS substitution)."""
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic != b"_logits_":
            raise ValueError(f"{path}: not a llama-perplexity logits file")
        n_ctx, n_vocab, n_chunk = struct.unpack("<iii", f.read(12))
        ids = np.frombuffer(f.read(4 * n_ctx * n_chunk), dtype="<i4").copy()
    return n_ctx, n_vocab, n_chunk, ids


def gguf_add_bos(gguf_path):
    """(add_bos, bos_id) as llama.cpp's vocabulary sees them."""
    from gguf import GGUFReader
    r = GGUFReader(gguf_path)
    f = r.fields
    model = f["tokenizer.ggml.model"].contents()
    add = f["tokenizer.ggml.add_bos_token"].contents() if "tokenizer.ggml.add_bos_token" in f else None
    if add is None:
        add = model == "llama"  # llama-vocab.cpp: SentencePiece vocabularies add BOS by default, BPE ones do not
    bos = f["tokenizer.ggml.bos_token_id"].contents() if "tokenizer.ggml.bos_token_id" in f else None
    return bool(add) and bos is not None, bos


def run_llama(binary, gguf_path, text, ctx, chunks, threads, kld, kv_f32):
    cmd = [str(binary), "-m", str(gguf_path), "-f", str(text), "-c", str(ctx), "-b", str(ctx), "--chunks", str(chunks),
           "-t", str(threads), "--kl-divergence-base", str(kld)]
    if kv_f32:
        cmd += ["-ctk", "f32", "-ctv", "f32"]
    # This llama.cpp's asynchronous logger sometimes loses its last lines (the final chunk and
    # "Final estimate") at exit when writing to pipes: run again, up to 5 times, until it prints it.
    for attempt in range(5):
        t = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.time() - t
        log = p.stdout
        m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
        if p.returncode != 0 or m:
            break
    if p.returncode != 0 or not m:
        sys.exit(f"llama-perplexity failed on {gguf_path} (exit {p.returncode}):\n{log[-4000:]}")
    return float(m.group(1)), float(m.group(2)), wall, cmd


def moekit_eval(moekit, model, data, seq_len, threads):
    p = subprocess.run([moekit, "eval", str(model), "--data", str(data), "--format", "bin", "--seq-len", str(seq_len),
                        "--threads", str(threads), "--json"], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"moekit eval failed on {model}:\n{p.stderr[-3000:]}")
    total = json.loads(p.stdout)["total"]
    return total["nll_sum"], total["scored"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moekit", default=str(ROOT / "build" / "moekit"))
    ap.add_argument("--llama-perplexity", default=os.environ.get("MOEKIT_LLAMA_PERPLEXITY"),
                    help="prebuilt binary (default: $MOEKIT_LLAMA_PERPLEXITY, else build into --llama-build)")
    ap.add_argument("--llama-build", default=str(ROOT / "bench" / "out" / "llama-build"))
    ap.add_argument("--model", default=str(ROOT / "assets" / "demo-moe"))
    ap.add_argument("--text", default=str(ROOT / "assets" / "corpus" / "eval" / "en.txt"))
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=16)
    ap.add_argument("--types", default="f32,q8_0,q4_K")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--kv-f32", action="store_true", help="llama.cpp K/V cache in f32 (default: its f16 cache)")
    ap.add_argument("--tol", type=float, default=0.02)
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=None, help="JSON result (default: print only)")
    a = ap.parse_args()

    binary = Path(a.llama_perplexity) if a.llama_perplexity else Path(a.llama_build) / "bin" / "llama-perplexity"
    if not binary.exists():
        binary = build_llama_perplexity(a.llama_build, a.threads)
    work = Path(a.work or tempfile.mkdtemp(prefix="llama-ppl-"))
    work.mkdir(parents=True, exist_ok=True)
    first = a.ctx // 2

    rows = []
    ids_ref = None
    for t in a.types.split(","):
        name = Path(a.model).name
        g = work / f"{name}-{t}.gguf"
        subprocess.run([a.moekit, "quantize", a.model, "--type", t, "--format", "gguf", "-o", str(g), "--force"],
                       check=True, capture_output=True)
        if t == "f32":
            hf_model = Path(a.model)
        else:
            hf_model = work / f"{name}-{t}-fake"
            subprocess.run([a.moekit, "quantize", a.model, "--type", t, "--format", "hf-fake", "-o", str(hf_model),
                            "--force"], check=True, capture_output=True)
        kld = work / f"{name}-{t}.kld"
        ppl, err, wall, cmd = run_llama(binary, g, a.text, a.ctx, a.chunks, a.threads, kld, a.kv_f32)
        n_ctx, _, n_chunk, ids = read_kld_header(kld)
        kld.unlink()  # the logits themselves are not needed
        if n_ctx != a.ctx:
            sys.exit(f"llama-perplexity used n_ctx {n_ctx}, asked {a.ctx}")
        if ids_ref is None:
            ids_ref = ids
            add_bos, bos = gguf_add_bos(g)
            chunks = ids.reshape(n_chunk, n_ctx).copy()
            if add_bos:
                chunks[:, 0] = bos
            chunks.astype("<i4").tofile(work / "chunks.bin")
            np.ascontiguousarray(chunks[:, :first + 1]).astype("<i4").tofile(work / "prefix.bin")
        elif not np.array_equal(ids, ids_ref):
            sys.exit(f"{t}: llama.cpp tokenized differently from the first type")
        nll_full, scored_full = moekit_eval(a.moekit, hf_model, work / "chunks.bin", n_ctx, a.threads)
        nll_pre, scored_pre = moekit_eval(a.moekit, hf_model, work / "prefix.bin", first + 1, a.threads)
        count = scored_full - scored_pre
        if count != n_chunk * (n_ctx - 1 - first):
            sys.exit(f"scored token count {count} != {n_chunk} * {n_ctx - 1 - first}")
        ppl_moekit = math.exp((nll_full - nll_pre) / count)
        row = {"type": t, "llama_ppl": ppl, "llama_ppl_err": err, "moekit_ppl": ppl_moekit,
               "rel_diff": (ppl - ppl_moekit) / ppl_moekit, "moekit_ppl_all_positions": math.exp(nll_full / scored_full),
               "scored_tokens": count, "chunks": n_chunk, "llama_wall_s": wall}
        rows.append(row)
        print(json.dumps(row), flush=True)

    def rel(path):  # repository-relative where possible, so the record is machine-independent
        try:
            return str(Path(path).resolve().relative_to(ROOT))
        except ValueError:
            return str(path)

    result = {"schema_version": 1, "model": rel(a.model), "text": rel(a.text), "ctx": a.ctx, "chunks": rows[0]["chunks"],
              "scored_per_chunk": a.ctx - 1 - first, "bos_substituted": bool(add_bos), "kv_cache": "f32" if a.kv_f32 else "f16",
              "threads": a.threads,
              "llama_perplexity_cmd": " ".join(rel(c) if os.path.isabs(str(c)) else str(c) for c in cmd), "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['chunks']} chunks x {a.ctx} tokens, second half scored ({a.ctx - 1 - first} per chunk), "
          f"K/V cache {result['kv_cache']}")
    print("| type | llama-perplexity PPL | moekit eval PPL (same ids, same positions) | relative diff | moekit PPL, all positions |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['type']} | {r['llama_ppl']:.4f} ± {r['llama_ppl_err']:.4f} | {r['moekit_ppl']:.4f} | "
              f"{r['rel_diff']:+.2e} | {r['moekit_ppl_all_positions']:.4f} |")
    bad = [r["type"] for r in rows if abs(r["rel_diff"]) > a.tol]
    if bad:
        print(f"FAIL: llama.cpp and moekit differ by more than {a.tol} (relative) for {', '.join(bad)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
