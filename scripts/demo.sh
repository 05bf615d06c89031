#!/usr/bin/env bash
# One command from a fresh machine to a working moekit: installs what is missing
# (scripts/setup.sh), builds, and runs the main job available so far on the bundled model.
# Until the trained demo model lands in assets/, the bundled model is the OLMoE-architecture
# test fixture (tests/fixtures/olmoe, random weights made by transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
model=tests/fixtures/olmoe
echo
echo "\$ build/moekit inspect $model"
build/moekit inspect "$model"
