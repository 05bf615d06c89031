#!/usr/bin/env bash
# End-to-end tests of `moekit profile` on the bundled demo model: bad input exits 1 with a clear
# message and leaves no output behind; a run writes profile.json + CSV + index.html; a profile
# recomputed from the saved trace (and from the trace split in two and merged) equals the
# original; `mpirun -n 2` gives the same numbers as one process.
# Usage: test_profile.sh MOEKIT TESTS_DIR
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

data="en=$corpus/en.txt,de=$corpus/de.txt,code=$corpus/code-py.txt"
fast=(--max-tokens 1500 --seq-len 128 --bootstrap-resamples 200)

# compare A B [REL]: the statistics of two profile.json files are identical (timing and provenance
# aside); with REL, integers and strings still exactly and floats to that relative tolerance.
compare() {
  checks=$((checks + 1))
  if ! "$python" - "$1" "$2" "${3:-0}" <<'EOF' >"$tmp/cmp" 2>&1; then fail "profiles differ: $1 vs $2: $(tail -c 600 "$tmp/cmp")"; fi
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
rel = float(sys.argv[3])
bad = []
def walk(x, y, path):
    if isinstance(x, dict) and isinstance(y, dict) and x.keys() == y.keys():
        for k in x: walk(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)): walk(u, v, f"{path}[{i}]")
    elif isinstance(x, float) and isinstance(y, float) and rel > 0:
        if abs(x - y) > rel * max(abs(x), abs(y)) + 1e-12: bad.append(f"{path}: {x} vs {y}")
    elif x != y or type(x) != type(y):
        bad.append(f"{path}: {x!r} vs {y!r}")
for key in ("model_level", "layers", "super_experts", "summary"):
    walk(a[key], b[key], key)
for key in ("tokens", "sequences"):
    walk(a["data"][key], b["data"][key], "data." + key)
if bad:
    print("\n".join(bad[:10]))
    raise SystemExit(f"{len(bad)} values differ")
EOF
}

# Bad input: exit 1, a message, nothing written.
expect 1 "--data is required" -- profile "$demo"
expect 1 "give MODEL_DIR" -- profile
expect 1 "does not exist" -- profile "$tmp/nope" --data "$corpus/en.txt"
expect 1 "does not exist" -- profile "$demo" --data "$tmp/missing.txt"
expect 1 "segment-lengths" -- profile "$demo" --data "$corpus/en.txt" --segment-lengths 4,x
expect 1 "at least 1" -- profile "$demo" --data "$corpus/en.txt" --segment-lengths 0,16
expect 1 "repeated" -- profile "$demo" --data "$corpus/en.txt" --cache-ratios 2,2
expect 1 "--bootstrap-batches" -- profile "$demo" --data "$corpus/en.txt" --bootstrap-batches 0
expect 1 "do not also give MODEL_DIR" -- profile "$demo" --trace "$tmp/x.trace"
expect 1 "not a file" -- profile --trace "$tmp/missing.trace"
printf 'not a trace' >"$tmp/junk.trace"
expect 1 "[safetensors]" -- profile --trace "$tmp/junk.trace"
"$python" -c 'import numpy as np; from safetensors.numpy import save_file; save_file({"x": np.zeros(2, np.float32)}, "'"$tmp"'/other.safetensors")'
expect 1 "not a moekit trace" -- profile --trace "$tmp/other.safetensors"
mkdir -p "$tmp/exists"
expect 1 "pass --force" -- profile "$demo" --data "$corpus/en.txt" -o "$tmp/exists"
expect 1 "does not exist" -- profile "$demo" --data "$corpus/en.txt" --save-trace "$tmp/no/dir/t.trace"
checks=$((checks + 1))
[[ -z $(ls -A "$tmp/exists") ]] || fail "a refused run wrote into the existing output directory"

# A full run: summary, files, JSON shape.
expect 0 "Routing consistency" -- profile "$demo" --data "$data" "${fast[@]}" -o "$tmp/report" --save-trace "$tmp/run.trace"
for f in profile.json index.html layers.csv experts.csv consistency.csv; do
  checks=$((checks + 1))
  [[ -s $tmp/report/$f ]] || fail "report lacks $f"
done
checks=$((checks + 1))
ls "$tmp" | grep -q moekit-tmp && fail "a temporary directory was left behind"
checks=$((checks + 1))
"$python" - "$tmp/report/profile.json" <<'EOF' >"$tmp/py" 2>&1 || fail "profile.json shape: $(tail -c 600 "$tmp/py")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema_version"] == 1 and d["command"] == "profile"
assert d["model"]["n_expert"] == 16 and d["model"]["n_expert_used"] == 2 and d["model"]["moe_layers"] == [0, 1, 2, 3]
assert [x["name"] for x in d["data"]["domains"]] == ["en", "de", "code"]
assert d["data"]["tokens"] == sum(x["tokens"] for x in d["data"]["domains"])
for key in ("load", "consistency", "congestion"):
    assert key in d["model_level"], key
for m in ("4", "16", "64", "256"):
    v = d["model_level"]["consistency"]["srp"][m]
    assert 0 <= v["ci95"][0] <= v["value"] <= v["ci95"][1] <= 100, (m, v)
for layer in d["layers"]:
    counts = layer["load"]["counts"]
    assert sum(counts) == d["data"]["tokens"] * 2
    assert abs(sum(layer["load"]["shares"]) - 1) < 1e-9
    spec = layer["specialization"]
    assert len(spec["domain_rate"]) == 3 and len(spec["domain_rate"][0]) == 16
assert d["params"]["bootstrap"]["resamples"] == 200
for name in ("load", "consistency", "congestion", "specialization", "selection"):
    assert d["params"]["conventions"][name], name
EOF

# The trace recomputes the same profile; a second run on the trace only needs the trace.
expect 0 "" -- profile --trace "$tmp/run.trace" --bootstrap-resamples 200 -o "$tmp/from-trace"
compare "$tmp/report/profile.json" "$tmp/from-trace/profile.json"
expect 1 "pass --force" -- profile --trace "$tmp/run.trace" -o "$tmp/from-trace"
expect 0 "" -- profile --trace "$tmp/run.trace" --bootstrap-resamples 200 -o "$tmp/from-trace" --force

# Splitting the data in two runs and merging the traces gives the same profile as one run over
# both (one domain per run: the merged trace holds the same sequences in the same order). The
# selections are identical; router floats come from float32 forward passes over differently
# composed batches, so they agree to rounding (1e-6 relative), not bit for bit.
expect 0 "" -- profile "$demo" --data "en=$corpus/en.txt" "${fast[@]}" --save-trace "$tmp/a.trace"
expect 0 "" -- profile "$demo" --data "de=$corpus/de.txt,code=$corpus/code-py.txt" "${fast[@]}" --save-trace "$tmp/b.trace"
expect 0 "" -- profile --trace "$tmp/a.trace" --trace "$tmp/b.trace" --bootstrap-resamples 200 -o "$tmp/merged"
compare "$tmp/report/profile.json" "$tmp/merged/profile.json" 1e-6

# --json prints the document.
checks=$((checks + 1))
"$moekit" profile --trace "$tmp/run.trace" --bootstrap-resamples 0 --json >"$tmp/out.json" 2>"$tmp/err" || fail "--json run failed: $(cat "$tmp/err")"
"$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); v=d["model_level"]["load"]["max_vio_mean"]; assert v["ci95"]==[v["value"]]*2' "$tmp/out.json" \
  || fail "--bootstrap-resamples 0 should collapse the intervals"

# MPI: two ranks on loopback give the same numbers as one process, bit for bit, at the same
# thread count (batches are cut globally, so each batch is computed exactly as in one process).
if ! command -v mpirun >/dev/null; then
  echo "*** SKIPPED: mpirun not found (apt-get install openmpi-bin): MPI equivalence not checked"
elif ! "$moekit" --version | grep -q "MPI: built"; then
  echo "*** SKIPPED: this moekit was built without MPI: MPI equivalence not checked"
else
  checks=$((checks + 1))
  # --batch-tokens 512 gives several batches so both ranks get work.
  "$moekit" profile "$demo" --data "$data" "${fast[@]}" --batch-tokens 512 --threads 1 -o "$tmp/single" >/dev/null 2>"$tmp/err1" || fail "single run: $(cat "$tmp/err1")"
  if OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm=isolated OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo \
      timeout 300 mpirun --oversubscribe -n 2 "$moekit" profile "$demo" --data "$data" "${fast[@]}" --batch-tokens 512 --threads 1 \
      -o "$tmp/mpi" >"$tmp/mpi.out" 2>&1; then
    compare "$tmp/single/profile.json" "$tmp/mpi/profile.json"
    "$python" -c 'import json,sys; assert json.load(open(sys.argv[1]))["data"]["mpi_ranks"] == 2' "$tmp/mpi/profile.json" || fail "mpi_ranks not recorded"
  else
    fail "mpirun -n 2 failed: $(tail -c 800 "$tmp/mpi.out")"
  fi
fi

finish
