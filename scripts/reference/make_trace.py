#!/usr/bin/env python3
"""Synthetic routing traces in moekit's trace format (docs/PROFILE.md "Trace files"), for testing
`moekit profile --trace` against scripts/reference/profile_stats.py. Deterministic from a seed.

Router logits z_t (fp32) = layer bias + domain preference + token-id preference + a per-sequence
AR(1) term (so routing has local consistency and domain/vocabulary specialization to find).
Selection is the "architecture's own": top-k of softmax(z), or of sigmoid(z) + a selection bias
for sigmoid scoring (then the stored rank order can differ from the gate order). Per-sequence
sums (seq_sum_prob, _centered_logit, _entropy) are computed in float64 from the stored fp32 logits;
expert-output norms and max-abs values are drawn at random per routed (token, expert).

Adversarial options: an expert never selected (excluded from selection though its logit is
finite), a layer where one expert is in every token's selection (all load when k = 1), one
(layer, expert) with outsized max_abs_out (a super-expert candidate), sequences shorter than
the segment lengths and than the sample stride, a domain with a single sequence.

Usage: make_trace.py OUT.trace [--preset random|adversarial|top1] [--seed N]
       make_trace.py OUT.trace --concat A.trace B.trace ...   (concatenated copy of the inputs)
"""
import argparse
import json
import os
import sys

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_stats  # noqa: E402  (load_trace / merge_traces for --concat)


def softmax64(z):
    z = z.astype(np.float64)
    y = np.exp(z - z.max(axis=-1, keepdims=True))
    return y / y.sum(axis=-1, keepdims=True)


def generate(seed, n_expert=8, k=2, n_layer=4, moe_layers=None, scoring="softmax", stride=4,
             domains=("en", "code", "math"), seq_lengths=(300, 120, 90, 17, 3, 40, 200, 15, 64, 1),
             seq_domains=None, vocab=40, dead=(), monopoly=(), super_expert=None,
             norm_topk=True, model_type=None, keep_logits=False):
    """Returns a trace dict (the layout of profile_stats.load_trace).

    dead: [(moe_index, expert)] never selected; monopoly: [(moe_index, expert)] in every
    selection; super_expert: (moe_index, expert) whose max_abs_out is ~40x the others'.
    keep_logits: also keep every token's fp32 logits as layers[j]["logits"] (not written)."""
    rng = np.random.default_rng(seed)
    E, D = n_expert, len(domains)
    moe_layers = list(range(n_layer)) if moe_layers is None else list(moe_layers)
    seq_lengths = list(seq_lengths)
    n_seq = len(seq_lengths)
    if seq_domains is None:
        seq_domains = [s % D for s in range(n_seq)]
    seq_begin = np.concatenate([[0], np.cumsum(seq_lengths)]).astype(np.int64)
    T = int(seq_begin[-1])
    zipf = 1.0 / (np.arange(vocab) + 1.0) ** 0.9
    token_ids = rng.choice(vocab, size=T, p=zipf / zipf.sum()).astype(np.int32)
    tok_seq = np.repeat(np.arange(n_seq), seq_lengths)
    tok_dom = np.array(seq_domains, dtype=np.int64)[tok_seq]
    pos = np.arange(T) - seq_begin[tok_seq]
    sample_rows = np.nonzero(pos % stride == 0)[0].astype(np.int64)

    layers = []
    for j in range(len(moe_layers)):
        base = rng.normal(0, 0.5, E)
        dom_pref = rng.normal(0, 1.0, (D, E))
        tok_pref = rng.normal(0, 1.2, (vocab, E))
        ar = np.zeros((T, E))
        for s in range(n_seq):
            b, e = seq_begin[s], seq_begin[s + 1]
            x = rng.normal(0, 1, E)
            for t in range(b, e):
                x = 0.85 * x + 0.5 * rng.normal(0, 1, E)
                ar[t] = x
        z = base + dom_pref[tok_dom] + tok_pref[token_ids] + ar
        bias = np.zeros(E)
        for jj, e in dead:
            if jj == j:
                z[:, e] -= 2.0
                bias[e] = -np.inf
        for jj, e in monopoly:
            if jj == j:
                z[:, e] += 1.5
                bias[e] = np.inf
        z = z.astype(np.float32)
        z64 = z.astype(np.float64)
        p = softmax64(z)
        if scoring == "sigmoid":
            s = 1.0 / (1.0 + np.exp(-z64))
            key = s + np.where(np.isfinite(bias), rng.normal(0, 0.3, E), 0) + bias
            score = s
        else:
            key = p + bias
            score = p
        order = np.argsort(-key, axis=1, kind="stable")[:, :k]
        g = np.take_along_axis(score, order, axis=1)
        if scoring == "sigmoid":
            g = g / g.sum(axis=1, keepdims=True) * 2.5
        elif norm_topk:
            g = g / g.sum(axis=1, keepdims=True)
        # Expert outputs of routed (token, expert) pairs.
        norms = rng.lognormal(0.0, 0.4, (T, k))
        max_abs = norms * rng.uniform(0.1, 0.4, (T, k))
        if super_expert is not None and super_expert[0] == j:
            max_abs = np.where(order == super_expert[1], max_abs * 40.0, max_abs)
        sum_prob = np.zeros((n_seq, E))
        sum_cent = np.zeros((n_seq, E))
        sum_ent = np.zeros(n_seq)
        sum_norm = np.zeros((n_seq, E))
        max_out = np.zeros((n_seq, E), dtype=np.float32)
        cent = z64 - z64.mean(axis=1, keepdims=True)
        ent = -(p * np.log(p, where=p > 0, out=np.zeros_like(p))).sum(axis=1)
        for s in range(n_seq):
            b, e = seq_begin[s], seq_begin[s + 1]
            sum_prob[s] = p[b:e].sum(axis=0)
            sum_cent[s] = cent[b:e].sum(axis=0)
            sum_ent[s] = ent[b:e].sum()
            for t in range(b, e):
                for slot in range(k):
                    ie = order[t, slot]
                    sum_norm[s, ie] += norms[t, slot]
                    max_out[s, ie] = max(max_out[s, ie], np.float32(max_abs[t, slot]))
        layers.append({"selected": order.astype(np.int16 if E <= 32767 else np.int32),
                       "gates": g.astype(np.float32), "seq_sum_prob": sum_prob,
                       "seq_sum_centered_logit": sum_cent, "seq_sum_out_norm": sum_norm,
                       "seq_sum_entropy": sum_ent, "seq_max_abs_out": max_out,
                       "sample_logits": z[sample_rows]})
        if keep_logits:
            layers[-1]["logits"] = z
    meta = {"model_type": model_type or ("deepseek_v3" if scoring == "sigmoid" else "qwen3_moe"),
            "model_name": f"synthetic-{seed}", "n_layer": n_layer, "n_expert": E,
            "n_expert_used": k, "scoring": scoring, "logit_sample_stride": stride,
            "domains": list(domains), "moe_layers": moe_layers}
    return {"meta": meta, "token_ids": token_ids, "seq_begin": seq_begin,
            "seq_domain": np.array(seq_domains, dtype=np.int32), "sample_rows": sample_rows,
            "layers": layers}


def preset(name, seed, **extra):
    """The traces the interop test uses (E = 8..16, k = 1..4); extra: more generate() options."""
    if name == "random":
        return generate(seed, n_expert=8, k=2, n_layer=4, scoring="softmax",
                        super_expert=(0, 3), **extra)
    if name == "adversarial":
        # DeepSeek-V3-like: first layer dense, sigmoid + selection bias, a dead expert, a layer
        # where expert 5 is in every selection, the largest max_abs_out in the last layer (beyond
        # the first 75%, so no super expert), sample stride 5.
        return generate(seed, n_expert=16, k=4, n_layer=5, moe_layers=[1, 2, 3, 4], scoring="sigmoid",
                        stride=5, dead=[(0, 7), (2, 0)], monopoly=[(1, 5)], super_expert=(3, 2),
                        seq_lengths=(260, 2, 33, 150, 16, 70, 4, 180), **extra)
    if name == "top1":
        # k = 1: a layer where one expert takes all the load; a domain with a single sequence.
        return generate(seed, n_expert=12, k=1, n_layer=3, domains=("prose", "code"),
                        seq_lengths=(200, 150, 9, 120, 60, 31), seq_domains=[0, 0, 0, 1, 0, 0],
                        monopoly=[(2, 11)], dead=[(0, 4)], super_expert=(0, 9), norm_topk=False, **extra)
    raise ValueError(f"unknown preset {name!r}")


def write_trace(trace, path):
    meta = trace["meta"]
    md = {"format": "moekit-trace", "trace_version": "1", "model_type": meta["model_type"],
          "model_name": meta["model_name"], "n_layer": str(meta["n_layer"]),
          "n_expert": str(meta["n_expert"]), "n_expert_used": str(meta["n_expert_used"]),
          "scoring": meta["scoring"], "logit_sample_stride": str(meta["logit_sample_stride"]),
          "domains": json.dumps(meta["domains"]), "moe_layers": json.dumps(meta["moe_layers"])}
    sel_dtype = np.int16 if meta["n_expert"] <= 32767 else np.int32
    tensors = {"token_ids": trace["token_ids"].astype(np.int32),
               "seq_begin": trace["seq_begin"].astype(np.int64),
               "seq_domain": trace["seq_domain"].astype(np.int32),
               "sample_rows": trace["sample_rows"].astype(np.int64)}
    dtypes = {"selected": sel_dtype, "gates": np.float32, "seq_sum_prob": np.float64,
              "seq_sum_centered_logit": np.float64, "seq_sum_out_norm": np.float64,
              "seq_sum_entropy": np.float64, "seq_max_abs_out": np.float32,
              "sample_logits": np.float32}
    for j, ly in enumerate(trace["layers"]):
        for key, dt in dtypes.items():
            tensors[f"layers.{j}.{key}"] = np.ascontiguousarray(ly[key].astype(dt))
    save_file(tensors, str(path), metadata=md)


def split_trace(trace, first_seqs, domain_order=None):
    """(a, b): sequences [0, first_seqs) and the rest, as two self-contained traces. b's domain
    list is reordered by domain_order (names) to exercise merging by name."""
    b_all = trace["seq_begin"]
    out = []
    for s0, s1 in ((0, first_seqs), (first_seqs, len(b_all) - 1)):
        r0, r1 = int(b_all[s0]), int(b_all[s1])
        names = trace["meta"]["domains"]
        used = [names[int(d)] for d in trace["seq_domain"][s0:s1]]
        doms = [n for n in names if n in used]
        if s0 > 0 and domain_order:
            doms = [n for n in domain_order if n in used]
        keep = (trace["sample_rows"] >= r0) & (trace["sample_rows"] < r1)
        layers = []
        for ly in trace["layers"]:
            layers.append({key: (v[r0:r1] if key in ("selected", "gates") else
                                 v[keep] if key == "sample_logits" else v[s0:s1])
                           for key, v in ly.items() if key in profile_stats.LAYER_KEYS})
        meta = dict(trace["meta"])
        meta["domains"] = doms
        out.append({"meta": meta, "token_ids": trace["token_ids"][r0:r1],
                    "seq_begin": trace["seq_begin"][s0:s1 + 1] - r0,
                    "seq_domain": np.array([doms.index(n) for n in used], dtype=np.int32),
                    "sample_rows": trace["sample_rows"][keep] - r0, "layers": layers})
    return out[0], out[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--preset", default="random", choices=["random", "adversarial", "top1"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concat", nargs="+", metavar="TRACE")
    a = ap.parse_args()
    if a.concat:
        trace = profile_stats.merge_traces([profile_stats.load_trace(p) for p in a.concat])
    else:
        trace = preset(a.preset, a.seed)
    write_trace(trace, a.out)
    print(f"wrote {a.out}: {len(trace['token_ids'])} tokens, {len(trace['seq_begin']) - 1} sequences, "
          f"{len(trace['layers'])} MoE layers")


if __name__ == "__main__":
    main()
