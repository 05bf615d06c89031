#!/usr/bin/env python3
"""Train moekit's bundled demo MoE: a tiny OLMoE-architecture model (OlmoeForCausalLM).

    python scripts/train_demo_model.py bench            # time a few steps, print s/step
    python scripts/train_demo_model.py train [--steps N] # tokenizer + training + save + report
    python scripts/train_demo_model.py report           # eval/golden/plots from the saved model

Inputs : assets/corpus/train/*.txt, assets/corpus/eval/*.txt (scripts/make_demo_corpus.py)
Outputs: assets/demo-moe/          HF checkpoint (bf16 safetensors, tokenizer, configs)
         docs/demo_loss.csv         training log (every LOG_EVERY steps)
         docs/demo_loss.svg         loss curve (plain SVG text)
         docs/demo_stats.json       eval perplexities, unigram baseline, routing shares
         tests/golden/demo_eval_ids.bin + demo_ppl.json   golden eval ids and fp32 perplexities

Everything is seeded; training runs on CPU with torch.set_num_threads(1) (deterministic as far
as torch on CPU is: the same machine/torch build reproduces the same weights).
Requires torch, transformers >= 5, tokenizers, safetensors.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "assets", "corpus")
OUT_MODEL = os.path.join(ROOT, "assets", "demo-moe")
DOCS = os.path.join(ROOT, "docs")
GOLDEN = os.path.join(ROOT, "tests", "golden")

DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]
SEED = 1234
EOT = "<|endoftext|>"

# ---- tokenizer
VOCAB_SIZE = 4096
MIN_FREQUENCY = 2

# ---- model (OlmoeConfig fields)
MODEL = dict(
    hidden_size=128,
    intermediate_size=128,          # per expert
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    num_experts=16,
    num_experts_per_tok=2,
    norm_topk_prob=False,           # OLMoE-1B-7B default
    router_aux_loss_coef=0.01,      # OLMoE-1B-7B value
    max_position_embeddings=256,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    rms_norm_eps=1e-5,
    hidden_act="silu",
    initializer_range=0.02,
    tie_word_embeddings=False,
    attention_bias=False,
    attention_dropout=0.0,
    clip_qkv=None,
)
SEQ_LEN = 256

# ---- optimisation
BATCH = 16                          # sequences per step (16 x 256 = 4096 tokens)
PEAK_LR = 3e-3
MIN_LR_RATIO = 0.1                  # cosine decays to PEAK_LR * MIN_LR_RATIO
WARMUP = 100
WEIGHT_DECAY = 0.1                  # on matrices (dim >= 2) only; norms unregularised
BETAS = (0.9, 0.95)
EPS = 1e-8
GRAD_CLIP = 1.0
# Router losses, as OLMoE trains them (OLMoE paper §2: L = L_CE + 0.01 L_LB + 0.001 L_RZ):
# L_LB is computed per layer and averaged over layers. transformers' load_balancing_loss_func
# pools the counts of all layers (expert e of layer 0 and expert e of layer 3 share one f_e), so
# it cannot stop experts of one layer from dying: a first run with it left 2/4/7/7 of 16
# experts dead in layers 0..3. We therefore compute the loss ourselves (router_aux_loss_coef
# in config.json is the LB coefficient; the HF pooled value is still logged as hf_aux_loss).
LB_COEF = MODEL["router_aux_loss_coef"]
Z_COEF = 0.001
LOG_EVERY = 10
EVAL_EVERY = 100
DEFAULT_STEPS = 2000

# ---- golden eval
EVAL_TOKENS_PER_DOMAIN = 2048


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_docs(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d for d in text.strip("\n").split("\n\n") if d.strip()]


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(out_dir: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    docs = []
    for d in DOMAINS:
        docs += read_docs(os.path.join(CORPUS, "train", f"{d}.txt"))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=EOT,
        model_max_length=SEQ_LEN,
    )
    fast.save_pretrained(out_dir)
    return fast


def encode_docs(tok, docs: list[str]) -> list[int]:
    """Convention used everywhere: encode each document, append <|endoftext|>."""
    eot = tok.convert_tokens_to_ids(EOT)
    ids: list[int] = []
    enc = tok.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    for e in enc:
        ids.extend(e.ids)
        ids.append(eot)
    return ids


# --------------------------------------------------------------------------- model
def make_config(tok):
    from transformers import OlmoeConfig

    eot = tok.convert_tokens_to_ids(EOT)
    cfg = OlmoeConfig(
        vocab_size=len(tok),
        pad_token_id=eot,
        bos_token_id=None,
        eos_token_id=eot,
        **MODEL,
    )
    return cfg


def lr_at(step: int, total: int) -> float:
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    p = (step - WARMUP) / max(1, total - WARMUP)
    return PEAK_LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def router_losses(router_logits, n_expert: int, top_k: int):
    """Per-layer Switch load-balancing loss E * sum_e f_e P_e (f_e: share of the T*k
    (token, slot) pairs given to e, times k, i.e. mean_t 1[e in S_t]; P_e: mean_t softmax_e),
    averaged over layers (uniform routing gives k); router z-loss mean_t logsumexp(z_t)^2,
    averaged over layers."""
    lb = 0.0
    zl = 0.0
    for z in router_logits:
        z = z.float()
        p = torch.softmax(z, dim=-1)
        sel = torch.topk(p, top_k, dim=-1).indices
        f = torch.zeros(n_expert).scatter_add_(0, sel.reshape(-1), torch.ones(sel.numel())) / z.shape[0]
        lb = lb + n_expert * (f * p.mean(dim=0)).sum()
        zl = zl + torch.logsumexp(z, dim=-1).pow(2).mean()
    n = len(router_logits)
    return lb / n, zl / n


def make_optimizer(model):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=PEAK_LR, betas=BETAS, eps=EPS, foreach=False,
    )


def build_train_stream(tok) -> tuple[np.ndarray, dict]:
    rng = random.Random(SEED)
    docs = []
    stats = {}
    for d in DOMAINS:
        path = os.path.join(CORPUS, "train", f"{d}.txt")
        dd = read_docs(path)
        ids = encode_docs(tok, dd)
        stats[d] = {"bytes": os.path.getsize(path), "docs": len(dd), "tokens": len(ids)}
        docs += [(d, x) for x in dd]
    rng.shuffle(docs)
    stream = np.asarray(encode_docs(tok, [x for _, x in docs]), dtype=np.int64)
    return stream, stats


def eval_ids_per_domain(tok) -> dict[str, list[int]]:
    out = {}
    for d in DOMAINS:
        ids = encode_docs(tok, read_docs(os.path.join(CORPUS, "eval", f"{d}.txt")))
        if len(ids) < EVAL_TOKENS_PER_DOMAIN:
            raise SystemExit(f"eval/{d}.txt has only {len(ids)} tokens")
        out[d] = ids[:EVAL_TOKENS_PER_DOMAIN]
    return out


@torch.no_grad()
def eval_nll(model, ids: list[int]) -> tuple[float, int]:
    """Sum of NLL and count over non-overlapping SEQ_LEN windows (see golden JSON)."""
    total, count = 0.0, 0
    x = torch.tensor(ids, dtype=torch.long)
    n_win = len(ids) // SEQ_LEN
    batch = x[: n_win * SEQ_LEN].view(n_win, SEQ_LEN)
    logits = model(input_ids=batch).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, batch[:, 1:, None]).squeeze(-1).double()
    total += nll.sum().item()
    count += nll.numel()
    return total, count


def train(args) -> None:
    from transformers import OlmoeForCausalLM

    torch.set_num_threads(args.threads)
    set_seed(SEED)
    os.makedirs(OUT_MODEL, exist_ok=True)
    tok = train_tokenizer(OUT_MODEL)
    stream, corpus_stats = build_train_stream(tok)
    n_seq = len(stream) // SEQ_LEN
    seqs = torch.from_numpy(stream[: n_seq * SEQ_LEN].reshape(n_seq, SEQ_LEN).copy())
    print(f"vocab={len(tok)} train tokens={len(stream)} sequences={n_seq}", flush=True)
    ev = eval_ids_per_domain(tok)

    cfg = make_config(tok)
    set_seed(SEED)
    model = OlmoeForCausalLM(cfg)
    model.router_aux_loss_coef = 0.0   # out.loss = LM loss only; router losses added below
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params={n_params}", flush=True)
    opt = make_optimizer(model)
    steps = args.steps if args.mode == "train" else 12
    g = torch.Generator().manual_seed(SEED)
    order = torch.randperm(n_seq, generator=g)
    pos = 0
    epoch = 0
    log_rows = []
    t0 = time.time()
    for step in range(steps):
        if pos + BATCH > n_seq:
            order = torch.randperm(n_seq, generator=g)
            pos = 0
            epoch += 1
        batch = seqs[order[pos: pos + BATCH]]
        pos += BATCH
        lr = lr_at(step, steps)
        for gr in opt.param_groups:
            gr["lr"] = lr
        out = model(input_ids=batch, labels=batch, output_router_logits=True)
        lb, zl = router_losses(out.router_logits, cfg.num_experts, cfg.num_experts_per_tok)
        loss = out.loss + LB_COEF * lb + Z_COEF * zl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP).item()
        opt.step()
        aux = float(lb)
        lm = float(out.loss)
        if args.mode == "bench":
            print(f"step {step} {time.time() - t0:.2f}s loss={lm:.3f}", flush=True)
            continue
        if step % LOG_EVERY == 0 or step == steps - 1:
            row = {"step": step, "epoch": epoch, "tokens": (step + 1) * BATCH * SEQ_LEN, "lr": lr,
                   "loss": lm, "lb_loss": aux, "z_loss": float(zl),
                   "hf_aux_loss": float(out.aux_loss), "grad_norm": gnorm,
                   "elapsed_s": time.time() - t0, "eval_loss": ""}
            if step % EVAL_EVERY == 0 or step == steps - 1:
                model.eval()
                tot = cnt = 0
                for d in DOMAINS:
                    s, c = eval_nll(model, ev[d][:1024])
                    tot += s
                    cnt += c
                model.train()
                row["eval_loss"] = tot / cnt
            log_rows.append(row)
            print(f"step {step:5d} ep {epoch} lr {lr:.2e} loss {lm:.4f} aux {aux:.4f} "
                  f"gn {gnorm:.2f} eval {row['eval_loss'] if row['eval_loss'] == '' else round(row['eval_loss'], 4)} "
                  f"{row['elapsed_s']:.0f}s", flush=True)
    wall = time.time() - t0
    if args.mode == "bench":
        print(f"mean s/step: {wall / steps:.3f}")
        return
    os.makedirs(DOCS, exist_ok=True)
    with open(os.path.join(DOCS, "demo_loss.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log_rows[0].keys()))
        w.writeheader()
        for r in log_rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    # save in bf16
    model.eval()
    model.to(torch.bfloat16)
    model.config.use_cache = True
    model.generation_config.eos_token_id = cfg.eos_token_id
    model.generation_config.pad_token_id = cfg.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(OUT_MODEL, safe_serialization=True)
    tok.save_pretrained(OUT_MODEL)
    fix_tokenizer_config()
    meta = {"train_wall_s": wall, "steps": steps, "epochs_completed": epoch,
            "params": n_params, "train_tokens": int(len(stream)), "corpus": corpus_stats,
            "threads": args.threads, "torch": torch.__version__,
            "cpu": _cpu_name()}
    with open(os.path.join(DOCS, "demo_train_meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"trained {steps} steps in {wall:.0f}s", flush=True)
    report(args)


def fix_tokenizer_config() -> None:
    """transformers 5 writes tokenizer_class "TokenizersBackend", which 4.x does not know;
    "PreTrainedTokenizerFast" loads the same tokenizer.json in both."""
    path = os.path.join(OUT_MODEL, "tokenizer_config.json")
    with open(path) as f:
        tc = json.load(f)
    if tc.get("tokenizer_class") != "PreTrainedTokenizerFast":
        tc["tokenizer_class"] = "PreTrainedTokenizerFast"
        with open(path, "w") as f:
            json.dump(tc, f, indent=2)
            f.write("\n")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# --------------------------------------------------------------------------- report
def loss_svg(rows: list[dict], path: str) -> None:
    W, H, L, R, T, B = 720, 400, 60, 20, 30, 50
    steps = [int(r["step"]) for r in rows]
    tr = [float(r["loss"]) for r in rows]
    evp = [(int(r["step"]), float(r["eval_loss"])) for r in rows if r["eval_loss"] not in ("", None)]
    ymax = math.ceil(max(tr[min(3, len(tr) - 1):] + [v for _, v in evp]))
    ymin = math.floor(min(tr + [v for _, v in evp]))
    xmax = max(steps)

    def X(s):
        return L + (W - L - R) * s / max(1, xmax)

    def Y(v):
        v = min(max(v, ymin), ymax)
        return T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for i in range(ymin, ymax + 1):
        out.append(f'<line x1="{L}" y1="{Y(i):.1f}" x2="{W - R}" y2="{Y(i):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 8}" y="{Y(i) + 4:.1f}" text-anchor="end">{i}</text>')
    nt = 5
    for i in range(nt + 1):
        s = round(xmax * i / nt)
        out.append(f'<line x1="{X(s):.1f}" y1="{H - B}" x2="{X(s):.1f}" y2="{H - B + 5}" stroke="black"/>')
        out.append(f'<text x="{X(s):.1f}" y="{H - B + 18}" text-anchor="middle">{s}</text>')
    out.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in zip(steps, tr))
    out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
    if evp:
        pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in evp)
        out.append(f'<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{pts}"/>')
        for s, v in evp:
            out.append(f'<circle cx="{X(s):.1f}" cy="{Y(v):.1f}" r="2.5" fill="#d62728"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(T + H - B) / 2})">cross-entropy (nats/token)</text>')
    out.append(f'<text x="{L + 10}" y="{T - 10}">moekit demo-moe: train loss (blue, LM part), '
               f'held-out eval loss (red)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def unigram_baseline(tok, ev: dict[str, list[int]]) -> tuple[dict[str, float], dict[str, float]]:
    """Add-one smoothed unigram models, ppl on the same scored positions as the model
    (positions 1..255 of each window): (pooled over the whole training stream,
    estimated on the domain's own training text)."""
    stream, _ = build_train_stream(tok)
    V = len(tok)

    def logp_of(ids):
        cnt = np.bincount(np.asarray(ids), minlength=V).astype(np.float64) + 1.0
        return np.log(cnt / cnt.sum())

    pooled = logp_of(stream)
    out, out_dom = {}, {}
    for d, ids in ev.items():
        a = np.asarray(ids).reshape(-1, SEQ_LEN)[:, 1:]
        out[d] = float(math.exp(-pooled[a].mean()))
        own = logp_of(encode_docs(tok, read_docs(os.path.join(CORPUS, "train", f"{d}.txt"))))
        out_dom[d] = float(math.exp(-own[a].mean()))
    return out, out_dom


def report(args) -> None:
    from transformers import AutoTokenizer, OlmoeForCausalLM

    torch.set_num_threads(args.threads)
    fix_tokenizer_config()
    tok = AutoTokenizer.from_pretrained(OUT_MODEL)
    ev = eval_ids_per_domain(tok)
    model = OlmoeForCausalLM.from_pretrained(OUT_MODEL, dtype=torch.float32)
    model.eval()
    cfg = model.config
    E, K, L = cfg.num_experts, cfg.num_experts_per_tok, cfg.num_hidden_layers

    per_domain = {}
    offsets = {}
    all_ids = []
    load = {}
    tot_s = tot_c = 0
    for d in DOMAINS:
        ids = ev[d]
        offsets[d] = {"offset": len(all_ids), "length": len(ids)}
        all_ids += ids
        x = torch.tensor(ids, dtype=torch.long).view(-1, SEQ_LEN)
        with torch.no_grad():
            out = model(input_ids=x, output_router_logits=True)
        logits = out.logits.float()
        logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        nll = -logp.gather(-1, x[:, 1:, None]).squeeze(-1)
        s, c = float(nll.sum()), int(nll.numel())
        tot_s += s
        tot_c += c
        per_domain[d] = {"tokens": len(ids), "windows": x.shape[0], "scored": c,
                         "nll_sum": s, "mean_nll": s / c, "ppl": math.exp(s / c),
                         "window_mean_nll": [float(v) for v in nll.mean(dim=1)]}
        # routing: the architecture's own selection (softmax then top-k of probabilities)
        ld = []
        for il, rl in enumerate(out.router_logits):
            p = torch.softmax(rl.float(), dim=-1)
            sel = torch.topk(p, K, dim=-1).indices
            ld.append(torch.bincount(sel.flatten(), minlength=E).tolist())
        load[d] = ld
    ppl_all = math.exp(tot_s / tot_c)
    uni, uni_dom = unigram_baseline(tok, ev)

    os.makedirs(GOLDEN, exist_ok=True)
    np.asarray(all_ids, dtype="<i4").tofile(os.path.join(GOLDEN, "demo_eval_ids.bin"))
    golden = {
        "schema_version": 1,
        "model": "assets/demo-moe",
        "ids_file": "tests/golden/demo_eval_ids.bin",
        "ids_dtype": "int32 little-endian",
        "tokenization": ("assets/corpus/eval/<domain>.txt split into documents on blank lines "
                         "(text.strip('\\n').split('\\n\\n')); each document encoded with the "
                         "tokenizers backend of assets/demo-moe (no special tokens added) and "
                         "followed by <|endoftext|> (id %d); the concatenation truncated to the "
                         "first %d ids per domain; domains concatenated in the order of "
                         "'domains'." % (tok.convert_tokens_to_ids(EOT), EVAL_TOKENS_PER_DOMAIN)),
        "domains": DOMAINS,
        "offsets": offsets,
        "seq_len": SEQ_LEN,
        "convention": ("Per domain, the ids are cut into non-overlapping windows of seq_len "
                       "tokens ([0,256), [256,512), ...; every window is full). Each window is "
                       "an independent forward pass (no KV cache carried over, position ids "
                       "0..seq_len-1, causal mask, no attention mask/padding). Within a window, "
                       "logits at positions 0..seq_len-2 predict the ids at positions "
                       "1..seq_len-1: seq_len-1 scored tokens per window; the first token of "
                       "each window is not scored. nll = -log_softmax(logits)[target], with the "
                       "logits computed in fp32 by transformers and log_softmax and all sums "
                       "taken in float64 (the same numbers as transformers' own fp32 loss to "
                       "~3e-7 relative). mean_nll = sum of nll "
                       "over all scored tokens of the domain / their count; ppl = "
                       "exp(mean_nll). 'all' pools every domain's scored tokens."),
        "compute": ("transformers OlmoeForCausalLM.from_pretrained(dtype=float32) on the bf16 "
                    "checkpoint (weights upcast exactly), attn_implementation=%s, CPU"
                    % model.config._attn_implementation),
        "tolerance": "relative 1e-3 on ppl",
        "per_domain": per_domain,
        "all": {"scored": tot_c, "nll_sum": tot_s, "mean_nll": tot_s / tot_c, "ppl": ppl_all},
        "routing_load": {
            "description": ("per domain, per layer: Load_e = number of (token, slot) pairs with "
                            "expert e in the top-k of softmax(router logits), over every position "
                            "of every window (seq_len per window, first positions included), from "
                            "the same fp32 forward; near-ties may flip in another "
                            "implementation, so compare loads with a small tolerance"),
            "top_k": K, "n_expert": E, "load": load},
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    with open(os.path.join(GOLDEN, "demo_ppl.json"), "w") as f:
        json.dump(golden, f, indent=1)

    # shares for docs: share of domain tokens routed to each expert = Load / n_tokens
    shares = {d: [[c / (len(ev[d])) for c in row] for row in load[d]] for d in DOMAINS}
    stats = {"ppl": {d: per_domain[d]["ppl"] for d in DOMAINS}, "ppl_all": ppl_all,
             "unigram_ppl": uni, "unigram_domain_ppl": uni_dom, "share": shares}
    with open(os.path.join(DOCS, "demo_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    rows = list(csv.DictReader(open(os.path.join(DOCS, "demo_loss.csv"))))
    loss_svg(rows, os.path.join(DOCS, "demo_loss.svg"))

    print(f"{'domain':8s} {'ppl':>8s} {'unigram':>8s} {'uni-dom':>8s}")
    for d in DOMAINS:
        print(f"{d:8s} {per_domain[d]['ppl']:8.2f} {uni[d]:8.2f} {uni_dom[d]:8.2f}")
    print(f"{'all':8s} {ppl_all:8.2f}")
    print("\nshare of domain tokens routed to expert (uniform = %.3f); rows = domains" % (K / E))
    for il in range(L):
        print(f"layer {il}: " + " ".join(f"{e:>5d}" for e in range(E)))
        for d in DOMAINS:
            print(f"  {d:7s} " + " ".join(f"{shares[d][il][e]:5.2f}" for e in range(E)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bench", "train", "report"])
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.mode == "report":
        report(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
