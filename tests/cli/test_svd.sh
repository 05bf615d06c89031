#!/usr/bin/env bash
# End-to-end tests of `moekit svd` on the bundled demo model: bad input exits 1 with a clear
# message and leaves no output directory (nor a temporary sibling) behind; an existing output
# needs --force; --dry-run writes nothing; a dense and a factored svd-llm checkpoint are written,
# `moekit inspect` survives both, `moekit eval` runs both and gives the same perplexity (the
# factored one through the engine's two-GEMM path, with less peak weight memory).
# Usage: test_svd.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
root=$tests/..
demo=$root/assets/demo-moe
calib=$root/assets/corpus/train/en.txt
eval_en=$root/assets/corpus/eval/en.txt
python=${MOEKIT_PYTHON:-python3}
source "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/work/out
mkdir -p "$tmp/work"
: >"$tmp/empty.txt"

base=(svd "$demo" --calib "$calib" --max-tokens 1024)

# help and arguments
expect 0 "svd-llm" -- svd --help
expect 0 "svd" -- --help
expect 1 "--ratio" -- svd "$demo" --calib "$calib" -o "$out"
nothing_left "missing arguments"

# bad input: exit 1, clear message, no output directory
refused 1 "--ratio must be in (0, 1)" -- "${base[@]}" --ratio 1.0 -o "$out"
refused 1 "--ratio must be in (0, 1)" -- "${base[@]}" --ratio 0 -o "$out"
refused 1 "--ratio must be in (0, 1)" -- "${base[@]}" --ratio=-0.5 -o "$out"
refused 1 "--ratio" -- "${base[@]}" --ratio abc -o "$out"
refused 1 "unknown method 'lora'" -- "${base[@]}" --ratio 0.5 --method lora -o "$out"
refused 1 "unknown --format 'gguf'" -- "${base[@]}" --ratio 0.5 --format gguf -o "$out"
refused 1 "too small for d2-moe" -- "${base[@]}" --ratio 0.05 --method d2-moe -o "$out"
refused 1 "no calibration data" -- svd "$demo" --ratio 0.5 -o "$out"
refused 1 "missing.txt' does not exist" -- svd "$demo" --calib "$tmp/missing.txt" --ratio 0.5 -o "$out"
refused 1 "empty.txt': is empty" -- svd "$demo" --calib "$tmp/empty.txt" --ratio 0.5 -o "$out"
refused 1 "no output directory" -- "${base[@]}" --ratio 0.5
refused 1 "outside the input" -- "${base[@]}" --ratio 0.5 -o "$demo/svd"
refused 1 "does not exist" -- svd "$tmp/no-such-model" --calib "$calib" --ratio 0.5 -o "$out"
res=$("$moekit" svd "$demo" --calib "$tmp/empty.txt" --ratio 0.5 -o "$out" --json 2>/dev/null)
checks=$((checks + 1))
if ! "$python" -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] is False and "empty" in d["error"]["message"]' <<<"$res"; then
  fail "svd --json error is not a JSON error document: ${res:0:300}"
fi
nothing_left "json error"

# dry run: report, nothing written
expect 0 "Dry run: nothing written" -- "${base[@]}" --ratio 0.5 --dry-run -o "$out"
nothing_left "--dry-run"
json_check 'd["ok"] and d["dry_run"] and d["output"] is None and d["result"]["rank"] == {"gate": 32, "up": 32, "down": 32} and len(d["layers"]) == 4' \
  -- "${base[@]}" --ratio 0.5 --dry-run
json_check 'd["result"]["rank"]["gate"] == 28 and len(d["layers"][0]["alpha"]) == 16 and abs(sum(d["layers"][0]["alpha"]) - 1) < 1e-9' \
  -- "${base[@]}" --ratio 0.5 --method d2-moe --dry-run
json_check 'd["params"]["method"] == "svd" and d["result"]["calib_tokens"] == 0' -- svd "$demo" --ratio 0.5 --method svd --dry-run

# dense and factored checkpoints
expect 0 "Wrote" -- "${base[@]}" --ratio 0.5 -o "$out"
checks=$((checks + 1))
for f in config.json model.safetensors moekit.json README.md tokenizer.json tokenizer_config.json generation_config.json; do
  [[ -f $out/$f ]] || fail "svd output lacks $f"
done
cmp -s "$demo/config.json" "$out/config.json" || fail "dense output changed config.json"
expect 0 "Wrote" -- "${base[@]}" --ratio 0.5 --format factored -o "$tmp/work/fact"
[[ $(ls -A "$tmp/work" | tr '\n' ' ') == "fact out " ]] || fail "temporary directory left next to the outputs: $(ls -A "$tmp/work")"
"$python" - "$demo" "$out" "$tmp/work/fact" <<'EOF' || fail "svd outputs: config/tensor check"
import json, os, sys
src, dense, fact = sys.argv[1:]
c = json.load(open(f"{fact}/config.json"))
assert c["moekit_lowrank"]["format"] == "factored" and c["moekit_lowrank"]["base"] is False, c
m = json.load(open(f"{fact}/moekit.json"))
assert m["params"]["format"] == "factored" and m["result"]["transformers_loadable"] is False
assert os.path.getsize(f"{fact}/model.safetensors") < os.path.getsize(f"{dense}/model.safetensors")
assert "lowrank_a" in open(f"{fact}/model.safetensors", "rb").read(200000).decode("latin1")
EOF
checks=$((checks + 1))
expect 0 "" -- inspect "$out"
# inspect names the factored tensors as unexpected but must not crash (exit 0 or 1, never 2+)
"$moekit" inspect "$tmp/work/fact" >/dev/null 2>&1; rc=$?
checks=$((checks + 1))
[[ $rc -le 1 ]] || fail "inspect on a factored checkpoint -> exit $rc"
ppl_dense=$("$moekit" eval "$out" --data "$eval_en" --max-tokens 512 --json 2>/dev/null | "$python" -c 'import json,sys; print(json.load(sys.stdin)["total"]["ppl"])')
ppl_fact=$("$moekit" eval "$tmp/work/fact" --data "$eval_en" --max-tokens 512 --json 2>/dev/null | "$python" -c 'import json,sys; print(json.load(sys.stdin)["total"]["ppl"])')
checks=$((checks + 1))
"$python" -c "import sys; a,b=float('$ppl_dense'),float('$ppl_fact'); sys.exit(0 if abs(a-b) <= 0.01*a else 1)" \
  || fail "factored ppl $ppl_fact != dense ppl $ppl_dense (bf16 rounding allows 1%)"

# an existing output is refused without --force, replaced with it
before=$(cat "$out/moekit.json")
expect 1 "--force" -- "${base[@]}" --ratio 0.75 -o "$out"
checks=$((checks + 1))
[[ $(cat "$out/moekit.json") == "$before" ]] || fail "refused run changed the existing output"
expect 0 "Wrote" -- "${base[@]}" --ratio 0.75 --method d2-moe --format factored -o "$out" --force
checks=$((checks + 1))
grep -q '"method": "d2-moe"' "$out/moekit.json" || fail "--force did not replace the output"
expect 0 "ppl" -- eval "$out" --data "$eval_en" --max-tokens 256
# a factored checkpoint is not compressed again
expect 1 "already factored" -- svd "$out" --calib "$calib" --ratio 0.5 -o "$tmp/work/again"
checks=$((checks + 1))
[[ ! -e $tmp/work/again ]] || fail "refused svd of a factored checkpoint wrote $tmp/work/again"

finish
