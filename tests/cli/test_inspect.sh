#!/usr/bin/env bash
# End-to-end tests of `moekit inspect` and the top-level CLI: every fixture inspects cleanly,
# every broken fixture fails with exit code 1 and a message naming what is wrong.
# Usage: test_inspect.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
fixtures=$tests/fixtures
python=${MOEKIT_PYTHON:-python3}
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# expect CODE SUBSTRING -- ARGS...: runs moekit, checks the exit code and that stdout+stderr contain SUBSTRING.
expect() {
  local code=$1 needle=$2; shift 3
  local out rc
  out=$("$moekit" "$@" 2>&1); rc=$?
  checks=$((checks + 1))
  if [[ $rc -ne $code ]]; then fail "moekit $* -> exit $rc, want $code; output: ${out:0:400}"; return; fi
  if [[ -n $needle && $out != *"$needle"* ]]; then fail "moekit $* -> output lacks '$needle': ${out:0:400}"; fi
}

# top level
expect 0 "inspect" -- --help
expect 0 "moekit" --
expect 0 "moekit 0." -- --version
expect 1 "" -- no-such-command
expect 1 "MODEL_DIR" -- inspect
expect 1 "does not exist" -- inspect "$fixtures/no-such-dir"
expect 1 "not a directory" -- inspect "$fixtures/MANIFEST.json"
expect 1 "" -- inspect "$fixtures/olmoe" --device tpu
expect 0 "Describe" -- inspect --help

# every architecture fixture: OK in text and JSON
for dir in "$fixtures"/*/; do
  name=$(basename "$dir")
  [[ $name == broken || ! -f $dir/config.json ]] && continue
  expect 0 "OK:" -- inspect "$dir"
  json=$("$moekit" inspect "$dir" --json 2>/dev/null)
  checks=$((checks + 1))
  if ! "$python" -c 'import json,sys; d=json.load(sys.stdin); assert d["schema_version"]==1 and d["ok"] is True and d["problems"]==[], d' <<<"$json"; then
    fail "inspect --json $name is not a valid OK report"
  fi
done

# every broken fixture: exit 1 and the substring CASES.json promises
cases=$fixtures/broken/CASES.json
if [[ ! -f $cases ]]; then
  fail "missing $cases"
else
  while IFS=$'\t' read -r case needle; do
    expect 1 "$needle" -- inspect "$fixtures/broken/$case"
    expect 1 "$needle" -- inspect "$fixtures/broken/$case" --json
  done < <("$python" -c 'import json,sys; [print(k + "\t" + v["expect"]) for k, v in json.load(open(sys.argv[1])).items()]' "$cases")
fi

echo "$((checks - failures)) passed, $failures failed"
[[ $failures -eq 0 ]]
