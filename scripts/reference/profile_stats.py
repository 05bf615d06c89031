#!/usr/bin/env python3
"""Independent reference for every value `moekit profile` reports (docs/PROFILE.md, METHODS.md §1-4),
computed from routing-trace files with plain numpy and Python loops, written from the definitions
and not from the C++ code. tests/interop/test_profile_reference.py compares moekit's profile.json
against compute(); the returned dict has the keys of profile.json's `data`, `model_level`,
`layers[]` and `super_experts`, with bare values where profile.json has {"value", "ci95"}.

Conventions fixed here where METHODS.md leaves a choice (named in CONVENTIONS below):
  * Selection = the trace's `selected` rows as stored (router rank order, the architecture's own
    selection incl. biases); SCH/LRU/LFU process a token's requests by descending gate weight
    (METHODS.md §2), ties in that stored order. Top-1 (vocab specialization) = the first column.
  * SRP (§2): alpha_star = smallest maximizing alpha, rho_hat = 0 when Act = 0, F1 = 0 when there
    are no windows; values x100, expert level too. SCH/LRU/LFU: per-sequence hit rate
    hits/(T_s * requests per token), unweighted mean over sequences, x100; SCH look-ahead m =
    default segment length (16). Model level: one cache over all layers (ids j*E + e, layers in
    moe order), C = rho*L*k. LRU/LFU as scripts/reference/routing_consistency.py.
  * Load (§1): per layer; model-level *_mean = mean over layers; dead_experts = number of
    (layer, expert) pairs with zero load; aux loss pools all layers' tokens (HF
    load_balancing_loss_func) with p = softmax of the raw logits (seq_sum_prob) and the stored
    selection; router entropy = sum(seq_sum_entropy) / T.
  * Congestion (§3): q_e = sum(seq_sum_centered_logit)/T, rho = load shares. Single: T* =
    argmin_{T>0} L1(softmax(q/T), rho), gamma = E*(T*-1), softmax_l1 = L1 at T = 1. Multi: on the
    sampled logits, rho*(gamma) = the unique solution of rho = mean_t softmax(z_t - gamma*rho)
    (Newton on the strictly convex potential gamma/2|r|^2 + mean_t logsumexp(z_t - gamma*r)),
    gamma* = argmin_{gamma>=0} L1(rho*(gamma), rho), softmax_l1 = L1 at gamma = 0, i.e.
    L1(mean_t softmax(z_t), rho) over the sampled tokens. Model level {min, max, mean} over layers.
    Search: T in [1e-4, 1e4], gamma in [0, 1e4] (dense log grid + golden section); an optimum at
    the far end of a range is flagged "at_search_bound" (the infimum is not attained).
  * Specialization (§4): domain rate N_{e,D}/N_D (null row for a domain without tokens);
    domain_cv = sample std (ddof 1)/mean over domains with rate > 1e-5, null with fewer than 2.
    Vocabulary: ids with >= vocab_min_count occurrences; argmax ties -> smallest expert; `next`
    attributes position t's top-1 to token t+1 of the same sequence (last token excluded, the
    count is over those pairs). JSD with natural logs, q_D = mean softmax over D's tokens,
    normalized by ln E - (H_A+H_B)/2 (0 when the numerator is 0). Co-activation and affinity
    rows of experts with no tokens, and their topk_mass, are null; affinity pairs MoE layer j with
    MoE layer j+1 (null for the last); `top` = the 10 largest entries, value desc, then (from, to).
  * Super experts: m = max over sequences of seq_max_abs_out; percentile = numpy linear
    interpolation over all MoE layers' (layer, expert) values; super iff m > P99.5, m > max/10 and
    the decoder layer index < 0.75 * n_layer.

Usage: profile_stats.py TRACE... [--json] [--segment-lengths 4,16,64,256] [--cache-ratios 1,2,3,4]
                        [--vocab-min-count 20]
"""
import argparse
import json
import math
import os
import sys
from collections import Counter

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import routing_consistency as rc  # noqa: E402  (SRP of a histogram, LRU/LFU brute force)

DEFAULT_PARAMS = {
    "segment_lengths": [4, 16, 64, 256],
    "cache_ratios": [1, 2, 3, 4],
    "default_segment_length": 16,
    "vocab_min_count": 20,
    "super_experts": {"percentile": 99.5, "max_fraction": 0.1, "layer_fraction": 0.75},
    "affinity_top": 10,
}

LAYER_KEYS = ["selected", "gates", "seq_sum_prob", "seq_sum_centered_logit", "seq_sum_out_norm",
              "seq_sum_entropy", "seq_max_abs_out", "sample_logits"]


# ------------------------------------------------------------------------------------ trace I/O
def load_trace(path):
    """A trace file as a dict: meta (parsed), token_ids, seq_begin, seq_domain, sample_rows,
    layers[j] = {selected, gates, seq_sum_*, seq_max_abs_out, sample_logits}."""
    with safe_open(str(path), framework="np") as f:
        md = f.metadata() or {}
    if md.get("format") != "moekit-trace":
        raise ValueError(f"{path}: not a moekit trace (format={md.get('format')!r})")
    t = load_file(str(path))
    meta = {"model_type": md["model_type"], "model_name": md.get("model_name", ""),
            "n_layer": int(md["n_layer"]), "n_expert": int(md["n_expert"]),
            "n_expert_used": int(md["n_expert_used"]), "scoring": md["scoring"],
            "logit_sample_stride": int(md["logit_sample_stride"]),
            "domains": json.loads(md["domains"]), "moe_layers": json.loads(md["moe_layers"])}
    layers = []
    for j in range(len(meta["moe_layers"])):
        layers.append({key: t[f"layers.{j}.{key}"] for key in LAYER_KEYS})
    return {"meta": meta, "token_ids": t["token_ids"], "seq_begin": t["seq_begin"],
            "seq_domain": t["seq_domain"], "sample_rows": t["sample_rows"], "layers": layers}


def merge_traces(traces):
    """Concatenates traces of the same model in order; domains matched by name, new ones appended."""
    first = traces[0]["meta"]
    facts = ["n_layer", "n_expert", "n_expert_used", "scoring", "moe_layers", "logit_sample_stride"]
    for tr in traces[1:]:
        for key in facts:
            if tr["meta"][key] != first[key]:
                raise ValueError(f"traces differ in {key}")
    domains = []
    for tr in traces:
        for d in tr["meta"]["domains"]:
            if d not in domains:
                domains.append(d)
    token_ids, seq_begin, seq_domain, sample_rows = [], [0], [], []
    offset = 0
    for tr in traces:
        names = tr["meta"]["domains"]
        token_ids.append(tr["token_ids"])
        seq_begin.extend(int(b) + offset for b in tr["seq_begin"][1:])
        seq_domain.extend(domains.index(names[int(d)]) for d in tr["seq_domain"])
        sample_rows.append(tr["sample_rows"].astype(np.int64) + offset)
        offset += len(tr["token_ids"])
    layers = []
    for j in range(len(first["moe_layers"])):
        layers.append({key: np.concatenate([tr["layers"][j][key] for tr in traces]) for key in LAYER_KEYS})
    meta = dict(first)
    meta["domains"] = domains
    return {"meta": meta, "token_ids": np.concatenate(token_ids).astype(np.int32),
            "seq_begin": np.array(seq_begin, dtype=np.int64),
            "seq_domain": np.array(seq_domain, dtype=np.int32),
            "sample_rows": np.concatenate(sample_rows).astype(np.int64), "layers": layers}


def as_trace(x):
    if isinstance(x, dict):
        return x
    if isinstance(x, (str, os.PathLike)):
        return load_trace(x)
    return merge_traces([as_trace(t) for t in x])


# -------------------------------------------------------------------------------- small helpers
def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    y = np.exp(x - x.max(axis=-1, keepdims=True))
    return y / y.sum(axis=-1, keepdims=True)


def entropy(p):
    return -sum(float(v) * math.log(float(v)) for v in p if v > 0)


def sequences(tr):
    b = tr["seq_begin"]
    return [(int(b[s]), int(b[s + 1])) for s in range(len(b) - 1)]


# --------------------------------------------------------------------------------- §1 load
def load_stats(sel, E, k, sum_entropy, T):
    counts = [0] * E
    for row in sel:
        for e in row:
            counts[int(e)] += 1
    tk = T * k
    mean = tk / E
    shares = [c / tk for c in counts]
    x = sorted(counts)
    n = E
    gini = sum((2 * (i + 1) - n - 1) * x[i] for i in range(n)) / (n * sum(x))
    var = sum((c - mean) ** 2 for c in counts) / E
    return {"counts": counts, "shares": shares,
            "max_vio": (max(counts) - mean) / mean,
            "cv": math.sqrt(var) / mean,
            "entropy": entropy(shares) / math.log(E),
            "gini": gini,
            "jain": sum(counts) ** 2 / (n * sum(c * c for c in counts)),
            "router_entropy": float(np.sum(sum_entropy)) / T,
            "dead": [e for e in range(E) if counts[e] == 0]}


# ------------------------------------------------------------------------- §2 consistency
def window_histograms(sel, seqs, E, m):
    """h[e, c] = #windows (start p = 0..T_s-m of each sequence) where e is active c times."""
    h = np.zeros((E, m + 1), dtype=np.int64)
    for b, e_ in seqs:
        n = e_ - b
        if n < m:
            continue
        act = np.zeros((n, E), dtype=np.int64)
        for i in range(n):
            act[i, sel[b + i]] = 1
        cs = np.vstack([np.zeros((1, E), dtype=np.int64), np.cumsum(act, axis=0)])
        counts = cs[m:] - cs[:-m]  # [n-m+1, E]
        for ie in range(E):
            h[ie] += np.bincount(counts[:, ie], minlength=m + 1)
    return h


def srp_entry(h, m):
    r = rc.srp_of_histogram([int(v) for v in h], m)
    return {"value": 100.0 * r["f1"], "alpha_star": r["alpha_star"], "rho_hat": r["rho_hat"]}


def sch_hits(R, C, m):
    """METHODS.md §2 SCH pseudocode; f(y) from the requests of tokens [i, i+m) counted once per token."""
    T = len(R)
    cache, seen, last = set(), set(), {}
    ts = hits = 0
    for i in range(T):
        future = Counter()
        for j in range(i, min(i + m, T)):
            for y in set(R[j]):
                future[y] += 1
        u = len(seen)
        for x in R[i]:
            if x not in seen:
                hits += 1 if u < C else 0
                u += 1
            elif x in cache:
                hits += 1
        done = set()
        for x in R[i]:
            if x not in cache:
                if len(cache) >= C:
                    victim = min(cache, key=lambda y: (future[y] - (1 if y in done else 0), last[y]))
                    cache.remove(victim)
                cache.add(x)
            ts += 1
            last[x] = ts
            seen.add(x)
            done.add(x)
    return hits


def cache_rates(requests_per_seq, C, m):
    """Mean over sequences of hit rates (x100) for SCH, LRU and LFU."""
    out = {"sch": [], "lru": [], "lfu": []}
    for R in requests_per_seq:
        n_req = sum(len(r) for r in R)
        if n_req == 0:
            continue
        out["sch"].append(sch_hits(R, C, m) / n_req)
        out["lru"].append(rc.lru_lfu_hits(R, C, False) / n_req)
        out["lfu"].append(rc.lru_lfu_hits(R, C, True) / n_req)
    return {key: 100.0 * sum(v) / len(v) if v else 0.0 for key, v in out.items()}


def consistency(tr, params):
    E, k = tr["meta"]["n_expert"], tr["meta"]["n_expert_used"]
    L = len(tr["layers"])
    seqs = sequences(tr)
    m_default = params["default_segment_length"]
    sels = [[list(map(int, row)) for row in ly["selected"]] for ly in tr["layers"]]
    layers = [{"srp": {}, "srp_expert": {}, "sch": {}, "lru": {}, "lfu": {}} for _ in range(L)]
    model = {"srp": {}, "sch": {}, "lru": {}, "lfu": {}}
    for m in params["segment_lengths"]:
        model_h = np.zeros(m + 1, dtype=np.int64)
        for j in range(L):
            h = window_histograms(sels[j], seqs, E, m)
            layers[j]["srp"][str(m)] = srp_entry(h.sum(axis=0), m)
            layers[j]["srp_expert"][str(m)] = [srp_entry(h[e], m)["value"] for e in range(E)]
            model_h += h.sum(axis=0)
        model["srp"][str(m)] = srp_entry(model_h, m)
    # Cache requests: a token's selected experts by descending gate weight (METHODS.md §2), ties
    # in router rank order (a stable sort of the stored row).
    reqs_of = []
    for j in range(L):
        gates = tr["layers"][j]["gates"]
        reqs_of.append([[row[a] for a in sorted(range(len(row)), key=lambda a: -float(gates[t][a]))]
                        for t, row in enumerate(sels[j])])
    for rho in params["cache_ratios"]:
        for j in range(L):
            reqs = [reqs_of[j][b:e] for b, e in seqs]
            r = cache_rates(reqs, rho * k, m_default)
            for key in ("sch", "lru", "lfu"):
                layers[j][key][str(rho)] = {"value": r[key], "capacity": rho * k}
        reqs = [[[j * E + x for j in range(L) for x in reqs_of[j][i]] for i in range(b, e)] for b, e in seqs]
        r = cache_rates(reqs, rho * L * k, m_default)
        for key in ("sch", "lru", "lfu"):
            model[key][str(rho)] = {"value": r[key], "capacity": rho * L * k}
    return model, layers


# --------------------------------------------------------------------------- §3 congestion
def l1(a, b):
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).sum())


def single_l1(q, rho, temperature):
    return l1(softmax(np.asarray(q, dtype=np.float64) / temperature), rho)


def golden_min(f, a, b, tol=1e-13):
    """Golden-section minimum of f on [a, b] (f continuous, assumed unimodal there)."""
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol * max(1.0, abs(a) + abs(b)):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (c, fc) if fc <= fd else (d, fd)


def fit_grid(f, grid):
    """Dense grid, then golden-section on the bracket around the best grid point (in log space
    when the grid is positive). Returns (argmin, min), preferring the grid value on ties."""
    vals = [f(x) for x in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    x, fx = golden_min(f, lo, hi)
    return (x, fx) if fx < vals[i] else (grid[i], vals[i])


# Search ranges. An optimum at the end of a range is not attained (e.g. L1 -> 0 as T -> 0 when all
# load is on the top-quality expert); the result then says "at_search_bound": true.
T_RANGE = (1e-4, 1e4)
GAMMA_MAX = 1e4


def fit_temperature(q, rho):
    grid = list(np.exp(np.linspace(math.log(T_RANGE[0]), math.log(T_RANGE[1]), 4001)))
    return fit_grid(lambda t: single_l1(q, rho, t), grid)


def fixed_point(Z, gamma, start=None):
    """rho solving rho = mean_t softmax(Z_t - gamma*rho), by Newton on the strictly convex potential
    F(r) = gamma/2 |r|^2 + mean_t logsumexp(Z_t - gamma*r), whose gradient is gamma*(r - mean
    softmax). Backtracking uses F's change computed without cancellation:
    F(r+d) - F(r) = gamma*(r.d + |d|^2/2) + mean_t log1p(sum_e pi_te expm1(-gamma d_e))."""
    Z = np.asarray(Z, dtype=np.float64)
    E = Z.shape[1]
    if gamma == 0:
        return softmax(Z).mean(axis=0)
    r = np.full(E, 1.0 / E) if start is None else np.array(start, dtype=np.float64)
    for _ in range(100):
        P = softmax(Z - gamma * r)
        g = r - P.mean(axis=0)
        if np.abs(g).max() < 1e-15:
            break
        J = np.eye(E) + gamma * (np.diag(P.mean(axis=0)) - P.T @ P / len(P))
        d = -np.linalg.solve(J, g)
        slope = gamma * float(g @ d)  # directional derivative of F, < 0
        step = 1.0
        while step > 1e-10:
            sd = step * d
            delta = gamma * (float(r @ sd) + float(sd @ sd) / 2) + \
                float(np.mean(np.log1p(P @ np.expm1(-gamma * sd))))
            if delta <= 1e-4 * step * slope:
                break
            step /= 2
        r_new = r + step * d
        if np.array_equal(r_new, r):
            break
        r = r_new
    return r


def multi_l1(Z, rho, gamma):
    return l1(fixed_point(Z, gamma), rho)


def fit_gamma(Z, rho):
    grid = [0.0] + list(np.exp(np.linspace(math.log(1e-3), math.log(GAMMA_MAX), 701)))
    last = [None]  # continuation: start Newton from the previous gamma's fixed point

    def objective(g):
        last[0] = fixed_point(Z, g, last[0])
        return l1(last[0], rho)

    return fit_grid(objective, grid)


def congestion_inputs(tr, j):
    """(q, rho, sampled logits) of MoE layer j: what both congestion fits consume."""
    ly = tr["layers"][j]
    T = len(tr["token_ids"])
    E, k = tr["meta"]["n_expert"], tr["meta"]["n_expert_used"]
    q = ly["seq_sum_centered_logit"].astype(np.float64).sum(axis=0) / T
    counts = np.bincount(ly["selected"].astype(np.int64).ravel(), minlength=E)
    return q, counts / (T * k), ly["sample_logits"].astype(np.float64)


def congestion(tr, j):
    E = tr["meta"]["n_expert"]
    q, rho, Z = congestion_inputs(tr, j)
    t_star, l1_t = fit_temperature(q, rho)
    near = 1 + 1e-3
    out = {"single": {"temperature": t_star, "gamma": E * (t_star - 1), "l1": l1_t,
                      "softmax_l1": single_l1(q, rho, 1.0),
                      "at_search_bound": not T_RANGE[0] * near < t_star < T_RANGE[1] / near},
           "multi": None, "quality": "centered_logit"}
    if len(Z):
        g_star, l1_g = fit_gamma(Z, rho)
        out["multi"] = {"gamma": g_star, "l1": l1_g, "softmax_l1": multi_l1(Z, rho, 0.0),
                        "converged": True, "at_search_bound": bool(g_star > GAMMA_MAX / near)}
    return out


# ------------------------------------------------------------------------ §4 specialization
def vocab_scores(pairs, E, min_count):
    """pairs: (token id, top-1 expert). Per expert: mean over ids whose argmax is e of
    max_e P(top1 = e | id), over ids seen >= min_count times; None where no id."""
    by_id = {}
    for v, e in pairs:
        by_id.setdefault(v, [0] * E)[e] += 1
    per_expert = [[] for _ in range(E)]
    for v, cnt in by_id.items():
        n = sum(cnt)
        if n < min_count:
            continue
        best = max(range(E), key=lambda e: (cnt[e], -e))
        per_expert[best].append(cnt[best] / n)
    return [sum(s) / len(s) if s else None for s in per_expert]


def normalized_jsd(a, b, E):
    ha, hb = entropy(a), entropy(b)
    mix = [(x + y) / 2 for x, y in zip(a, b)]
    num = entropy(mix) - (ha + hb) / 2
    den = math.log(E) - (ha + hb) / 2
    if num == 0:
        return 0.0
    return num / den if den > 0 else None


def specialization(tr, j, params):
    meta = tr["meta"]
    E, k = meta["n_expert"], meta["n_expert_used"]
    D = len(meta["domains"])
    ly = tr["layers"][j]
    sel = [list(map(int, r)) for r in ly["selected"]]
    seqs = sequences(tr)
    tok_dom = []
    for s, (b, e) in enumerate(seqs):
        tok_dom += [int(tr["seq_domain"][s])] * (e - b)
    # Domain rates and routing distributions.
    n_d = [0] * D
    n_ed = [[0] * E for _ in range(D)]
    prob_d = [np.zeros(E) for _ in range(D)]
    for t, row in enumerate(sel):
        d = tok_dom[t]
        n_d[d] += 1
        for e in row:
            n_ed[d][e] += 1
    for s in range(len(seqs)):
        prob_d[int(tr["seq_domain"][s])] += ly["seq_sum_prob"][s].astype(np.float64)
    rate = [[n_ed[d][e] / n_d[d] for e in range(E)] if n_d[d] else None for d in range(D)]
    cv = []
    for e in range(E):
        r = [rate[d][e] for d in range(D) if rate[d] is not None and rate[d][e] > 1e-5]
        if len(r) < 2:
            cv.append(None)
            continue
        mu = sum(r) / len(r)
        sd = math.sqrt(sum((x - mu) ** 2 for x in r) / (len(r) - 1))
        cv.append(sd / mu)
    q = [prob_d[d] / n_d[d] if n_d[d] else None for d in range(D)]
    jsd = [[normalized_jsd(q[a], q[b], E) if q[a] is not None and q[b] is not None else None
            for b in range(D)] for a in range(D)]
    # Vocabulary specialization (top-1 = first selected).
    ids = [int(v) for v in tr["token_ids"]]
    vin = vocab_scores([(ids[t], sel[t][0]) for t in range(len(sel))], E, params["vocab_min_count"])
    vnext = vocab_scores([(ids[t + 1], sel[t][0]) for b, e in seqs for t in range(b, e - 1)], E,
                         params["vocab_min_count"])
    # Co-activation.
    n_i = [0] * E
    both = [[0] * E for _ in range(E)]
    for row in sel:
        for a in row:
            n_i[a] += 1
            for b in row:
                both[a][b] += 1
    coact = [[both[a][b] / n_i[a] if n_i[a] else None for b in range(E)] for a in range(E)]
    # Inter-layer affinity to the next MoE layer.
    affinity = None
    if j + 1 < len(tr["layers"]):
        nxt = [list(map(int, r)) for r in tr["layers"][j + 1]["selected"]]
        trans = [[0] * E for _ in range(E)]
        for t in range(len(sel)):
            for a in sel[t]:
                for b in nxt[t]:
                    trans[a][b] += 1
        matrix = [[trans[a][b] / n_i[a] if n_i[a] else None for b in range(E)] for a in range(E)]
        entries = [(matrix[a][b], a, b) for a in range(E) for b in range(E) if matrix[a][b] is not None]
        entries.sort(key=lambda x: (-x[0], x[1], x[2]))
        top = [{"from": a, "to": b, "value": v} for v, a, b in entries[:params["affinity_top"]]]
        mass = []
        for a in range(E):
            if not n_i[a]:
                mass.append(None)
                continue
            row = sorted(matrix[a], reverse=True)
            mass.append(sum(row[:k]) / sum(row))
        affinity = {"matrix": matrix, "top": top, "topk_mass": mass}
    max_abs = [float(ly["seq_max_abs_out"][:, e].astype(np.float64).max()) if len(seqs) else 0.0
               for e in range(E)]
    return {"domain_rate": rate, "domain_cv": cv, "vocab_input": vin, "vocab_next": vnext,
            "jsd": jsd, "coactivation": coact, "affinity_next": affinity, "max_abs_out": max_abs}


def super_experts(tr, layers_max_abs, params):
    se = params["super_experts"]
    n_layer = tr["meta"]["n_layer"]
    allm = [v for row in layers_max_abs for v in row]
    if not allm:
        return []
    p = float(np.percentile(np.array(allm, dtype=np.float64), se["percentile"]))
    mx = max(allm)
    out = []
    for j, il in enumerate(tr["meta"]["moe_layers"]):
        for e, v in enumerate(layers_max_abs[j]):
            if v > p and v > mx * se["max_fraction"] and il < se["layer_fraction"] * n_layer:
                out.append({"layer": il, "expert": e, "max_abs_out": v})
    return out


# ------------------------------------------------------------------------------------ compute
def compute(traces, params=None):
    """traces: a path, a loaded trace dict, or a list of either (merged in order)."""
    p = dict(DEFAULT_PARAMS)
    p.update(params or {})
    tr = as_trace(traces)
    meta = tr["meta"]
    E, k = meta["n_expert"], meta["n_expert_used"]
    T = len(tr["token_ids"])
    L = len(tr["layers"])
    seqs = sequences(tr)
    dom = []
    for d, name in enumerate(meta["domains"]):
        ss = [s for s in range(len(seqs)) if int(tr["seq_domain"][s]) == d]
        dom.append({"name": name, "tokens": sum(seqs[s][1] - seqs[s][0] for s in ss), "sequences": len(ss)})
    data = {"tokens": T, "sequences": len(seqs), "domains": dom}

    model_cons, layer_cons = consistency(tr, p)
    layers = []
    total_counts = np.zeros(E)
    total_prob = np.zeros(E)
    for j, il in enumerate(meta["moe_layers"]):
        ly = tr["layers"][j]
        load = load_stats([list(map(int, r)) for r in ly["selected"]], E, k, ly["seq_sum_entropy"], T)
        total_counts += np.array(load["counts"], dtype=np.float64)
        total_prob += ly["seq_sum_prob"].astype(np.float64).sum(axis=0)
        layers.append({"layer": il, "moe_index": j, "load": load, "consistency": layer_cons[j],
                       "congestion": congestion(tr, j), "specialization": specialization(tr, j, p)})

    def mean_of(key):
        return sum(ly["load"][key] for ly in layers) / L

    aux = E * float(np.sum((total_counts / (L * T)) * (total_prob / (L * T))))
    model_load = {"max_vio_mean": mean_of("max_vio"), "cv_mean": mean_of("cv"),
                  "entropy_mean": mean_of("entropy"), "gini_mean": mean_of("gini"),
                  "jain_mean": mean_of("jain"), "router_entropy_mean": mean_of("router_entropy"),
                  "aux_loss": aux, "dead_experts": sum(len(ly["load"]["dead"]) for ly in layers)}

    def summary(values):
        values = [v for v in values if v is not None]
        return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)} if values else None

    model_cong = {"gamma_single": summary([ly["congestion"]["single"]["gamma"] for ly in layers]),
                  "gamma_multi": summary([ly["congestion"]["multi"]["gamma"] for ly in layers
                                          if ly["congestion"]["multi"] is not None])}
    supers = super_experts(tr, [ly["specialization"]["max_abs_out"] for ly in layers], p)
    return {"model": {"n_layer": meta["n_layer"], "n_expert": E, "n_expert_used": k,
                      "moe_layers": meta["moe_layers"], "scoring": meta["scoring"]},
            "data": data,
            "model_level": {"load": model_load, "consistency": model_cons, "congestion": model_cong},
            "layers": layers, "super_experts": supers}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    ap.add_argument("--segment-lengths", default="4,16,64,256")
    ap.add_argument("--cache-ratios", default="1,2,3,4")
    ap.add_argument("--vocab-min-count", type=int, default=20)
    a = ap.parse_args()
    params = {"segment_lengths": [int(x) for x in a.segment_lengths.split(",")],
              "cache_ratios": [int(x) for x in a.cache_ratios.split(",")],
              "vocab_min_count": a.vocab_min_count}
    r = compute(a.traces if len(a.traces) > 1 else a.traces[0], params)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    ml = r["model_level"]
    print(f"tokens {r['data']['tokens']}, sequences {r['data']['sequences']}, "
          f"E {r['model']['n_expert']}, k {r['model']['n_expert_used']}")
    print("model load:", {k: round(v, 6) for k, v in ml["load"].items()})
    print("model SRP:", {m: round(v["value"], 4) for m, v in ml["consistency"]["srp"].items()})
    print("model SCH:", {c: round(v["value"], 4) for c, v in ml["consistency"]["sch"].items()})
    print("congestion:", ml["congestion"])
    for ly in r["layers"]:
        c = ly["congestion"]
        print(f"layer {ly['layer']}: max_vio {ly['load']['max_vio']:.4f} dead {ly['load']['dead']} "
              f"T* {c['single']['temperature']:.4f} gamma_multi "
              f"{c['multi']['gamma'] if c['multi'] else None}")
    print("super experts:", r["super_experts"])


if __name__ == "__main__":
    main()
