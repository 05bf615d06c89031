#!/usr/bin/env python3
"""I/O benchmarks for issue 'foundation' (numbers go in the README):

1. `moekit inspect` on a synthetic sharded Mixtral-8x7B-shaped checkpoint (~93 GB of bf16,
   written as sparse files: only the headers occupy disk), median of several runs.
2. Full-tensor read throughput: every tensor converted to fp32, moekit (bench_read) versus the
   `safetensors` Python package (numpy for F16 + astype(float32); torch + .float() for BF16
   when torch is installed), and the disk's sequential read bandwidth (dd, O_DIRECT) measured
   in the same run. Page cache is dropped before each cold read when the kernel allows it.

Usage: .venv/bin/python bench/bench_io.py [--build build] [--work DIR] [--read-gb 2]
Writes bench/results/io.json and prints a Markdown table.
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 32000,
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "num_experts_per_tok": 2, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 32768,
}


def mixtral_tensors(cfg):
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", [v, d])]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", [d, d]), (p + "self_attn.k_proj.weight", [kv, d]),
                (p + "self_attn.v_proj.weight", [kv, d]), (p + "self_attn.o_proj.weight", [d, d]),
                (p + "block_sparse_moe.gate.weight", [cfg["num_local_experts"], d])]
        for e in range(cfg["num_local_experts"]):
            q = p + f"block_sparse_moe.experts.{e}."
            out += [(q + "w1.weight", [f, d]), (q + "w2.weight", [d, f]), (q + "w3.weight", [f, d])]
        out += [(p + "input_layernorm.weight", [d]), (p + "post_attention_layernorm.weight", [d])]
    out += [("model.norm.weight", [d]), ("lm_head.weight", [v, d])]
    return out


def write_header_only(path, tensors, dtype, elem):
    """A valid safetensors file whose data section is a hole (sparse)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * elem
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        fh.truncate(8 + len(blob) + offset)
    return offset


def make_sparse_checkpoint(root, cfg, shard_bytes=5 * 10**9):
    os.makedirs(root, exist_ok=True)
    shards, cur, size = [], [], 0
    for name, shape in mixtral_tensors(cfg):
        n = int(np.prod(shape)) * 2
        if cur and size + n > shard_bytes:
            shards.append(cur); cur, size = [], 0
        cur.append((name, shape)); size += n
    shards.append(cur)
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_header_only(os.path.join(root, fname), tensors, "BF16", 2)
        weight_map.update({name: fname for name, _ in tensors})
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, fh)
    with open(os.path.join(root, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    return total, len(shards)


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def make_dense_checkpoint(root, dtype_name, total_bytes, rng):
    """Real bytes: 64 tensors of 4096 x N elements."""
    os.makedirs(root, exist_ok=True)
    n_tensors, rows = 64, 4096
    cols = max(1, total_bytes // (n_tensors * rows * 2))
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for t in range(n_tensors):
        n = rows * cols * 2
        header[f"t{t:03d}.weight"] = {"dtype": dtype_name, "shape": [rows, cols], "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = os.path.join(root, "model.safetensors")
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        chunk = rows * cols
        for _ in range(n_tensors):
            vals = rng.standard_normal(chunk, dtype=np.float32)
            if dtype_name == "F16":
                fh.write(vals.astype(np.float16).tobytes())
            else:  # bf16: truncate the fp32 bit pattern
                fh.write((vals.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    with open(os.path.join(root, "config.json"), "w") as fh:
        json.dump({"model_type": "none"}, fh)
    return path, offset


def timed(cmd, env=None):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - t0, out.stdout


PEER_F16 = """
import sys, time, numpy as np
from safetensors.numpy import load_file
t0 = time.perf_counter()
tensors = load_file(sys.argv[1])
total = 0
for k, v in tensors.items():
    total += v.astype(np.float32).nbytes
print(time.perf_counter() - t0)
"""
PEER_BF16 = """
import sys, time, torch
from safetensors.torch import load_file
t0 = time.perf_counter()
tensors = load_file(sys.argv[1])
for k, v in tensors.items():
    v.float()
print(time.perf_counter() - t0)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir on /tmp's disk)")
    ap.add_argument("--read-gb", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    moekit = os.path.join(args.build, "moekit")
    reader = os.path.join(args.build, "moekit_bench_read")
    work = args.work or tempfile.mkdtemp(prefix="moekit-bench-io-")
    results = {"machine": {"nproc": os.cpu_count()}, "inspect": {}, "read": []}
    try:
        # 1. inspect on a ~93 GB sparse sharded checkpoint
        big = os.path.join(work, "mixtral-8x7b-sparse")
        total, n_shards = make_sparse_checkpoint(big, MIXTRAL_8X7B)
        times = []
        for _ in range(args.runs):
            t, out = timed([moekit, "inspect", big, "--json"])
            times.append(t)
        report = json.loads(out)
        assert report["ok"], report["problems"][:3]
        results["inspect"] = {"tensor_bytes": total, "shards": n_shards, "params": report["params_count"]["total"],
                              "seconds_median": statistics.median(times), "seconds_all": times}
        print(f"inspect: {total / 1e9:.1f} GB in {n_shards} shards, {report['params_count']['total'] / 1e9:.2f} B params: "
              f"median {statistics.median(times) * 1000:.1f} ms over {args.runs} runs", flush=True)
        shutil.rmtree(big)

        # 2. read throughput
        rng = np.random.default_rng(0)
        cold = drop_caches()
        results["cache"] = "cold (page cache dropped before each read)" if cold else "warm (could not drop the page cache)"
        try:
            import torch  # noqa: F401
            have_torch = True
        except ImportError:
            have_torch = False
        for dtype_name, peer_src, peer_name in (("F16", PEER_F16, "safetensors+numpy astype(float32)"),
                                               ("BF16", PEER_BF16, "safetensors+torch .float()")):
            if dtype_name == "BF16" and not have_torch:
                print("SKIPPED: BF16 peer needs torch (scripts/setup.sh --torch)", flush=True)
                continue
            root = os.path.join(work, f"dense-{dtype_name}")
            path, nbytes = make_dense_checkpoint(root, dtype_name, int(args.read_gb * 1e9), rng)
            peer_file = os.path.join(work, "peer.py")
            with open(peer_file, "w") as fh:
                fh.write(peer_src)
            row = {"dtype": dtype_name, "bytes": nbytes, "peer": peer_name}
            drop_caches()
            dd = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=64M", "iflag=direct"], capture_output=True, text=True)
            line = [l for l in dd.stderr.splitlines() if "copied" in l]
            t_dd = float(line[-1].split(",")[-2].split()[0]) if line else float("nan")
            row["disk_gbps"] = os.path.getsize(path) / t_dd / 1e9
            best_m, best_p = [], []
            for _ in range(3):
                drop_caches()
                best_m.append(json.loads(timed([reader, root])[1])["seconds"])
                drop_caches()
                best_p.append(float(timed([sys.executable, peer_file, path])[1]))
            row["moekit_gbps"] = nbytes / min(best_m) / 1e9
            row["peer_gbps"] = nbytes / min(best_p) / 1e9
            row["ratio_vs_peer"] = row["moekit_gbps"] / row["peer_gbps"]
            row["fraction_of_disk"] = row["moekit_gbps"] / row["disk_gbps"]
            results["read"].append(row)
            print(f"read {dtype_name}: moekit {row['moekit_gbps']:.2f} GB/s, {peer_name} {row['peer_gbps']:.2f} GB/s "
                  f"(x{row['ratio_vs_peer']:.2f}), disk {row['disk_gbps']:.2f} GB/s "
                  f"({row['fraction_of_disk'] * 100:.0f}% of disk)", flush=True)
            shutil.rmtree(root)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs("bench/results", exist_ok=True)
    with open("bench/results/io.json", "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"\ncache state: {results.get('cache')}; results in bench/results/io.json")


if __name__ == "__main__":
    main()
