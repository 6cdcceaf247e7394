#!/usr/bin/env python3
"""Data-stage benchmark (issue 2): tokenization MB/s of sweep's Rust tokenizer vs python `tokenizers`
on the prepared cs.CL text, plus `sweep data prepare` end to end and a trial's data loading from cache.

Usage (from the crate root, after `cargo build`):
    pip install tokenizers            # tiktoken optional: also cross-checks ids against OpenAI's BPE
    python bench/tokenize.py [--sweep target/debug/sweep] [--input ../shared/data/arxiv-archive/20190101/cs.CL.tsv.xz]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    return dt, p.stdout


def keyvals(text):
    return {k: float(v) for k, v in re.findall(r"^(\w+) ([0-9.]+)$", text, re.M)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default=os.path.join(ROOT, "target/debug/sweep"))
    ap.add_argument("--input", default=os.path.join(
        os.environ.get("SWEEP_ARXIV_DIR", os.path.join(ROOT, "../shared/data/arxiv-archive/20190101")), "cs.CL.tsv.xz"))
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sweep-bench-")
    try:
        bench(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(a, work):
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers
    import tokenizers

    out, cache = os.path.join(work, "prepared"), os.path.join(work, "cache")

    # 1. prepare end to end, cold token cache, then again with a warm one.
    cold, table = run([a.sweep, "data", "prepare", "--input", a.input, "--out", out, "--cache", cache])
    warm, _ = run([a.sweep, "data", "prepare", "--input", a.input, "--out", out, "--cache", cache])
    print(table)

    # 2. a second trial's data loading (prepare_cached + tokenizer + token blocks) from the cache.
    _, load = run([a.sweep, "data", "bench-load", "--input", a.input, "--cache", cache, "--block-size", "1024"])
    load = keyvals(load)

    # 3. tokenization throughput on the same text.
    text_path = os.path.join(work, "all.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        for s in ("train", "valid", "test"):
            f.write(open(os.path.join(out, s + ".txt"), encoding="utf-8").read())
    lines = [l for l in open(text_path, encoding="utf-8").read().split("\n") if l]
    mb = sum(len(l.encode("utf-8")) for l in lines) / 1e6

    tk = Tokenizer(models.BPE.from_file(os.path.join(ROOT, "assets/gpt2/vocab.json"),
                                        os.path.join(ROOT, "assets/gpt2/merges.txt")))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True) for t in ("<|endoftext|>", "<|startoftext|>", "<|sep|>")])
    def py_run(parallel):
        os.environ["TOKENIZERS_PARALLELISM"] = "true" if parallel else "false"
        t = time.perf_counter()
        encs = tk.encode_batch_fast(lines, add_special_tokens=False)
        return mb / (time.perf_counter() - t), encs

    # The machine may be shared: alternate python and rust rounds, report best and median.
    rounds = {"py_par": [], "py_seq": [], "rs_par": [], "rs_seq": []}
    for _ in range(a.repeat):
        r, encs = py_run(True)
        rounds["py_par"].append(r)
        rounds["py_seq"].append(py_run(False)[0])
        os.environ["TOKENIZERS_PARALLELISM"] = "true"
        _, rs = run([a.sweep, "data", "bench-tokenize", text_path, "--repeat", "1"])
        rs = keyvals(rs)
        rounds["rs_par"].append(rs["rust_batch_mb_s"])
        rounds["rs_seq"].append(rs["rust_single_mb_s"])
    py_ids = [i for e in encs for i in e.ids]
    best = {k: max(v) for k, v in rounds.items()}
    med = {k: statistics.median(v) for k, v in rounds.items()}

    # The ids sweep cached during prepare (u16 after a 32-byte header) must be python's ids.
    import hashlib
    import struct
    rust_ids = []
    for s in ("train", "valid", "test"):
        sha = hashlib.sha256(open(os.path.join(out, s + ".txt"), "rb").read()).hexdigest()[:32]
        raw = open(os.path.join(cache, "tokens", "gpt2+2special", sha + ".tok"), "rb").read()
        rust_ids.extend(struct.unpack(f"<{(len(raw) - 32) // 2}H", raw[32:]))
    if rust_ids != py_ids:
        sys.exit("sweep's cached token ids differ from python tokenizers' ids")
    check = "sweep's cached ids identical to python tokenizers'"
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(ROOT, "assets/gpt2/merges.txt"),
                                                os.path.join(ROOT, "assets/gpt2/vocab.json"))
        enc = tiktoken.Encoding(
            "gpt2-local",
            pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 50256, "<|startoftext|>": 50257, "<|sep|>": 50258})
        tt = [i for l in lines for i in enc.encode(l, allowed_special="all")]
        if tt != py_ids:
            sys.exit("tiktoken and python tokenizers disagree")
        check += "; ids identical to tiktoken"
    except ImportError:
        pass

    cpus = os.cpu_count()
    print(f"text: {mb:.2f} MB, {len(lines)} examples, {len(py_ids)} tokens ({check}); {cpus} CPUs")
    print(f"throughput MB/s, best / median of {a.repeat} alternating rounds:")
    print(f"  python tokenizers {tokenizers.__version__} encode_batch_fast, all cores: {best['py_par']:.2f} / {med['py_par']:.2f}")
    print(f"  rust sweep Tokenizer::encode_many, all cores:          {best['rs_par']:.2f} / {med['rs_par']:.2f}")
    print(f"  python encode_batch_fast, TOKENIZERS_PARALLELISM=false: {best['py_seq']:.2f} / {med['py_seq']:.2f}")
    print(f"  rust Tokenizer::encode one text at a time, 1 thread:    {best['rs_seq']:.2f} / {med['rs_seq']:.2f}")
    print(f"ratio rust/python, all cores: {best['rs_par'] / best['py_par']:.2f}x (best), {med['rs_par'] / med['py_par']:.2f}x (median)")
    print(f"ratio rust/python, 1 thread:  {best['rs_seq'] / best['py_seq']:.2f}x (best), {med['rs_seq'] / med['py_seq']:.2f}x (median)")
    print(f"sweep data prepare end to end: {cold:.2f} s (cold token cache), {warm:.2f} s (warm)")
    print(f"trial data load from cache: {load['load_total_s']:.3f} s "
          f"(prepare_cached {load['prepare_cached_s']:.3f} s, tokenizer {load['tokenizer_s']:.3f} s, "
          f"token blocks {load['blocks_s']:.3f} s, {int(load['train_blocks'])} train blocks of 1024)")


if __name__ == "__main__":
    main()
