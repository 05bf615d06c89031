#!/usr/bin/env python3
"""`moekit eval` on the bundled demo model against two oracles:

1. tests/golden/demo_ppl.json (transformers, fp32): every per-domain perplexity and the pooled
   one, from the golden ids (tests/golden/demo_eval_ids.bin sliced per domain into .bin files)
   and from the text corpus (assets/corpus/eval/<domain>.txt, --max-tokens 2048): relative error
   <= 1e-4 (the golden's own tolerance is 1e-3). The text run must score exactly the same ids as
   the .bin run (identical nll_sum per domain).
2. transformers itself, live: the demo model against itself (KL 0, agreement 1), against a
   perturbed copy (layer 0 expert 5's gate/up scaled by 1.5, router row of expert 2 in layer 2
   scaled by 1.25) and against a pruned copy (experts 3 and 11 dropped in every layer, router rows
   sliced, moekit.json expert_map): mean KL(ref || model), its p99, top-1 agreement and per-layer
   routing agreement (mapped into the reference's expert space) within 1e-4. This part scores
   three domains (en, zh, code-py: prose, CJK and code; 6k tokens) to keep the suite short; the
   reference model's forward is computed once and shared by both comparisons.

Usage: test_eval_demo.py MOEKIT TESTS_DIR
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

moekit, tests = sys.argv[1], Path(sys.argv[2]).resolve()
root = tests.parent
demo = root / "assets" / "demo-moe"
golden = json.loads((tests / "golden" / "demo_ppl.json").read_text())
domains = golden["domains"]
seq_len = golden["seq_len"]
passed = failed = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


def run_eval(*args):
    cmd = [moekit, "eval", *map(str, args), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(cmd)} -> exit {r.returncode}: {r.stderr[:800]}")
    return json.loads(r.stdout)


tmp = Path(tempfile.mkdtemp(prefix="moekit_eval_"))
try:
    # ------------------------------------------------------------------ 1. golden perplexities
    ids = np.fromfile(tests / "golden" / "demo_eval_ids.bin", dtype="<i4")
    windows = {}
    for d in domains:
        o = golden["offsets"][d]
        sl = ids[o["offset"]:o["offset"] + o["length"]]
        sl.astype("<i4").tofile(tmp / f"{d}.bin")
        windows[d] = sl.reshape(-1, seq_len)
    bin_spec = ",".join(f"{d}={tmp / (d + '.bin')}" for d in domains)
    txt_spec = ",".join(f"{d}={root / 'assets' / 'corpus' / 'eval' / (d + '.txt')}" for d in domains)
    res_bin = run_eval(demo, "--data", bin_spec, "--seq-len", seq_len)
    res_txt = run_eval(demo, "--data", txt_spec, "--seq-len", seq_len, "--max-tokens", 2048)
    worst = 0.0
    for name, res in (("bin", res_bin), ("text", res_txt)):
        for d in domains:
            want = golden["per_domain"][d]
            got = res["domains"][d]
            rel = abs(got["ppl"] / want["ppl"] - 1)
            worst = max(worst, rel)
            print(f"  {name:4s} {d:8s} ppl {got['ppl']:.6f} golden {want['ppl']:.6f} rel {rel:.2e}")
            check(f"{name} {d} ppl", rel <= 1e-4, f"{got['ppl']} vs {want['ppl']}")
            check(f"{name} {d} scored", got["scored"] == want["scored"] and got["windows"] == want["windows"])
        rel = abs(res["total"]["ppl"] / golden["all"]["ppl"] - 1)
        worst = max(worst, rel)
        print(f"  {name:4s} all      ppl {res['total']['ppl']:.6f} golden {golden['all']['ppl']:.6f} rel {rel:.2e}")
        check(f"{name} all ppl", rel <= 1e-4)
    for d in domains:
        check(f"text {d} same ids as golden", res_txt["domains"][d]["nll_sum"] == res_bin["domains"][d]["nll_sum"],
              f'{res_txt["domains"][d]["nll_sum"]} vs {res_bin["domains"][d]["nll_sum"]}')
    print(f"golden ppl: worst relative error {worst:.2e}; eval {res_bin['timing']['tokens_per_s']:.0f} tokens/s")

    # ------------------------------------------------------------------ 2. --ref against transformers
    try:
        import torch
        from safetensors.torch import load_file, save_file
        from transformers import OlmoeForCausalLM
    except ImportError as e:
        print(f"SKIPPED (ref part): {e}")
        raise SystemExit(0 if failed == 0 else 1)
    torch.set_num_threads(2)

    ref_domains = ["en", "zh", "code-py"]
    bin_spec = ",".join(f"{d}={tmp / (d + '.bin')}" for d in ref_domains)
    self_res = run_eval(demo, "--data", bin_spec, "--seq-len", seq_len, "--ref", demo)
    tot = self_res["total"]
    check("self KL", tot["kl_mean"] <= 1e-6 and tot["kl_p99"] <= 1e-6, str(tot["kl_mean"]))
    check("self top-1", tot["top1_agreement"] == 1.0)
    check("self routing", all(l["agreement"] == 1.0 for l in tot["routing_agreement"]["per_layer"]))

    state = load_file(str(demo / "model.safetensors"))
    cfg = json.loads((demo / "config.json").read_text())
    E, K, L = cfg["num_experts"], cfg["num_experts_per_tok"], cfg["num_hidden_layers"]

    def make_model(name, tensors, config, extra=None):
        out = tmp / name
        out.mkdir()
        for f in demo.iterdir():
            if f.name not in ("model.safetensors", "config.json"):
                shutil.copy(f, out / f.name)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        for fname, text in (extra or {}).items():
            (out / fname).write_text(text)
        return out

    pert = dict(state)
    for p in ("gate_proj", "up_proj"):
        k = f"model.layers.0.mlp.experts.5.{p}.weight"
        pert[k] = (pert[k].float() * 1.5).to(torch.bfloat16)
    k = "model.layers.2.mlp.gate.weight"
    w = pert[k].float().clone()
    w[2] *= 1.25
    pert[k] = w.to(torch.bfloat16)
    pert_dir = make_model("perturbed", pert, cfg)

    drop = {3, 11}
    keep = [e for e in range(E) if e not in drop]
    pruned = {}
    for k, v in state.items():
        parts = k.split(".")
        if ".mlp.experts." in k:
            e = int(parts[5])
            if e in drop:
                continue
            parts[5] = str(keep.index(e))
            pruned[".".join(parts)] = v
        elif k.endswith(".mlp.gate.weight"):
            pruned[k] = v[keep].contiguous()
        else:
            pruned[k] = v
    pcfg = dict(cfg, num_experts=len(keep))
    emap = json.dumps({"schema_version": 1, "expert_map": {str(il): keep for il in range(L)}})
    pruned_dir = make_model("pruned", pruned, pcfg, {"moekit.json": emap})
    nomap_dir = make_model("pruned_nomap", pruned, pcfg)

    ref_model = OlmoeForCausalLM.from_pretrained(demo, dtype=torch.float32).eval()
    with torch.no_grad():
        ref_out = {d: ref_model(input_ids=torch.tensor(windows[d], dtype=torch.long), output_router_logits=True)
                   for d in ref_domains}
    del ref_model

    @torch.no_grad()
    def oracle(model_dir, expert_ids):
        mod = OlmoeForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        kls, top1, agree = [], [], np.zeros(L)
        n_tok = 0
        for d in ref_domains:
            x = torch.tensor(windows[d], dtype=torch.long)
            orf = ref_out[d]
            omd = mod(input_ids=x, output_router_logits=True)
            lr = torch.log_softmax(orf.logits[:, :-1].double(), -1)
            lm = torch.log_softmax(omd.logits[:, :-1].double(), -1)
            kls.append((lr.exp() * (lr - lm)).sum(-1).flatten().numpy())
            top1.append((orf.logits[:, :-1].argmax(-1) == omd.logits[:, :-1].argmax(-1)).flatten().numpy())
            for il in range(L):
                sr = torch.topk(torch.softmax(orf.router_logits[il].float(), -1), K, -1).indices.numpy()
                sm = np.asarray(expert_ids)[torch.topk(torch.softmax(omd.router_logits[il].float(), -1), K, -1).indices.numpy()]
                agree[il] += sum(len(set(a) & set(b)) / K for a, b in zip(sr.tolist(), sm.tolist()))
            n_tok += x.numel()
        kl = np.concatenate(kls)
        return {"kl_mean": kl.mean(), "kl_p99": np.percentile(kl, 99), "top1": np.concatenate(top1).mean(),
                "routing": agree / n_tok}

    for name, model_dir, expert_ids in (("perturbed", pert_dir, list(range(E))), ("pruned", pruned_dir, keep)):
        want = oracle(model_dir, expert_ids)
        got = run_eval(model_dir, "--data", bin_spec, "--seq-len", seq_len, "--ref", demo)["total"]
        print(f"  {name}: KL mean {got['kl_mean']:.6g} (transformers {want['kl_mean']:.6g}), p99 {got['kl_p99']:.6g} "
              f"({want['kl_p99']:.6g}), top-1 {got['top1_agreement']:.6f} ({want['top1']:.6f})")
        check(f"{name} KL mean", abs(got["kl_mean"] - want["kl_mean"]) <= 1e-4 * max(1.0, want["kl_mean"]))
        check(f"{name} KL p99", abs(got["kl_p99"] - want["kl_p99"]) <= 1e-4 * max(1.0, want["kl_p99"]))
        check(f"{name} KL nonzero", want["kl_mean"] > 1e-4, str(want["kl_mean"]))
        check(f"{name} top-1", abs(got["top1_agreement"] - want["top1"]) <= 1e-4)
        print(f"  {name}: |diff| KL mean {abs(got['kl_mean'] - want['kl_mean']):.2e}, p99 {abs(got['kl_p99'] - want['kl_p99']):.2e}, "
              f"top-1 {abs(got['top1_agreement'] - want['top1']):.2e}")
        got_r = [l["agreement"] for l in got["routing_agreement"]["per_layer"]]
        print(f"  {name}: routing {np.round(got_r, 6).tolist()} (transformers {np.round(want['routing'], 6).tolist()})")
        check(f"{name} routing", np.abs(np.asarray(got_r) - want["routing"]).max() <= 1e-4)

    nomap = run_eval(nomap_dir, "--data", bin_spec, "--seq-len", seq_len, "--ref", demo)
    check("pruned without expert_map: routing unavailable",
          nomap["reference"]["routing_available"] is False and "expert_map" in nomap["reference"]["routing_note"]
          and nomap["total"]["routing_agreement"] is None, json.dumps(nomap["reference"]))
finally:
    shutil.rmtree(tmp, ignore_errors=True)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
