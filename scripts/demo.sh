#!/usr/bin/env bash
# One command from a fresh machine to a working moekit: installs what is missing
# (scripts/setup.sh), builds, and runs the main jobs available so far on the bundled demo
# model (assets/demo-moe, a 16-expert OLMoE trained on Debian-shipped text; docs/DEMO_MODEL.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=assets/demo-moe
run() { echo; echo "\$ $*"; "$@"; }
run build/moekit inspect "$model"
if build/moekit eval --help >/dev/null 2>&1; then
  run build/moekit eval "$model" --data en=assets/corpus/eval/en.txt,de=assets/corpus/eval/de.txt,code-py=assets/corpus/eval/code-py.txt --max-tokens 2048 --seq-len 256
fi
