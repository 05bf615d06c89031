# Shared by the CLI tests (sourced, not run): counters, fail/expect helpers and the closing
# "N passed, N failed" line. Expects $moekit to be set by the caller.
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

# For the commands that write outputs. The caller sets $tmp (a scratch directory whose work/
# subdirectory receives every output) and $python (with the venv's packages).
# nothing_left WHAT: $tmp/work must be empty (no output, no temporary sibling) after a refusal.
nothing_left() {
  checks=$((checks + 1))
  local left
  left=$(ls -A "$tmp/work")
  if [[ -n $left ]]; then fail "$1 left behind: $left"; rm -rf "${tmp:?}/work/"*; fi
}

# refused CODE SUBSTRING -- ARGS...: expect, then nothing_left.
refused() {
  local code=$1 needle=$2; shift 3
  expect "$code" "$needle" -- "$@"
  nothing_left "moekit $*"
}

# json_check PY_ASSERTION -- ARGS...: runs moekit ARGS --json, exit 0, and the Python assertion
# holds for the parsed output d.
json_check() {
  local assertion=$1; shift 2
  local res rc
  res=$("$moekit" "$@" --json 2>"$tmp/stderr"); rc=$?
  checks=$((checks + 1))
  if [[ $rc -ne 0 ]]; then fail "moekit $* --json -> exit $rc: $(head -c 400 "$tmp/stderr")"; return; fi
  if ! "$python" -c "import json,math,sys; d=json.load(sys.stdin); assert $assertion, d" <<<"$res" >/dev/null 2>"$tmp/py"; then
    fail "moekit $* --json: assertion '$assertion' failed: $(tail -c 400 "$tmp/py")"
  fi
}

# Prints the summary line and returns non-zero when any check failed.
finish() {
  echo "$((checks - failures)) passed, $failures failed"
  [[ $failures -eq 0 ]]
}
