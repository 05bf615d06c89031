#!/usr/bin/env bash
# End-to-end tests of `moekit prune` on the bundled demo model: bad input exits 1 with a clear
# message and leaves no output directory (nor a temporary sibling) behind; an existing output
# needs --force; --dry-run writes nothing; a real prune writes a checkpoint that `moekit inspect`
# accepts and `moekit eval --ref` evaluates against the original through moekit.json's expert_map.
# Usage: test_prune.sh MOEKIT TESTS_DIR
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

# nothing_left WHAT: the work directory (parent of every output) must still be empty.
# refused CODE SUBSTRING -- ARGS...: expect + nothing left behind.
# json_check ASSERTION -- ARGS...: runs moekit ARGS --json (exit 0 expected) and a Python assertion on d.
base=(prune "$demo" --calib "$calib" --max-tokens 2048)

# help and arguments
expect 0 "reap" -- prune --help
expect 0 "prune" -- --help
expect 1 "--keep" -- prune "$demo" --calib "$calib" -o "$out"
expect 1 "--calib" -- prune "$demo" --keep 0.5 -o "$out"
nothing_left "missing arguments"

# bad input: exit 1, clear message, no output directory
refused 1 "nothing would be pruned" -- "${base[@]}" --keep 16 -o "$out"
refused 1 "nothing would be pruned" -- "${base[@]}" --keep 1.0 -o "$out"
refused 1 "nothing would be pruned" -- "${base[@]}" --keep 20 -o "$out"
refused 1 "fewer than the 2 experts every token uses" -- "${base[@]}" --keep 1 -o "$out"
refused 1 "fewer than the 2 experts every token uses" -- "${base[@]}" --keep 0.05 -o "$out"
refused 1 "--keep 'abc'" -- "${base[@]}" --keep abc -o "$out"
refused 1 "--keep '-3'" -- "${base[@]}" --keep -3 -o "$out"
refused 1 "unknown method 'magic'" -- "${base[@]}" --keep 0.5 --method magic -o "$out"
refused 1 "unknown --budget 'local'" -- "${base[@]}" --keep 0.5 --budget local -o "$out"
refused 1 "missing.txt' does not exist" -- prune "$demo" --calib "$tmp/missing.txt" --keep 0.5 -o "$out"
refused 1 "empty.txt': is empty" -- prune "$demo" --calib "$tmp/empty.txt" --keep 0.5 -o "$out"
refused 1 "no output directory" -- "${base[@]}" --keep 0.5
refused 1 "NAEE" -- "${base[@]}" --keep 0.5 --method naee --budget global -o "$out"
refused 1 "--min-keep" -- "${base[@]}" --keep 0.5 --budget global --min-keep 1 -o "$out"
refused 1 "outside the input" -- "${base[@]}" --keep 0.5 -o "$demo/pruned"
refused 1 "does not exist" -- prune "$tmp/no-such-model" --calib "$calib" --keep 0.5 -o "$out"
refused 1 "n_group = 2" -- prune "$tests/fixtures/deepseek_v3" --calib "$calib" --keep 5 -o "$out"
refused 1 "n_group = 2" -- prune "$tests/fixtures/deepseek_v3" --calib "$calib" --keep 2 -o "$out"
refused 1 "[data]" -- prune "$demo" --calib "$tmp/empty.txt" --keep 0.5 -o "$out" --json
# the JSON error document on stdout
res=$("$moekit" prune "$demo" --calib "$tmp/empty.txt" --keep 0.5 -o "$out" --json 2>/dev/null)
checks=$((checks + 1))
if ! "$python" -c 'import json,sys; d=json.load(sys.stdin); assert d["ok"] is False and "empty" in d["error"]["message"]' <<<"$res"; then
  fail "prune --json error is not a JSON error document: ${res:0:300}"
fi
nothing_left "json error"

# dry run: the plan, nothing written
expect 0 "Dry run: nothing written" -- "${base[@]}" --keep 0.5 --method frequency --dry-run -o "$out"
nothing_left "--dry-run"
json_check 'd["ok"] is True and d["dry_run"] is True and d["output"] is None and d["result"]["experts_kept"] == 32' \
  -- "${base[@]}" --keep 8 --method reap --dry-run
nothing_left "--dry-run --json"
# super experts: protected by default (layer 2 expert 5 of the demo model), not with the flag off
json_check 'd["params"]["protect_super_experts"] is True and [[e["layer"], e["expert"]] for e in d["super_experts"]["experts"]] == [[2, 5]] and d["layers"][2]["protected"] == [5] and 5 in d["layers"][2]["kept"]' \
  -- "${base[@]}" --keep 2 --method frequency --dry-run
json_check 'd["params"]["protect_super_experts"] is False and all(l["protected"] == [] for l in d["layers"])' \
  -- "${base[@]}" --keep 2 --method frequency --dry-run --no-protect-super-experts

# a real prune, then eval against the original
expect 0 "Wrote" -- "${base[@]}" --keep 0.5 --method reap -o "$out"
checks=$((checks + 1))
for f in config.json model.safetensors moekit.json README.md tokenizer.json tokenizer_config.json generation_config.json; do
  [[ -f $out/$f ]] || fail "pruned output lacks $f"
done
[[ $(ls -A "$tmp/work") == out ]] || fail "temporary directory left next to the output: $(ls -A "$tmp/work")"
expect 0 "ok" -- inspect "$out"
"$python" - "$demo" "$out" <<'EOF' || fail "pruned config/moekit.json check"
import json, sys
src, out = sys.argv[1], sys.argv[2]
a = json.load(open(f"{src}/config.json"))
b = json.load(open(f"{out}/config.json"))
assert list(a) == list(b), (list(a), list(b))
assert {k for k in a if a[k] != b[k]} == {"num_experts"}, [k for k in a if a[k] != b[k]]
assert b["num_experts"] == 8
m = json.load(open(f"{out}/moekit.json"))
assert m["schema_version"] == 1 and m["params"]["method"] == "reap" and m["params"]["keep"] == "0.5"
assert sorted(m["expert_map"]) == ["0", "1", "2", "3"]
for l in m["layers"]:
    assert len(l["scores"]) == 16 and len(l["kept"]) == 8 and len(l["removed"]) == 8
    assert m["expert_map"][str(l["layer"])] == l["kept"]
EOF
checks=$((checks + 1))
json_check 'd["ok"] is True and d["total"]["kl_mean"] > 0 and math.isfinite(d["total"]["ppl"]) and len(d["total"]["routing_agreement"]["per_layer"]) == 4' \
  -- eval "$out" --data "en=$eval_en" --max-tokens 1024 --ref "$demo"

# an existing output is refused without --force, replaced with it
before=$(cat "$out/moekit.json")
expect 1 "--force" -- "${base[@]}" --keep 0.5 --method frequency -o "$out"
checks=$((checks + 1))
[[ $(cat "$out/moekit.json") == "$before" ]] || fail "refused run changed the existing output"
expect 0 "Wrote" -- "${base[@]}" --keep 0.5 --method frequency -o "$out" --force
checks=$((checks + 1))
grep -q '"method": "frequency"' "$out/moekit.json" || fail "--force did not replace the output"
[[ $(ls -A "$tmp/work") == out ]] || fail "--force left something next to the output: $(ls -A "$tmp/work")"

# global budget: per-layer counts may differ; moekit still evaluates the result
json_check 'd["ok"] is True and d["result"]["experts_kept"] == 32 and d["params"]["budget"] == "global"' \
  -- "${base[@]}" --keep 0.5 --method ean --budget global -o "$tmp/work/global"
expect 0 "ppl" -- eval "$tmp/work/global" --data "$eval_en" --max-tokens 512

# every method runs (dry run, small calibration)
for m in frequency weighted-frequency ean reap tcess easy-ep naee random; do
  expect 0 "Dry run" -- prune "$demo" --calib "$calib" --max-tokens 512 --keep 12 --method "$m" --dry-run
done

finish
