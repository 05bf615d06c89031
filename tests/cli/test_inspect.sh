#!/usr/bin/env bash
# End-to-end tests of `moekit inspect` and the top-level CLI: every fixture inspects cleanly,
# every broken fixture fails with exit code 1 and a message naming what is wrong.
# Usage: test_inspect.sh MOEKIT TESTS_DIR
set -uo pipefail
moekit=$1
tests=$2
fixtures=$tests/fixtures
python=${MOEKIT_PYTHON:-python3}
source "$(dirname "$0")/lib.sh"

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

finish
