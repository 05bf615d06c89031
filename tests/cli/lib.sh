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

# Prints the summary line and returns non-zero when any check failed.
finish() {
  echo "$((checks - failures)) passed, $failures failed"
  [[ $failures -eq 0 ]]
}
