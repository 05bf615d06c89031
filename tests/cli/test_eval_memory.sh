#!/usr/bin/env bash
# Peak RSS of `moekit eval` does not grow with depth: the bundled demo model (4 layers) and a copy
# with every decoder layer repeated 4 times (16 layers, same layer sizes, bytes copied) are
# evaluated on the same pre-tokenized ids; peak RSS (GNU time's %M, the child's ru_maxrss) of the
# 16-layer run must exceed the 4-layer run's by less than one layer's fp32 weights. Without the
# engine releasing the checkpoint's mapped pages after converting them (io::SafetensorsFile::
# release) the 12 extra layers' file pages would stay resident (~12 x 1.7 MB here).
# Usage: test_eval_memory.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
root=$tests/..
demo=$root/assets/demo-moe
python=${MOEKIT_PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [[ ! -x /usr/bin/time ]]; then echo "SKIP: /usr/bin/time (GNU time) not installed"; exit 0; fi

# Writes $tmp/deep (layers repeated 4x) and $tmp/ids.bin; prints one layer's fp32 bytes.
layer_bytes=$("$python" - "$demo" "$tmp" <<'EOF'
import json, os, re, shutil, struct, sys
src, tmp = sys.argv[1], sys.argv[2]
reps = 4
cfg = json.load(open(os.path.join(src, "config.json")))
n = cfg["num_hidden_layers"]
raw = open(os.path.join(src, "model.safetensors"), "rb").read()
hlen = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + hlen])
data = raw[8 + hlen:]
meta = header.pop("__metadata__", None)
out, blobs, off, layer0 = {}, [], 0, 0
elem = {"F32": 4, "BF16": 2, "F16": 2}
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    b, e = info["data_offsets"]
    m = re.match(r"model\.layers\.(\d+)\.(.*)", name)
    names = [name] if not m else [f"model.layers.{int(m.group(1)) + r * n}.{m.group(2)}" for r in range(reps)]
    if m and m.group(1) == "0":
        layer0 += (e - b) // elem[info["dtype"]] * 4
    for nm in names:
        out[nm] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [off, off + e - b]}
        blobs.append(data[b:e])
        off += e - b
if meta is not None:
    out = {"__metadata__": meta, **out}
hdr = json.dumps(out, separators=(",", ":")).encode()
hdr += b" " * (-len(hdr) % 8)
deep = os.path.join(tmp, "deep")
os.makedirs(deep)
with open(os.path.join(deep, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr)
    for blob in blobs:
        f.write(blob)
cfg["num_hidden_layers"] = n * reps
json.dump(cfg, open(os.path.join(deep, "config.json"), "w"), indent=2)
for extra in ("tokenizer.json", "tokenizer_config.json"):
    if os.path.exists(os.path.join(src, extra)):
        shutil.copy(os.path.join(src, extra), deep)
ids = [(i * 7919 + 13) % cfg["vocab_size"] for i in range(2048)]
open(os.path.join(tmp, "ids.bin"), "wb").write(struct.pack(f"<{len(ids)}i", *ids))
print(layer0)
EOF
) || { echo "FAIL: could not build the deep checkpoint"; exit 1; }

peak_kb() {  # peak RSS in KiB of `moekit eval $1`
  /usr/bin/time -f %M -o "$tmp/rss" "$moekit" eval "$1" --data "$tmp/ids.bin" --seq-len 128 --threads 2 \
    >/dev/null 2>"$tmp/err" || { echo "FAIL: moekit eval $1: $(cat "$tmp/err")" >&2; echo -1; return; }
  tail -1 "$tmp/rss"
}
shallow=$(peak_kb "$demo")
deep=$(peak_kb "$tmp/deep")
if [[ $shallow -le 0 || $deep -le 0 ]]; then echo "FAIL: eval did not run"; exit 1; fi
growth=$(( (deep - shallow) * 1024 ))
echo "peak RSS: 4 layers ${shallow} KiB, 16 layers ${deep} KiB, growth ${growth} B; one layer fp32 ${layer_bytes} B"
if (( growth >= layer_bytes )); then
  echo "FAIL: peak RSS grew by ${growth} B with 12 more layers (bound: one layer's fp32 weights, ${layer_bytes} B)"
  exit 1
fi
echo "PASS"
