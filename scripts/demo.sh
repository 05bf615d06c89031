#!/usr/bin/env bash
# One command from a fresh machine to a working moekit: installs what is missing
# (scripts/setup.sh), builds, and runs inspect, eval, the routing profile and the main job -- a
# `moekit run` pipeline that profiles, prunes, merges, quantizes and evaluates -- on the bundled
# demo model (assets/demo-moe, a 16-expert OLMoE trained on Debian-shipped text; docs/DEMO_MODEL.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=assets/demo-moe
run() { echo; echo "\$ $*"; "$@"; }
run build/moekit inspect "$model"
eval=assets/corpus/eval
run build/moekit eval "$model" --seq-len 256 --max-tokens 4096 \
  --data en=$eval/en.txt,de=$eval/de.txt,fr=$eval/fr.txt,zh=$eval/zh.txt,code-c=$eval/code-c.txt,code-py=$eval/code-py.txt
# The routing profile (terminal summary; report/index.html, profile.json, CSVs).
run build/moekit profile "$model" --seq-len 256 --max-tokens 4096 --force -o demo-report \
  --data en=$eval/en.txt,de=$eval/de.txt,fr=$eval/fr.txt,zh=$eval/zh.txt,code-c=$eval/code-c.txt,code-py=$eval/code-py.txt
# The main job: make the model smaller in steps, checking quality at each (docs/examples/).
run build/moekit run docs/examples/demo-pipeline.yaml --runs-dir runs
echo; echo "Open demo-report/index.html in a browser for the figures; runs/demo-pipeline/summary.md for the pipeline."
