#!/usr/bin/env python3
"""Independent oracle for tests/unit/test_io_safetensors.cpp: the Python `safetensors` package.

  read  FILE OUT_DIR   load FILE with safetensors (numpy for numpy dtypes, torch for the rest)
                       and dump each tensor as OUT_DIR/<name>.bin (raw little-endian bytes) and
                       OUT_DIR/<name>.meta ("DTYPE d0,d1,..."); also OUT_DIR/__metadata__.json
  write FILE OUT_DIR   write FILE with safetensors from known arrays and dump the same .bin/.meta
                       files plus OUT_DIR/<name>.f32 (values as float32, computed by numpy/torch)
Exit status 0 on success.
"""
import json
import os
import sys

import numpy as np

try:
    import torch
except ImportError:  # bf16 / fp8 parts need torch
    torch = None

NP_NAMES = {np.dtype("bool"): "BOOL", np.dtype("uint8"): "U8", np.dtype("int8"): "I8", np.dtype("int16"): "I16",
            np.dtype("uint16"): "U16", np.dtype("int32"): "I32", np.dtype("uint32"): "U32",
            np.dtype("int64"): "I64", np.dtype("uint64"): "U64", np.dtype("float16"): "F16",
            np.dtype("float32"): "F32", np.dtype("float64"): "F64"}


def torch_names():
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
             torch.bool: "BOOL"}
    for attr, name in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
                       ("uint32", "U32"), ("uint64", "U64")):
        if hasattr(torch, attr):
            names[getattr(torch, attr)] = name
    return names


def dump(out_dir, name, dtype_name, shape, raw, f32=None):
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(raw)
    with open(os.path.join(out_dir, name + ".meta"), "w") as f:
        f.write(dtype_name + " " + ",".join(str(d) for d in shape))
    if f32 is not None:
        np.asarray(f32, dtype="<f4").tofile(os.path.join(out_dir, name + ".f32"))


def torch_raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def read(path, out_dir):
    from safetensors import safe_open
    framework = "pt" if torch is not None else "np"
    if torch is None:
        header_len = int.from_bytes(open(path, "rb").read(8), "little")
        header = json.loads(open(path, "rb").read(8 + header_len)[8:])
        needs_torch = sorted({v["dtype"] for k, v in header.items() if k != "__metadata__"} - set(NP_NAMES.values()))
        if needs_torch:
            print(f"SKIPPED: dtypes {needs_torch} need torch (scripts/setup.sh --torch)", file=sys.stderr)
            sys.exit(77)
    with safe_open(path, framework=framework) as f:
        metadata = f.metadata() or {}
        for name in f.keys():
            t = f.get_tensor(name)
            if framework == "pt":
                dump(out_dir, name, torch_names()[t.dtype], list(t.shape), torch_raw(t))
            else:
                dump(out_dir, name, NP_NAMES[t.dtype], list(t.shape), np.ascontiguousarray(t).tobytes())
    with open(os.path.join(out_dir, "__metadata__.json"), "w") as f:
        json.dump(metadata, f)
    # Cross-check with the numpy loader for every numpy-representable dtype.
    if framework == "pt":
        import safetensors.numpy
        try:
            arrays = safetensors.numpy.load_file(path)
        except Exception:
            arrays = None  # contains bf16/fp8, which numpy cannot represent
        if arrays is not None:
            for name, a in arrays.items():
                with open(os.path.join(out_dir, name + ".bin"), "rb") as f:
                    assert f.read() == np.ascontiguousarray(a).tobytes(), name


def write(path, out_dir):
    rng = np.random.default_rng(7)
    arrays = {
        "a.f16": np.array([[0.0, -0.0, 1.5, 65504.0], [np.inf, -np.inf, 6e-8, -2.5]], dtype=np.float16),
        "b.i64": np.array([-(2**40), -1, 0, 7, 2**40], dtype=np.int64),
        "c.bool": np.array([True, False, True], dtype=np.bool_),
        "d.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "e.u8": np.arange(10, dtype=np.uint8),
        "f.i32.scalar": np.array(42, dtype=np.int32),
        "g.f64": np.array([1.0 / 3.0, 1e300], dtype=np.float64),
        "h.empty": np.zeros((0, 4), dtype=np.float32),
    }
    if torch is not None:
        import safetensors.torch
        tensors = {name: torch.from_numpy(a.copy()) for name, a in arrays.items()}
        tensors["i.bf16"] = torch.tensor([[1.0, -2.0, 3.140625], [1e-3, 65504.0, -1e30]], dtype=torch.bfloat16)
        if hasattr(torch, "float8_e4m3fn"):
            tensors["j.f8e4m3"] = torch.tensor([0.0, 1.0, -448.0, 0.015625, 3.5], dtype=torch.float32).to(torch.float8_e4m3fn)
            tensors["k.f8e5m2"] = torch.tensor([0.0, 1.0, -57344.0, 2.0**-16, 3.5], dtype=torch.float32).to(torch.float8_e5m2)
        safetensors.torch.save_file(tensors, path, metadata={"format": "pt", "source": "oracle"})
        for name, t in tensors.items():
            dump(out_dir, name, torch_names()[t.dtype], list(t.shape), torch_raw(t), t.float().numpy().ravel())
    else:
        import safetensors.numpy
        safetensors.numpy.save_file(arrays, path, metadata={"format": "pt", "source": "oracle"})
        for name, a in arrays.items():
            dump(out_dir, name, NP_NAMES[a.dtype], list(a.shape), a.tobytes(), a.astype(np.float32).ravel())


if __name__ == "__main__":
    mode, path, out_dir = sys.argv[1:4]
    {"read": read, "write": write}[mode](path, out_dir)
