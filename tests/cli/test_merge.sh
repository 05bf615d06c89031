#!/usr/bin/env bash
# End-to-end tests of `moekit merge` on the bundled demo model: bad input exits 1 with a clear
# message and leaves no output directory (nor a temporary sibling) behind; an existing output
# needs --force; --dry-run writes nothing; a real merge writes a checkpoint that `moekit inspect`
# accepts and `moekit eval --ref` evaluates against the original through moekit.json's
# expert_map (groups of originals per new expert); every method and router mode runs.
# Usage: test_merge.sh MOEKIT TESTS_DIR
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

base=(merge "$demo" --calib "$calib" --max-tokens 1024 --seq-len 128)

# help and arguments
expect 0 "hc-smoe" -- merge --help
expect 0 "merge" -- --help
expect 1 "--experts" -- merge "$demo" --calib "$calib" -o "$out"
expect 1 "--calib" -- merge "$demo" --experts 8 -o "$out"
nothing_left "missing arguments"

# bad input: exit 1, clear message, no output directory
refused 1 "nothing would be merged" -- "${base[@]}" --experts 16 -o "$out"
refused 1 "nothing would be merged" -- "${base[@]}" --experts 1.0 -o "$out"
refused 1 "fewer than the 2 experts every token uses" -- "${base[@]}" --experts 1 -o "$out"
refused 1 "--experts 'abc'" -- "${base[@]}" --experts abc -o "$out"
refused 1 "--experts '-3'" -- "${base[@]}" --experts -3 -o "$out"
refused 1 "unknown method 'magic'" -- "${base[@]}" --experts 8 --method magic -o "$out"
refused 1 "unknown --router 'median'" -- "${base[@]}" --experts 8 --router median -o "$out"
refused 1 "--svd-rank applies to --method sub-moe" -- "${base[@]}" --experts 8 --svd-rank 4 -o "$out"
refused 1 "missing.txt' does not exist" -- merge "$demo" --calib "$tmp/missing.txt" --experts 8 -o "$out"
refused 1 "empty.txt': is empty" -- merge "$demo" --calib "$tmp/empty.txt" --experts 8 -o "$out"
refused 1 "no output directory" -- "${base[@]}" --experts 8
refused 1 "outside the input" -- "${base[@]}" --experts 8 -o "$demo/merged"
refused 1 "does not exist" -- merge "$tmp/no-such-model" --calib "$calib" --experts 8 -o "$out"
refused 1 "n_group = 2" -- merge "$tests/fixtures/deepseek_v3" --calib "$calib" --experts 5 -o "$out"
refused 1 "n_group = 2" -- merge "$tests/fixtures/deepseek_v3" --calib "$calib" --experts 2 -o "$out"
refused 1 "[data]" -- merge "$demo" --calib "$tmp/empty.txt" --experts 8 -o "$out" --json

# dry run: groups, nothing written
expect 0 "Dry run: nothing written" -- "${base[@]}" --experts 8 --dry-run -o "$out"
nothing_left "--dry-run"
json_check 'd["ok"] is True and d["dry_run"] is True and d["output"] is None and all(len(l["groups"]) == 12 and sorted(sum(l["groups"], [])) == list(range(16)) for l in d["layers"])' \
  -- "${base[@]}" --experts 0.75 --method hc-smoe --sample-tokens 256 --dry-run

# a real merge, then eval against the original through expert_map
expect 0 "Wrote" -- "${base[@]}" --experts 8 -o "$out"
checks=$((checks + 1))
for f in config.json model.safetensors moekit.json README.md tokenizer.json tokenizer_config.json generation_config.json; do
  [[ -f $out/$f ]] || fail "merged output lacks $f"
done
[[ $(ls -A "$tmp/work") == out ]] || fail "temporary directory left next to the output: $(ls -A "$tmp/work")"
expect 0 "ok" -- inspect "$out"
"$python" - "$demo" "$out" <<'EOF' || fail "merged config/moekit.json check"
import json, sys
src, out = sys.argv[1], sys.argv[2]
a = json.load(open(f"{src}/config.json"))
b = json.load(open(f"{out}/config.json"))
assert list(a) == list(b), (list(a), list(b))
assert {k for k in a if a[k] != b[k]} == {"num_experts"}, [k for k in a if a[k] != b[k]]
assert b["num_experts"] == 8
m = json.load(open(f"{out}/moekit.json"))
assert m["schema_version"] == 1 and m["command"] == "merge" and m["params"]["method"] == "m-smoe"
assert sorted(m["expert_map"]) == ["0", "1", "2", "3"]
for l in m["layers"]:
    assert len(l["groups"]) == 8 and sorted(sum(l["groups"], [])) == list(range(16))
    assert m["expert_map"][str(l["layer"])] == l["groups"]
    assert all(abs(sum(w) - 1) < 1e-9 for w in l["weights"])
    assert 0 <= l["routing_agreement"]["overlap"] <= 1
EOF
checks=$((checks + 1))
json_check 'd["ok"] is True and d["total"]["kl_mean"] > 0 and math.isfinite(d["total"]["ppl"]) and len(d["total"]["routing_agreement"]["per_layer"]) == 4 and d["total"]["routing_agreement"]["mean"] > 0.3' \
  -- eval "$out" --data "en=$eval_en" --max-tokens 512 --ref "$demo"

# an existing output is refused without --force, replaced with it
before=$(cat "$out/moekit.json")
expect 1 "--force" -- "${base[@]}" --experts 8 --router mean -o "$out"
checks=$((checks + 1))
[[ $(cat "$out/moekit.json") == "$before" ]] || fail "refused run changed the existing output"
expect 0 "Wrote" -- "${base[@]}" --experts 8 --router mean -o "$out" --force
checks=$((checks + 1))
grep -q '"router": "mean"' "$out/moekit.json" || fail "--force did not replace the output"

# every method runs (dry run, small calibration)
for m in m-smoe hc-smoe sub-moe; do
  expect 0 "Dry run" -- merge "$demo" --calib "$calib" --max-tokens 256 --seq-len 128 --experts 12 --method "$m" --sample-tokens 128 --dry-run
done
# a rank-cut joint SVD merge (the only path that runs the SVD) writes a checkpoint moekit evaluates
expect 0 "Wrote" -- merge "$demo" --calib "$calib" --max-tokens 256 --seq-len 128 --experts 12 --method sub-moe --svd-rank 32 --no-align --sample-tokens 128 -o "$tmp/work/svd"
expect 0 "ppl" -- eval "$tmp/work/svd" --data "$eval_en" --max-tokens 256 --ref "$demo"

finish
