#!/usr/bin/env bash
# End-to-end tests of `moekit eval` on the bundled demo model: bad input exits 1 with a message
# naming what is wrong; good runs exit 0 and --json output parses with the promised fields.
# Usage: test_eval.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
root=$tests/..
demo=$root/assets/demo-moe
corpus=$root/assets/corpus/eval
python=${MOEKIT_PYTHON:-python3}
source "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# json_check ASSERTION -- ARGS...: runs moekit ARGS --json (exit 0 expected) and a Python assertion on d.
json_check() {
  local assertion=$1; shift 2
  local out rc
  out=$("$moekit" "$@" --json 2>"$tmp/stderr"); rc=$?
  checks=$((checks + 1))
  if [[ $rc -ne 0 ]]; then fail "moekit $* --json -> exit $rc: $(head -c 400 "$tmp/stderr")"; return; fi
  if ! "$python" -c "import json,math,sys; d=json.load(sys.stdin); assert $assertion, d" <<<"$out" >/dev/null 2>"$tmp/py"; then
    fail "moekit $* --json: assertion '$assertion' failed: $(tail -c 400 "$tmp/py")"
  fi
}

# fixtures for the error cases
: >"$tmp/empty.txt"
printf '\n  \n\n' >"$tmp/blank.txt"
printf '{"text": "fine"}\n{"text": broken}\n' >"$tmp/bad.jsonl"
printf '{"input_ids": [1, 2, 3]}\n{"ids": [4]}\n' >"$tmp/nofield.jsonl"
"$python" -c 'import sys; open(sys.argv[1], "wb").write((1).to_bytes(4, "little") + (99999).to_bytes(4, "little"))' "$tmp/oov.bin"
printf 'NOTNUMPY' >"$tmp/bad.npy"
mkdir -p "$tmp/small-vocab"
for f in "$demo"/*; do [[ $(basename "$f") == config.json ]] || ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/small-vocab/"; done
"$python" -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vocab_size"]=4000; json.dump(c, open(sys.argv[2], "w"))' \
  "$demo/config.json" "$tmp/small-vocab/config.json"
en=$corpus/en.txt

# help and argument errors
expect 0 "Perplexity" -- eval --help
expect 0 "eval" -- --help
expect 1 "--data" -- eval "$demo"
expect 1 "MODEL_DIR" -- eval --data "$en"
expect 1 "does not exist" -- eval "$tmp/no-such-model" --data "$en"
expect 1 "--ref" -- eval "$demo" --data "$en" --ref "$tmp/no-such-ref"
expect 1 "--seq-len must be at least 2" -- eval "$demo" --data "$en" --seq-len 1
expect 1 "--seq-len must be at least 2" -- eval "$demo" --data "$en" --seq-len -5
expect 1 "seq-len" -- eval "$demo" --data "$en" --seq-len abc
# --device cuda without a usable GPU is a user error that says why (every command shares the flag).
if "$moekit" --version | grep -q -e "no usable GPU" -e "not built"; then
  expect 1 "no GPU is usable" -- eval "$demo" --data "$en" --device cuda
  expect 1 "no GPU is usable" -- prune "$demo" --keep 0.5 --calib "$en" --dry-run --device cuda
fi
expect 1 "--max-tokens" -- eval "$demo" --data "$en" --max-tokens -1
expect 1 "format" -- eval "$demo" --data "$en" --format csv
expect 1 "" -- eval "$demo" --data "$en" --device tpu

# --data syntax
expect 1 "bad domain name" -- eval "$demo" --data "=$en"
expect 1 "bad domain name" -- eval "$demo" --data "e n=$en"
expect 1 "names no file" -- eval "$demo" --data "en="
expect 1 "empty entry" -- eval "$demo" --data "$en,,$en"
expect 1 "given twice" -- eval "$demo" --data "$en,$en"

# data files
expect 1 "missing.txt' does not exist" -- eval "$demo" --data "$tmp/missing.txt"
expect 1 "empty.txt': is empty" -- eval "$demo" --data "$tmp/empty.txt"
expect 1 "no documents" -- eval "$demo" --data "$tmp/blank.txt"
expect 1 "line 2: invalid JSON" -- eval "$demo" --data "$tmp/bad.jsonl"
expect 1 "line 2: missing field \"input_ids\"" -- eval "$demo" --data "$tmp/nofield.jsonl"
expect 1 "token id 99999 at position 1" -- eval "$demo" --data "$tmp/oov.bin"
expect 1 "bad.npy': bad .npy header" -- eval "$demo" --data "$tmp/bad.npy"
expect 1 "[data]" -- eval "$demo" --data "$tmp/empty.txt" --json

# reference with another vocabulary
expect 1 "vocabulary mismatch" -- eval "$demo" --data "$en" --max-tokens 300 --ref "$tmp/small-vocab"

# good runs
expect 0 "tokens/s" -- eval "$demo" --data "$en" --max-tokens 600
expect 0 "Routing agreement" -- eval "$demo" --data "en=$en" --max-tokens 300 --ref "$demo"
json_check 'd["schema_version"] == 1 and d["ok"] is True and d["params"]["seq_len"] == 256 and d["params"]["eos_id"] == 0 and d["domains"]["en"]["tokens"] == 600 and d["domains"]["en"]["windows"] == 3 and d["domains"]["en"]["scored"] == 597 and math.isfinite(d["total"]["ppl"]) and d["timing"]["tokens_per_s"] > 0' \
  -- eval "$demo" --data "en=$en,py=$corpus/code-py.txt" --max-tokens 600
json_check 'd["domains"]["en"]["scored"] == 599 and d["params"]["seq_len"] == 1024' \
  -- eval "$demo" --data "$en" --max-tokens 600 --seq-len 1024
json_check 'd["params"]["add_eos"] is False and d["params"]["eos_id"] is None' \
  -- eval "$demo" --data "$en" --max-tokens 300 --no-eos
json_check 'd["total"]["kl_mean"] <= 1e-6 and d["total"]["top1_agreement"] == 1 and all(l["agreement"] == 1 for l in d["total"]["routing_agreement"]["per_layer"])' \
  -- eval "$demo" --data "$en" --max-tokens 512 --ref "$demo"

# JSON error document on stdout for scripts
out=$("$moekit" eval "$demo" --data "$tmp/empty.txt" --json 2>/dev/null)
checks=$((checks + 1))
if ! "$python" -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] is False and "empty" in d["error"]["message"]' <<<"$out"; then
  fail "eval --json error is not a JSON error document: ${out:0:300}"
fi

finish
