#!/usr/bin/env python3
"""Build moekit's mixed-domain demo corpus from text that Debian 12 ships.

Output (committed; the demo model is trained on the committed files, so a machine that lacks
one of the sources below can still reproduce the model exactly):

    assets/corpus/train/<domain>.txt   ~350 KB per domain (<= 3 MB in total)
    assets/corpus/eval/<domain>.txt    ~32 KB per domain, held out (disjoint documents)

Format: UTF-8, one document per block, documents separated by exactly one blank line; a
document never contains a blank line (blank lines inside a source chunk are dropped).

Domains and the sources that feed them (globs are expanded, then sorted; only the named
packages' files are read, so extra packages installed on a machine do not change the result):

    en       /usr/share/common-licenses/*  (base-files; symlinks de-duplicated by target)
             + the English msgids of the translation catalogs listed below
    de fr es ru zh
             /usr/share/locale/<lang>/LC_MESSAGES/<pkg>.mo, msgstr text, for
             <pkg> in CATALOGS (base-system packages: apt, bash, coreutils, dpkg, ...; libc.mo
             comes from libc-l10n); <lang> = de, fr, es, ru, zh_CN
    code-c   /usr/include/*.h              (libc6-dev and friends; top-level headers only)
    code-py  /usr/lib/python3.11/*.py      (Debian's python3.11 stdlib, top level only)

Leading licence comments of headers are removed (they are boilerplate repeated in every file).
Translation messages are de-duplicated per language (gnulib strings repeat across packages)
and grouped into documents of ~MSGS_PER_DOC consecutive messages, ordered as in the catalog.

Determinism: sorted file lists, random.Random(SEED) for the held-out split and the document
order; no timestamps, no dependence on the locale or on os.listdir order. Run:

    python3 scripts/make_demo_corpus.py [--out assets/corpus]

and it prints the bytes and documents per domain and a sha256 of every file it wrote.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import random
import re
import struct
import sys

SEED = 20240917
TRAIN_BYTES = 350_000       # per domain, upper bound
EVAL_BYTES = 32_000         # per domain, target (held out first)
MSGS_PER_DOC = 12           # translation messages per document
CODE_LINES_PER_DOC = 48     # source lines per code document
PROSE_CHARS_PER_DOC = 1600  # licence prose: paragraphs are grouped up to about this size

CATALOGS = [
    "apt", "libapt-pkg6.0", "bash", "coreutils", "diffutils", "dpkg", "findutils", "grep",
    "sed", "tar", "shadow", "Linux-PAM", "libc", "gettext-runtime", "procps-ng", "xz",
]
LANGS = {"de": "de", "fr": "fr", "es": "es", "ru": "ru", "zh": "zh_CN"}

SOURCES = {
    "en": ["/usr/share/common-licenses/*"]
          + [f"/usr/share/locale/{{de,fr,es,ru,zh_CN}}/LC_MESSAGES/{p}.mo (msgid)" for p in CATALOGS],
    **{d: [f"/usr/share/locale/{l}/LC_MESSAGES/{p}.mo (msgstr)" for p in CATALOGS]
       for d, l in LANGS.items()},
    "code-c": ["/usr/include/*.h"],
    "code-py": ["/usr/lib/python3.11/*.py"],
}
DOMAINS = ["en", "de", "fr", "es", "ru", "zh", "code-c", "code-py"]


# --------------------------------------------------------------------------- .mo parsing
def read_mo(path: str) -> list[tuple[str, list[str]]]:
    """Return [(msgid, [msgstr forms])] in catalog order (the header entry skipped)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        end = "<"
    elif magic == 0xDE120495:
        end = ">"
    else:
        raise ValueError(f"{path}: not a .mo file")
    _rev, n, o_orig, o_trans = struct.unpack(end + "4I", data[4:20])
    out = []
    for i in range(n):
        ln, off = struct.unpack(end + "2I", data[o_orig + 8 * i: o_orig + 8 * i + 8])
        msgid = data[off: off + ln]
        ln, off = struct.unpack(end + "2I", data[o_trans + 8 * i: o_trans + 8 * i + 8])
        msgstr = data[off: off + ln]
        if not msgid:
            continue  # header
        if b"\x04" in msgid:  # msgctxt
            msgid = msgid.split(b"\x04", 1)[1]
        mid = msgid.split(b"\x00")[0].decode("utf-8", "replace")
        forms = [s.decode("utf-8", "replace") for s in msgstr.split(b"\x00")]
        out.append((mid, forms))
    return out


def clean_block(text: str) -> str:
    """Make text a valid single document: no blank lines, no trailing spaces, no NULs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\f", "")
    lines = [ln.rstrip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln.strip()]
    return "\n".join(lines)


def group_messages(msgs: list[str], key_prefix: str) -> list[tuple[str, str]]:
    docs = []
    for i in range(0, len(msgs), MSGS_PER_DOC):
        d = clean_block("\n".join(msgs[i: i + MSGS_PER_DOC]))
        if d:
            docs.append((f"{key_prefix}#{i // MSGS_PER_DOC}", d))
    return docs


def catalog_paths(lang: str) -> list[str]:
    paths = []
    for p in CATALOGS:
        f = f"/usr/share/locale/{lang}/LC_MESSAGES/{p}.mo"
        if os.path.isfile(f):
            paths.append(f)
        else:
            print(f"  note: missing {f}", file=sys.stderr)
    return paths


def translation_docs(lang: str) -> list[tuple[str, str]]:
    seen: set[str] = set()
    docs = []
    for path in catalog_paths(lang):
        msgs = []
        for mid, forms in read_mo(path):
            for s in forms:
                s = s.strip()
                if s and s != mid and s not in seen and len(s) >= 4:
                    seen.add(s)
                    msgs.append(s)
        docs += group_messages(msgs, path)
    return docs


def english_docs() -> list[tuple[str, str]]:
    docs = []
    # licence prose
    seen_real: set[str] = set()
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        real = os.path.realpath(path)
        if real in seen_real or not os.path.isfile(real):
            continue
        seen_real.add(real)
        with open(real, encoding="utf-8", errors="replace") as f:
            paras = [clean_block(p) for p in re.split(r"\n\s*\n", f.read())]
        paras = [p for p in paras if p]
        cur, n = [], 0
        for p in paras:
            cur.append(p)
            n += len(p)
            if n >= PROSE_CHARS_PER_DOC:
                docs.append((real, "\n".join(cur)))
                cur, n = [], 0
        if cur:
            docs.append((real, "\n".join(cur)))
    # msgids (English source strings) of the same catalogs the other languages use
    seen: set[str] = set()
    for lang in LANGS.values():
        for path in catalog_paths(lang):
            msgs = []
            for mid, _forms in read_mo(path):
                mid = mid.strip()
                if mid and mid not in seen and len(mid) >= 4:
                    seen.add(mid)
                    msgs.append(mid)
            docs += group_messages(msgs, "msgid:" + os.path.basename(path))
    return docs


_LICENSE_COMMENT = re.compile(r"\A\s*/\*.*?\*/\s*", re.S)


def code_docs(pattern: str, strip_c_license: bool) -> list[tuple[str, str]]:
    docs = []
    for path in sorted(glob.glob(pattern)):
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        if strip_c_license:
            m = _LICENSE_COMMENT.match(text)
            if m and re.search(r"copyright|license|licence", m.group(0), re.I):
                text = text[m.end():]
        lines = [ln.rstrip().replace("\t", "    ") for ln in text.split("\n")]
        lines = [ln for ln in lines if ln.strip()]
        for i in range(0, len(lines), CODE_LINES_PER_DOC):
            d = clean_block("\n".join(lines[i: i + CODE_LINES_PER_DOC]))
            if d:
                docs.append((path, d))   # key = file: eval files are disjoint from train files
    return docs


def domain_docs(domain: str) -> list[tuple[str, str]]:
    if domain == "en":
        return english_docs()
    if domain in LANGS:
        return translation_docs(LANGS[domain])
    if domain == "code-c":
        return code_docs("/usr/include/*.h", strip_c_license=True)
    if domain == "code-py":
        return code_docs("/usr/lib/python3.11/*.py", strip_c_license=False)
    raise KeyError(domain)


def split(domain: str, docs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Held-out split by group key (file for code/licences, message chunk for catalogs)."""
    rng = random.Random(f"{SEED}:{domain}")
    groups: dict[str, list[str]] = {}
    order = []
    for key, d in docs:
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(d)
    rng.shuffle(order)
    eval_docs, train_docs = [], []
    ebytes = tbytes = 0
    for key in order:
        g = groups[key]
        size = sum(len(d.encode()) + 2 for d in g)
        if ebytes < EVAL_BYTES:
            # take a whole group, but only as much of it as the eval budget needs
            for d in g:
                if ebytes >= EVAL_BYTES:
                    break
                eval_docs.append(d)
                ebytes += len(d.encode()) + 2
            continue
        for d in g:
            b = len(d.encode()) + 2
            if tbytes + b > TRAIN_BYTES:
                continue
            train_docs.append(d)
            tbytes += b
    rng.shuffle(train_docs)
    return train_docs, eval_docs


def write(path: str, docs: list[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = ("\n\n".join(docs) + "\n").encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "assets", "corpus"))
    args = ap.parse_args()
    total = 0
    for domain in DOMAINS:
        docs = domain_docs(domain)
        if not docs:
            print(f"error: no source text for domain {domain}: {SOURCES[domain]}", file=sys.stderr)
            return 1
        train, ev = split(domain, docs)
        h1 = write(os.path.join(args.out, "train", f"{domain}.txt"), train)
        h2 = write(os.path.join(args.out, "eval", f"{domain}.txt"), ev)
        tb = os.path.getsize(os.path.join(args.out, "train", f"{domain}.txt"))
        eb = os.path.getsize(os.path.join(args.out, "eval", f"{domain}.txt"))
        total += tb
        print(f"{domain:8s} available={len(docs):6d} docs  train={len(train):5d} docs {tb:8d} B "
              f"sha256={h1[:16]}  eval={len(ev):4d} docs {eb:6d} B sha256={h2[:16]}")
    print(f"total train bytes: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
