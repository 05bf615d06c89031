"""Shared by the interop tests that compare a checkpoint moekit wrote with transformers
(test_prune_interop, test_merge_interop, test_svd_interop): the check counter, running moekit,
reading tensors, and logits from transformers (fp32, eager attention) and from moekit's engine
(the test-only moekit_engine_logits tool, $MOEKIT_ENGINE_LOGITS).

`oracle(test_name, moekit)` imports torch/transformers/safetensors or exits 77 (ctest's skip)
saying so, and returns the module namespace with the helpers bound to that engine tool."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


class Checks:
    """check(what, ok, detail) counts; finish() prints "N passed, M failed (T s)" and exits."""

    def __init__(self):
        self.passed = self.failed = 0
        self.t0 = time.time()

    def __call__(self, what, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what} {detail}", flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed ({time.time() - self.t0:.1f} s)")
        sys.exit(1 if self.failed else 0)


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} -> exit {r.returncode}: {r.stderr[-800:]}")
    return r.stdout


class Oracle:
    def __init__(self, test_name, moekit):
        try:
            import torch
            import transformers
            from safetensors import safe_open
        except ImportError as e:
            print(f"SKIPPED: {test_name} needs torch, transformers and safetensors ({e}); "
                  "install them with scripts/setup.sh --torch", flush=True)
            sys.exit(77)
        self.engine_logits = os.environ.get("MOEKIT_ENGINE_LOGITS") or \
            str(Path(moekit).resolve().parent / "tests" / "moekit_engine_logits")
        if not Path(self.engine_logits).exists():
            print(f"FAIL: moekit_engine_logits not found ({self.engine_logits}); set MOEKIT_ENGINE_LOGITS")
            sys.exit(1)
        self.torch, self.transformers, self.safe_open = torch, transformers, safe_open
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()

    def tensors(self, model_dir):
        """name -> torch tensor (as stored)."""
        out = {}
        for f in sorted(Path(model_dir).glob("*.safetensors")):
            with self.safe_open(str(f), framework="pt") as st:
                for name in st.keys():
                    out[name] = st.get_tensor(name).contiguous()
        return out

    def logits_transformers(self, model_dir, ids):
        torch = self.torch
        model = self.transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32,
                                                                       attn_implementation="eager")
        model.eval()
        with torch.no_grad():
            return model(torch.tensor(ids, dtype=torch.long)).logits.float().numpy()

    def logits_moekit(self, model_dir, ids, tmp):
        ids_path, out_path = tmp / "ids.bin", tmp / "logits.f32"
        np.asarray(ids, dtype="<i4").tofile(ids_path)
        run([self.engine_logits, model_dir, ids_path, out_path, ids.shape[1]])
        return np.fromfile(out_path, dtype="<f4").reshape(ids.shape[0], ids.shape[1], -1)
