#!/usr/bin/env python3
"""Generation tokens/s with and without the KV cache: Burn (`sweep bench-generate`) vs Hugging Face.

Both decode from random weights of the same GPT-2 shape (vocabulary 50,259), one sample, a 16-token
prompt, never stopping at <|endoftext|>, for --new-tokens tokens (capped by the context: gpt2-tiny
has 256 positions, so 240). HF runs `GPT2LMHeadModel.generate(use_cache=True/False)`; its uncached
path computes the LM head for the last position only (`logits_to_keep`), sweep's uncached path
recomputes the full `Gpt::forward` (LM head over every position), so the HF ratio is the fairer
cache-vs-no-cache comparison. Prints one JSON line per run and a markdown table.

    cargo build && python bench/generate_bench.py [--shapes tiny,distil] [--greedy] [--threads 2]
"""
import os
import sys

# bench/ holds a tokenize.py that would shadow the standard library's module.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

SHAPES = {
    # name: (preset, layers, width, heads, positions)
    "tiny": ("gpt2-tiny", 2, 128, 4, 256),
    "distil": ("distilgpt2", 6, 768, 12, 1024),
}
VOCAB = 50259
PROMPT = 16


def hf_run(shape, new_tokens, use_cache, greedy, threads):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, layers, width, heads, positions = SHAPES[shape]
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
                     bos_token_id=None, eos_token_id=None, pad_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()
    ids = torch.tensor([[(i * 7919 + 13) % VOCAB for i in range(PROMPT)]])
    kw = dict(do_sample=not greedy, top_p=None if greedy else 0.9, top_k=None if greedy else 0, temperature=None if greedy else 1.0,
              use_cache=use_cache, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
        secs = time.perf_counter() - t0
    n = out.shape[1] - PROMPT
    return {"impl": f"hf-transformers-torch{torch.__version__}", "preset": SHAPES[shape][0], "kv_cache": use_cache,
            "greedy": greedy, "generated": n, "seconds": secs, "tokens_per_s": n / secs}


def sweep_runs(sweep, shape, new_tokens, greedy):
    cmd = [sweep, "bench-generate", "--preset", SHAPES[shape][0], "--new-tokens", str(new_tokens),
           "--prompt-tokens", str(PROMPT)] + (["--greedy"] if greedy else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [r for r in map(json.loads, out.splitlines()) if "kv_cache" in r]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="tiny,distil")
    ap.add_argument("--new-tokens", type=int, default=300)
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (Burn's Flex uses its default)")
    ap.add_argument("--sweep", default="target/debug/sweep")
    ap.add_argument("--skip-hf", action="store_true")
    a = ap.parse_args()
    rows = []
    for shape in a.shapes.split(","):
        n = min(a.new_tokens, SHAPES[shape][4] - PROMPT)
        runs = sweep_runs(a.sweep, shape, n, a.greedy)
        if not a.skip_hf:
            runs += [hf_run(shape, n, c, a.greedy, a.threads) for c in (True, False)]
        for r in runs:
            print(json.dumps(r), flush=True)
        rows.append((shape, n, runs))
    print(f"\n| shape | new tokens | impl | cached tok/s | uncached tok/s | cached / uncached |")
    print("|---|---|---|---|---|---|")
    for shape, n, runs in rows:
        for impl in sorted({r["impl"] for r in runs}):
            c = next(r["tokens_per_s"] for r in runs if r["impl"] == impl and r["kv_cache"])
            u = next(r["tokens_per_s"] for r in runs if r["impl"] == impl and not r["kv_cache"])
            print(f"| {shape} | {n} | {impl} | {c:.1f} | {u:.2f} | {c / u:.1f}x |")


if __name__ == "__main__":
    main()
