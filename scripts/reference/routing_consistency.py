#!/usr/bin/env python3
"""Brute-force reference for local routing consistency (METHODS.md §2): SRP at expert, layer and
model level, SCH, LRU and LFU hit counts. Written directly from the definitions with explicit
windows and loops, no cleverness; used to generate tests/golden/consistency/cases.json.

Conventions (same as analysis/consistency.h):
  * alpha_star = smallest alpha attaining the max F1 (compared exactly with Fractions);
    rho_hat = Pred(alpha_star)/Act, 0 when Act == 0.
  * hit_rate = hits / requests with requests = sum_i |R_i| (= T*k).
  * LRU/LFU: hit iff in cache at token start; then, per request in order, a missing expert is
    inserted after evicting (if |cache| >= C) argmin last[y] (LRU) or argmin (freq[y], last[y])
    (LFU, freq = requests so far in the sequence); then ts += 1, last[x] = ts, freq[x] += 1.

Usage: routing_consistency.py [OUT_JSON]   (default tests/golden/consistency/cases.json)
"""
import json
import os
import random
import sys
from fractions import Fraction


# ------------------------------------------------------------------------------------------ SRP
def expert_histogram(seqs, e, m):
    """seqs: list of sequences, each a list of token lists of expert ids. Explicit windows."""
    h = [0] * (m + 1)
    for seq in seqs:
        T = len(seq)
        for p in range(0, T - m + 1):
            c = 0
            for i in range(p, p + m):
                if e in seq[i]:
                    c += 1
            h[c] += 1
    return h


def srp_of_histogram(h, m):
    act = sum(c * h[c] for c in range(m + 1))
    best = None
    for alpha in range(0, m + 1):
        tp = sum(c * h[c] for c in range(alpha, m + 1))
        pred = m * sum(h[c] for c in range(alpha, m + 1))
        f1 = Fraction(2 * tp, max(pred + act, 1))
        if best is None or f1 > best[0]:
            best = (f1, alpha, tp, pred)
    f1, alpha, tp, pred = best
    rho = (pred / act) if act > 0 else 0.0
    return {"f1": float(f1), "alpha_star": alpha, "rho_hat": rho, "tp": tp, "pred": pred,
            "act": act}


def add_hist(a, b):
    return [x + y for x, y in zip(a, b)]


# ------------------------------------------------------------------------------------------ SCH
def sch_hits(R, C, m):
    """Exactly the METHODS.md pseudocode. R: list over tokens of request lists."""
    T = len(R)
    cache = set()
    seen = set()
    last = {}
    ts = 0
    hits = 0
    for i in range(T):
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
                    def key(y):
                        f = sum(1 for j in range(i, min(i + m, T)) if y in R[j])
                        f -= 1 if y in done else 0
                        return (f, last.get(y, 0))
                    victim = min(cache, key=key)
                    cache.remove(victim)
                cache.add(x)
            ts += 1
            last[x] = ts
            seen.add(x)
            done.add(x)
    return hits


def lru_lfu_hits(R, C, use_freq):
    cache = set()
    last = {}
    freq = {}
    ts = 0
    hits = 0
    for Ri in R:
        for x in Ri:
            if x in cache:
                hits += 1
        for x in Ri:
            if x not in cache:
                if len(cache) >= C:
                    if use_freq:
                        victim = min(cache, key=lambda y: (freq.get(y, 0), last[y]))
                    else:
                        victim = min(cache, key=lambda y: last[y])
                    cache.remove(victim)
                cache.add(x)
            ts += 1
            last[x] = ts
            freq[x] = freq.get(x, 0) + 1
    return hits


# ------------------------------------------------------------------------------------ one case
def evaluate(case):
    """case: n_expert, k, m, rhos, trace[layer][seq][token] = list of k ids."""
    E, k, m = case["n_expert"], case["k"], case["m"]
    trace = case["trace"]
    L = len(trace)
    n_seq = len(trace[0])
    layers = []
    model_h = [0] * (m + 1)
    for il in range(L):
        seqs = trace[il]
        experts = []
        layer_h = [0] * (m + 1)
        for e in range(E):
            h = expert_histogram(seqs, e, m)
            experts.append(srp_of_histogram(h, m))
            layer_h = add_hist(layer_h, h)
        model_h = add_hist(model_h, layer_h)
        caches = []
        for s in range(n_seq):
            R = seqs[s]
            per_rho = []
            for rho in case["rhos"]:
                C = rho * k
                per_rho.append({"rho": rho, "capacity": C,
                                "sch": sch_hits(R, C, m),
                                "lru": lru_lfu_hits(R, C, False),
                                "lfu": lru_lfu_hits(R, C, True),
                                "requests": sum(len(r) for r in R)})
            caches.append(per_rho)
        layers.append({"experts": experts, "layer_hist": layer_h,
                       "layer": srp_of_histogram(layer_h, m), "cache": caches})
    model_cache = []
    for s in range(n_seq):
        T = len(trace[0][s])
        R = [[il * E + x for il in range(L) for x in trace[il][s][i]] for i in range(T)]
        per_rho = []
        for rho in case["rhos"]:
            C = rho * L * k
            per_rho.append({"rho": rho, "capacity": C, "sch": sch_hits(R, C, m),
                            "lru": lru_lfu_hits(R, C, False),
                            "lfu": lru_lfu_hits(R, C, True),
                            "requests": sum(len(r) for r in R)})
        model_cache.append(per_rho)
    return {"layers": layers, "model_hist": model_h, "model": srp_of_histogram(model_h, m),
            "model_cache": model_cache}


# ------------------------------------------------------------------------------ case generation
def random_token(rng, E, k, skew):
    if skew == 0:
        return rng.sample(range(E), k)
    weights = [1.0 / (1 + e) ** skew for e in range(E)]
    chosen = []
    while len(chosen) < k:
        e = rng.choices(range(E), weights)[0]
        if e not in chosen:
            chosen.append(e)
    return chosen


def sticky_seq(rng, E, k, T, stay):
    """Markov trace: each token keeps the previous set with probability `stay`."""
    cur = rng.sample(range(E), k)
    out = []
    for _ in range(T):
        if rng.random() >= stay:
            cur = rng.sample(range(E), k)
        out.append(list(cur))
    return out


def make_cases():
    cases = []
    seed = 0
    for E, k in [(4, 1), (4, 2), (8, 1), (8, 2), (8, 4), (16, 2), (16, 4)]:
        for m, long_run in [(4, False), (16, False), (4, True), (16, True)]:
            seed += 1
            rng = random.Random(seed)
            L = rng.choice([1, 2, 3])
            if long_run:
                lengths = [rng.choice([60, 120, 200]), rng.choice([m - 1, m, 90])]
            else:
                lengths = [rng.choice([1, 3, m - 1, m, m + 1, 40, 90, 200]) for _ in range(2)]
            mode = seed % 3
            trace = []
            for il in range(L):
                seqs = []
                for T in lengths:
                    if mode == 0:
                        seqs.append([random_token(rng, E, k, 0) for _ in range(T)])
                    elif mode == 1:
                        seqs.append([random_token(rng, E, k, 1.5) for _ in range(T)])
                    else:
                        seqs.append(sticky_seq(rng, E, k, T, 0.8))
                trace.append(seqs)
            cases.append({"name": f"random_E{E}_k{k}_m{m}_seed{seed}", "n_expert": E, "k": k,
                          "m": m, "rhos": [1, 2, 3], "trace": trace})

    def adv(name, E, k, m, seqs_per_layer):
        cases.append({"name": name, "n_expert": E, "k": k, "m": m, "rhos": [1, 2, 3],
                      "trace": seqs_per_layer})

    for m in (4, 16):
        T = 50
        adv(f"one_expert_always_m{m}", 4, 1, m, [[[[2] for _ in range(T)]]])
        adv(f"round_robin_E8_k1_m{m}", 8, 1, m, [[[[t % 8] for t in range(T)]]])
        adv(f"round_robin_E8_k2_m{m}", 8, 2, m,
            [[[[(2 * t) % 8, (2 * t + 1) % 8] for t in range(T)]]])
        adv(f"alternating_blocks_m{m}", 8, 2, m,
            [[[[0, 1] if (t // 5) % 2 == 0 else [6, 7] for t in range(60)]],
             [[[3, 2] if (t // 7) % 2 == 0 else [2, 5] for t in range(60)]]])
        adv(f"equal_load_E4_k2_m{m}", 4, 2, m,
            [[[[[0, 1], [2, 3]][t % 2] for t in range(48)],
              [[[0, 2], [1, 3], [0, 3], [1, 2]][t % 4] for t in range(33)]]])
        adv(f"repeated_token_E16_k4_m{m}", 16, 4, m,
            [[[[9, 3, 14, 0] for _ in range(70)]], [[[1, 2, 3, 4] for _ in range(70)]]])
        adv(f"short_sequences_m{m}", 8, 2, m,
            [[[[0, 1]], [[2, 3], [3, 2], [2, 4]], [[t % 8, (t + 3) % 8] for t in range(m)]]])
        adv(f"k_equals_E_m{m}", 4, 4, m, [[[[3, 1, 0, 2] for _ in range(20)]]])
    return cases


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "..", "tests", "golden", "consistency", "cases.json")
    cases = make_cases()
    for c in cases:
        c["expected"] = evaluate(c)
    doc = {"schema_version": 1,
           "generator": "scripts/reference/routing_consistency.py",
           "conventions": {"alpha_star": "smallest maximizing alpha",
                           "rho_hat_when_act_zero": 0.0,
                           "capacity_layer": "rho*k", "capacity_model": "rho*L*k",
                           "model_ids": "layer*E + id, layers concatenated in order",
                           "lru_lfu": "hit iff cached at token start; cold misses are misses; "
                                      "LFU key (requests so far, last use)"},
           "cases": cases}
    with open(out, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
