#!/usr/bin/env python3
"""Reference for `sweep eval --file`: the same loss computed by HF transformers.

Tokenizes FILE with the model directory's tokenizer.json (HF `tokenizers`), concatenates, cuts
into blocks of BLOCK tokens (the tail is dropped), and prints the mean next-token loss of
GPT2LMHeadModel (labels = input ids) over those blocks, as JSON.

    python scripts/eval_reference.py MODEL_DIR FILE BLOCK [--max-tokens N]
"""
import argparse
import json
import os

import torch
from tokenizers import Tokenizer
from transformers import GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("file")
    ap.add_argument("block", type=int)
    ap.add_argument("--max-tokens", type=int)
    ap.add_argument("--batch-size", type=int, default=4)
    a = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    ids = tok.encode(open(a.file, encoding="utf-8").read(), add_special_tokens=False).ids
    n = len(ids) // a.block
    if a.max_tokens:
        n = max(1, min(n, a.max_tokens // a.block))
    blocks = torch.tensor(ids[: n * a.block]).reshape(n, a.block)
    model = GPT2LMHeadModel.from_pretrained(a.model_dir).eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, a.batch_size):
            b = blocks[i : i + a.batch_size]
            total += model(b, labels=b).loss.item() * len(b)
    print(json.dumps({"blocks": n, "loss": total / n}))


if __name__ == "__main__":
    main()
