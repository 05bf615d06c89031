#!/usr/bin/env bash
# End-to-end tests of `moekit quantize` on the bundled demo model: bad input (unsupported bits or
# type, gptq without or with empty calibration, gptq into GGUF, --format gptq, unsupported
# architecture, an existing output without --force) exits 1 with a clear message and leaves
# nothing behind; --dry-run writes nothing; a GGUF and an expert-aware GPTQ hf-fake checkpoint are
# written with their moekit.json (per-tensor SNR/max error, tokens seen per expert, starved
# experts explicit, no NaN), and `moekit eval --ref` evaluates the hf-fake output.
# Usage: test_quantize.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
root=$tests/..
demo=$root/assets/demo-moe
calib=$root/assets/corpus/train/en.txt
python=${MOEKIT_PYTHON:-python3}
source "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/work"
: >"$tmp/empty.txt"

g=$tmp/work/out.gguf
refused 1 "--bits 3 has no GGUF type" -- quantize "$demo" --bits 3 -o "$g"
refused 1 "--type 'q3_K' is not supported" -- quantize "$demo" --type q3_K -o "$g"
refused 1 "needs calibration data" -- quantize "$demo" --method gptq --format hf-fake -o "$tmp/work/o"
refused 1 "$tmp/empty.txt" -- quantize "$demo" --method gptq --format hf-fake --calib "$tmp/empty.txt" -o "$tmp/work/o"
refused 1 "not implemented yet" -- quantize "$demo" --method gptq --calib "$calib" -o "$g"
refused 1 "not implemented yet" -- quantize "$demo" --format gptq -o "$g"
refused 1 "--method gptq quantizes onto the integer grid" -- quantize "$demo" --method gptq --type q4_0 --format hf-fake --calib "$calib" -o "$tmp/work/o"
refused 1 "--calib is used by --method gptq only" -- quantize "$demo" --calib "$calib" -o "$g"
refused 1 "dense MLP layer" -- quantize "$tests/fixtures/qwen2_moe" -o "$g"
refused 1 "--bits must be 2..8" -- quantize "$demo" --format hf-fake --bits 9 -o "$tmp/work/o"
refused 1 "does not exist" -- quantize "$tmp/nope" -o "$g"
refused 1 "not a quantized ggml type" -- quantize "$demo" --mixed-precision --candidate-types q4_0,f16 --calib "$calib" --max-tokens 256 -o "$g"
refused 1 "below the smallest candidate" -- quantize "$demo" --format hf-fake --mixed-precision --avg-bits 1.5 --calib "$calib" --max-tokens 256 -o "$tmp/work/o"
refused 0 "dry run: nothing written" -- quantize "$demo" --type q4_0 --dry-run

# GGUF: written, fallbacks reported, an existing output needs --force.
expect 0 "fall back as llama-quantize does" -- quantize "$demo" --bits 4 -o "$g"
[[ -f $g && -f $tmp/work/out.moekit.json ]] || fail "GGUF or its moekit.json missing"
expect 1 "exists (use --force" -- quantize "$demo" --bits 4 -o "$g"
expect 0 "wrote" -- quantize "$demo" --bits 8 -o "$g" --force
# DeepSeek: llama.cpp's deepseek2 layout; MLA rows of 8/16 fall back to f16 and are reported.
expect 0 "kv_b_proj is split per head" -- quantize "$tests/fixtures/deepseek_v3" --bits 8 -o "$tmp/work/ds.gguf"
expect 0 "fall back as llama-quantize does" -- quantize "$tests/fixtures/deepseek_v2" --bits 8 -o "$tmp/work/ds.gguf" --force
"$python" - "$tmp/work/out.moekit.json" <<'PY' || fail "GGUF moekit.json content"
import json, sys
j = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in j["tensors"]}
assert j["schema_version"] == 1 and j["params"]["format"] == "gguf"
e = t["blk.0.ffn_gate_exps.weight"]
assert e["type"] == "q8_0" and e["snr_db"] > 30 and e["max_abs_error"] > 0, e
assert t["blk.0.ffn_gate_inp.weight"]["type"] == "f32"
PY
rm -rf "${tmp:?}/work/"*

# Expert-aware GPTQ (AGQ) into a fake-quantized checkpoint, then eval against the original.
o=$tmp/work/gptq
expect 0 "GPTQ (agq Hessian)" -- quantize "$demo" --method gptq --hessian agq --bits 4 --format hf-fake \
  --calib "$calib" --max-tokens 1024 --min-expert-tokens 32 -o "$o"
"$python" - "$o/moekit.json" <<'PY' || fail "GPTQ moekit.json content"
import json, math, sys
j = json.load(open(sys.argv[1]))
ex = j["gptq_experts"]
assert len(ex) == 4 * 16, len(ex)
assert sum(e["tokens"] for e in ex) == 2 * 4 * j["params"]["gptq"]["calib_tokens"], "top-2 tokens per layer"
for e in ex:
    assert e["starved"] == (e["tokens"] < 32), e
    assert all(math.isfinite(e[k]) for k in ("loss_gate", "loss_up", "loss_down"))
for t in j["tensors"]:
    assert isinstance(t["snr_db"], float) and math.isfinite(t["snr_db"]), t
PY
expect 0 "KL" -- eval "$o" --data "$calib" --ref "$demo" --max-tokens 512
rm -rf "${tmp:?}/work/"*

# Mixed precision at an average of 3 bits over {2,3,4}: the budget holds exactly.
o=$tmp/work/mp
expect 0 "routed experts average 3.000 bits" -- quantize "$demo" --format hf-fake --bits 3 --group-size 32 \
  --mixed-precision --avg-bits 3 --candidate-bits 2,3,4 --calib "$calib" --max-tokens 512 -o "$o"
"$python" - "$o/moekit.json" <<'PY' || fail "mixed-precision moekit.json content"
import json, sys
j = json.load(open(sys.argv[1]))
mp = j["mixed_precision"]
assert len(mp) == 64 and sum(p["bits"] for p in mp) <= 3 * 64 and j["expert_avg_bits"] <= 3.0
assert all(len(p["error"]) == 3 and p["error"][0] >= p["error"][2] for p in mp if p["tokens"] > 0)
PY
rm -rf "${tmp:?}/work/"*

# Mixed precision in GGUF: one type per layer-projection, real bits per weight within the budget,
# and gguf-py reads the tensors with the chosen types.
expect 0 "per layer-projection" -- quantize "$demo" --type q4_0 --mixed-precision --avg-bits 6 \
  --candidate-types q4_0,q5_0,q8_0 --calib "$calib" --max-tokens 512 -o "$g"
"$python" - "$g" "$tmp/work/out.moekit.json" <<'PY' || fail "GGUF mixed precision"
import json, sys
import gguf
j = json.load(open(sys.argv[2]))
mp = j["mixed_precision"]
assert len(mp) == 4 * 3 and j["expert_avg_bits"] <= 6.0 + 1e-9, j["expert_avg_bits"]
types = {t.name: t.tensor_type.name.lower() for t in gguf.GGUFReader(sys.argv[1]).tensors}
for p in mp:
    name = f"blk.{p['layer']}.ffn_{p['projection']}_exps.weight"
    assert types[name] == p["type"].lower(), (name, types[name], p["type"])
assert types["blk.0.attn_q.weight"] == "q4_0"
PY
finish
