#!/usr/bin/env bash
# End-to-end tests of `moekit run` on the bundled demo model: a multi-step recipe (profile, prune,
# merge, quantize to GGUF and to hf-fake, eval with assertions) runs and writes summary.json /
# summary.md and every step's output; the steps that calibrate on the original model share one
# saved statistic; a failing assertion exits 3 and skips later steps; malformed recipes exit 1
# naming FILE:LINE and the key; --dry-run writes nothing; a re-run with --reuse-calibration runs
# no calibration forward pass (the summary says so) and gives byte-identical checkpoints and
# reports (timings aside), as does a plain re-run.
# Usage: test_run.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
root=$(cd "$tests/.." && pwd)
python=${MOEKIT_PYTHON:-python3}
source "$(dirname "$0")/lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/work"

# Recipes live in $tmp; their paths are relative to the recipe file, so use absolute ones.
cat >"$tmp/pipe.yaml" <<EOF
name: pipe
model: $root/assets/demo-moe
calib: {en: $root/assets/corpus/train/en.txt, code: $root/assets/corpus/train/code-py.txt}
data: $root/assets/corpus/eval/en.txt
corpus: {seq_len: 64, max_tokens: 512}
steps:
  - profile: {bootstrap_resamples: 0}
  - prune:
      method: reap
      keep: 0.75
  - prune:
      name: prune_freq
      input: model
      method: frequency
      keep: 0.5
  - merge: {input: prune, method: hc-smoe, experts: 8, sample_tokens: 256}
  - quantize: {type: q8_0}
  - quantize: {name: fake4, format: hf-fake, bits: 4, group_size: 32}
  - eval:
      name: final
      assert:
        - ppl_ratio <= 100
        - kl_mean >= 0
assert:
  - prune.calibration_forward_tokens >= 0
  - final.top1_agreement > 0
  - profile.srp_m16 > 0
  - merge.result.routing_agreement > 0.2
EOF

runs=$tmp/work/runs
json_check "d['ok'] and d['exit_code'] == 0 and [s['status'] for s in d['steps']] == ['ok'] * 7" -- run "$tmp/pipe.yaml" --runs-dir "$runs"
run_dir=$runs/pipe
for f in summary.json summary.md profile/profile.json prune/config.json prune_freq/moekit.json merge/model.safetensors \
         quantize.gguf fake4/config.json steps/final.json .moekit-run; do
  checks=$((checks + 1)); [[ -e $run_dir/$f ]] || fail "run left no $f"
done
checks=$((checks + 1))
grep -q "PASSED" "$run_dir/summary.md" || fail "summary.md does not say PASSED: $(head -5 "$run_dir/summary.md")"

# Calibration on the original model: one shared pass recorded profile's trace and prune's score
# sums (the second prune needs the same sums); the three steps found them saved. merge, alone on
# the pruned model, calibrated itself.
"$python" - "$run_dir/summary.json" <<'EOF' || fail "calibration sharing: see above"
import json, sys
d = json.load(open(sys.argv[1]))
steps = {s["name"]: s for s in d["steps"]}
src = lambda name: [c["source"] for c in steps[name]["calibration_source"]]
for name in ("profile", "prune", "prune_freq"):
    assert src(name) == ["reused"], (name, src(name))
    assert steps[name]["metrics"]["calibration_forward_tokens"] == 0
passes = d["calibration"]["shared_passes"]
assert len(passes) == 1 and passes[0]["steps"] == ["profile", "prune", "prune_freq"], passes
assert sorted(passes[0]["kinds"]) == ["profile-trace", "prune-scores"] and passes[0]["tokens"] == 1024, passes
assert src("merge") == ["computed+saved", "computed+saved"], src("merge")
assert steps["merge"]["metrics"]["calibration_forward_tokens"] > 0
assert d["calibration"]["forward_tokens"] == 1024 + steps["merge"]["metrics"]["calibration_forward_tokens"]
assert steps["merge"]["input"].endswith("/pipe/prune")
assert steps["final"]["input"].endswith("/pipe/fake4") and steps["final"]["ref"].endswith("demo-moe")
m = steps["final"]["metrics"]
assert abs(m["ppl_ratio"] - m["ppl"] / m["ref_ppl"]) < 1e-12 and m["ppl_ratio"] > 0.5, m
assert steps["prune"]["sizes"]["output_bytes"] < steps["prune"]["sizes"]["input_bytes"]
assert d["asserts_total"] == 6 and d["asserts_passed"] == 6
assert all(s["resources"]["peak_rss_bytes"] > 0 and s["timing"]["wall_s"] >= 0 for s in d["steps"])
print("calibration sharing ok")
EOF
checks=$((checks + 1))

# Determinism: snapshot the checkpoints and reports, re-run twice (plain, then reusing the saved
# calibration): byte-identical checkpoints; summaries equal once timings, memory and the
# calibration sources are set aside.
report_normalized() {  # a step report without timings and calibration sources
  "$python" -c "
import json, sys
d = json.load(open(sys.argv[1]))
for k in ('timing', 'calibration_source'): d.pop(k, None)
print(json.dumps(d, sort_keys=True))" "$1"
}
snapshot() {  # DIR -> sha256 of every output file except the summaries, reports and profile.json, then
              # profile.json without its timing and calibration source
  (cd "$1" && find . -type f ! -path './calibration/*' ! -path './steps/*' ! -name 'summary.*' ! -name '.moekit-run' \
     ! -name profile.json -print0 | sort -z | xargs -0 sha256sum)
  report_normalized "$1/profile/profile.json"
}
normalized() {  # summary.json without timings, memory, calibration sources and forward-token counts
  "$python" - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in ("timing", "resources", "calibration_source", "calibration_forward_tokens", "calibration",
                             "reuse_calibration")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o
print(json.dumps(strip(d), sort_keys=True))
EOF
}
snapshot "$run_dir" >"$tmp/first.sha"
normalized "$run_dir/summary.json" >"$tmp/first.json"
report_normalized "$run_dir/steps/merge.json" >"$tmp/first-merge.json"
expect 0 "PASSED" -- run "$tmp/pipe.yaml" --runs-dir "$runs"
snapshot "$run_dir" >"$tmp/second.sha"
checks=$((checks + 1)); cmp -s "$tmp/first.sha" "$tmp/second.sha" || fail "a re-run changed outputs: $(diff "$tmp/first.sha" "$tmp/second.sha" | head -5)"
json_check "d['calibration']['reused_entries'] == 0" -- run "$tmp/pipe.yaml" --runs-dir "$runs" --dry-run

json_check "d['ok'] and d['calibration']['forward_tokens'] == 0 and d['calibration']['reused_entries'] == 5 and all(c['source'] == 'reused' for s in d['steps'] for c in s.get('calibration_source', []))" \
  -- run "$tmp/pipe.yaml" --runs-dir "$runs" --reuse-calibration
snapshot "$run_dir" >"$tmp/third.sha"
checks=$((checks + 1)); cmp -s "$tmp/first.sha" "$tmp/third.sha" || fail "--reuse-calibration changed outputs: $(diff "$tmp/first.sha" "$tmp/third.sha" | head -5)"
normalized "$run_dir/summary.json" >"$tmp/third.json"
checks=$((checks + 1)); cmp -s "$tmp/first.json" "$tmp/third.json" || fail "--reuse-calibration changed the summary: $(diff <(tr ',' '\n' <"$tmp/first.json") <(tr ',' '\n' <"$tmp/third.json") | head -8)"
report_normalized "$run_dir/steps/merge.json" >"$tmp/third-merge.json"
checks=$((checks + 1)); cmp -s "$tmp/first-merge.json" "$tmp/third-merge.json" || fail "--reuse-calibration changed merge's report"

# A failing assertion: exit 3, the summary says which, later steps are skipped.
cat >"$tmp/fail.yaml" <<EOF
model: $root/assets/demo-moe
calib: $root/assets/corpus/train/en.txt
data: $root/assets/corpus/eval/en.txt
corpus: {seq_len: 64, max_tokens: 256}
steps:
  - prune: {keep: 8}
  - eval: {assert: [ppl_ratio <= 0.5]}
  - merge: {experts: 4}
EOF
expect 3 "FAILED" -- run "$tmp/fail.yaml" --runs-dir "$runs"
"$python" - "$runs/fail/summary.json" <<'EOF' || fail "failing assertion summary: see above"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False and d["exit_code"] == 3, d["exit_code"]
assert [s["status"] for s in d["steps"]] == ["ok", "failed_assert", "skipped"], [s["status"] for s in d["steps"]]
a = d["steps"][1]["asserts"][0]
assert a["holds"] is False and a["value"] > 0.5 and a["where"].endswith("fail.yaml:7"), a
EOF
checks=$((checks + 1))
checks=$((checks + 1)); [[ ! -e $runs/fail/merge ]] || fail "a skipped step wrote its output"

# Malformed recipes: exit 1, FILE:LINE and the key named, nothing run.
bad() {  # NAME EXPECTED_SUBSTRING RECIPE_TEXT
  printf '%s' "$3" >"$tmp/$1.yaml"
  expect 1 "$tmp/$1.yaml:$2" -- run "$tmp/$1.yaml" --runs-dir "$runs"
  checks=$((checks + 1)); [[ ! -e $runs/$1 ]] || fail "malformed recipe $1 left $runs/$1"
}
demo=$root/assets/demo-moe
bad unknown_option "5: step 'prune': The following arguments were not expected: reap --methd" \
  "model: $demo
calib: $root/assets/corpus/train/en.txt
steps:
  - prune:
      methd: reap
      keep: 0.5
"
bad bad_value "6: step 'prune': Could not convert: --seed = many" \
  "model: $demo
calib: $root/assets/corpus/train/en.txt
steps:
  - prune:
      keep: 0.5
      seed: many
"
bad missing_required "4: step 'prune': --keep is required" \
  "model: $demo
calib: $root/assets/corpus/train/en.txt
steps:
  - prune: {method: reap}
"
bad bad_yaml "5: not valid YAML" \
  "model: $demo
steps:
  - prune:
      keep: [0.5
"
bad unknown_step "3: unknown step 'squash'" \
  "model: $demo
steps:
  - squash: {}
"
bad bad_assert "4: assertion 'ppl_ratio <= lots'" \
  "model: $demo
data: $root/assets/corpus/eval/en.txt
steps:
  - eval: {assert: [ppl_ratio <= lots]}
"
expect 1 "does not exist" -- run "$tmp/nope.yaml" --runs-dir "$runs"
bad no_model "1: model '$tmp/missing-model' is not a directory" \
  "model: $tmp/missing-model
steps:
  - prune: {keep: 2}
"
bad no_input "4: step 'prune': '$tmp/elsewhere' does not exist" \
  "model: $demo
calib: $root/assets/corpus/train/en.txt
steps:
  - prune: {keep: 2, input: $tmp/elsewhere}
"

# A value only the command itself can judge fails when the step runs, still naming the line; the
# summary records the failed step.
printf '%s' "model: $demo
calib: $root/assets/corpus/train/en.txt
corpus: {max_tokens: 128}
steps:
  - prune:
      keep: many
" >"$tmp/late.yaml"
expect 1 "late.yaml:6: step 'prune' failed: [prune] --keep 'many'" -- run "$tmp/late.yaml" --runs-dir "$runs"
json_file_check() {  # PY_ASSERTION FILE
  checks=$((checks + 1))
  "$python" -c "import json,sys; d=json.load(open(sys.argv[1])); assert $1, d" "$2" 2>"$tmp/py" || fail "$2: '$1' failed: $(tail -c 300 "$tmp/py")"
}
json_file_check "d['ok'] is False and d['exit_code'] == 1 and d['steps'][0]['status'] == 'error'" "$runs/late/summary.json"
checks=$((checks + 1)); [[ ! -e $runs/late/prune ]] || fail "a failed step left its output"

# A directory moekit run did not make is not taken over.
mkdir -p "$tmp/work/other/pipe" && echo keep >"$tmp/work/other/pipe/mine.txt"
expect 1 "was not made by moekit run" -- run "$tmp/pipe.yaml" --runs-dir "$tmp/work/other"
checks=$((checks + 1)); [[ $(cat "$tmp/work/other/pipe/mine.txt") == keep ]] || fail "a foreign directory was touched"

# --dry-run validates and prints the plan, writes nothing.
expect 0 "moekit merge" -- run "$tmp/pipe.yaml" --runs-dir "$tmp/work/dry" --dry-run
checks=$((checks + 1)); [[ ! -e $tmp/work/dry ]] || fail "--dry-run wrote $tmp/work/dry"
expect 0 "assert" -- run --help
# An explicit --device is passed on to every step (auto on a machine without a GPU passes nothing).
expect 0 "--force --device cpu" -- run "$tmp/pipe.yaml" --runs-dir "$tmp/work/dry" --dry-run --device cpu
if "$moekit" --version | grep -q -e "no usable GPU" -e "not built"; then
  checks=$((checks + 1))
  "$moekit" run "$tmp/pipe.yaml" --runs-dir "$tmp/work/dry" --dry-run 2>&1 | grep -q -- "--device" && fail "--device passed on without being asked for"
fi

# The example recipes in docs/examples/ are valid (README points at them).
for recipe in "$root"/docs/examples/*.yaml; do
  expect 0 "is valid" -- run "$recipe" --runs-dir "$tmp/work/examples" --dry-run
done
checks=$((checks + 1)); [[ ! -e $tmp/work/examples ]] || fail "--dry-run of the examples wrote $tmp/work/examples"

finish
