#!/usr/bin/env python3
"""Make the golden fixture for the trainer's tests (tests/fixtures/golden/) with HF transformers.

A tiny random GPT2LMHeadModel (2 layers, 32 wide, 2 heads, vocabulary 300, 64 positions, fixed
seed) is saved with `save_pretrained` to tests/fixtures/golden/model/, and expected.json records,
for fixed token ids: the logits, the loss (labels = input ids), and the loss and a few parameter
values after ONE AdamW step with HF Trainer semantics (lr 1e-3, weight decay 0.01 except biases
and LayerNorm, eps 1e-8, betas 0.9/0.999, global grad-norm clipping at 1.0), dropout off.

    pip install torch transformers safetensors
    python scripts/make_golden.py                 # (re)writes the fixture
    python scripts/make_golden.py --check-export DIR
        # loads a model exported by `sweep` (DIR with config.json + model.safetensors) with
        # GPT2LMHeadModel.from_pretrained and compares its logits on the golden ids with ours.
"""
import argparse
import json
import os
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "golden")
SEED = 1234
VOCAB, POSITIONS, WIDTH, LAYERS, HEADS = 300, 64, 32, 2, 2
BATCH, T = 2, 24
PROBE = {  # parameter (HF name) -> flat indices recorded after the optimizer step
    "transformer.wte.weight": [0, 1, 2, 3, 9000, 9599],
    "transformer.wpe.weight": [0, 5, 100],
    "transformer.h.0.ln_1.weight": [0, 1, 2],
    "transformer.h.0.ln_1.bias": [0, 1, 2],
    "transformer.h.0.attn.c_attn.weight": [0, 1, 95, 3071],
    "transformer.h.0.attn.c_attn.bias": [0, 20, 70, 95],  # not 32..63: key biases get no gradient
    "transformer.h.1.attn.c_proj.weight": [0, 33, 1023],
    "transformer.h.1.mlp.c_fc.weight": [0, 127, 4095],
    "transformer.h.1.mlp.c_proj.bias": [0, 31],
    "transformer.ln_f.weight": [0, 31],
    "transformer.ln_f.bias": [0, 31],
}


def golden_ids():
    g = torch.Generator().manual_seed(SEED + 1)
    return torch.randint(0, VOCAB, (BATCH, T), generator=g)


def adamw_step(model, ids):
    """One optimizer step exactly as HF Trainer sets it up (decay off for biases and LayerNorm)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or ".ln_" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
    )
    loss = model(ids, labels=ids).loss
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    return float(loss), float(norm)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export", metavar="DIR")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    expected_path = os.path.join(ROOT, "expected.json")

    if args.check_export:
        exp = json.load(open(expected_path))
        model = GPT2LMHeadModel.from_pretrained(args.check_export).eval()
        ids = torch.tensor(exp["input_ids"])
        with torch.no_grad():
            out = model(ids, labels=ids)
        ref = torch.tensor(exp["logits"]).reshape(out.logits.shape)
        diff = (out.logits - ref).abs().max().item()
        print(f"from_pretrained({args.check_export}): max |logits - golden| = {diff:.3e}, "
              f"loss {out.loss.item():.7f} vs {exp['loss']:.7f}")
        sys.exit(0 if diff < 1e-4 else 1)

    torch.manual_seed(SEED)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=WIDTH, n_layer=LAYERS,
                     n_head=HEADS, initializer_range=0.2, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg)
    # Perturb everything (biases and LayerNorms included) so that each tensor's mapping is tested
    # and the logits are far from uniform.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()  # dropout off: the Rust side compares deterministic numbers
    out_dir = os.path.join(ROOT, "model")
    model.save_pretrained(out_dir, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out_dir, extra)
        if os.path.exists(path):
            os.remove(path)

    ids = golden_ids()
    with torch.no_grad():
        out = model(ids, labels=ids)
    logits = out.logits.reshape(-1).tolist()
    loss0, grad_norm = adamw_step(model, ids)
    assert abs(loss0 - out.loss.item()) < 1e-6
    with torch.no_grad():
        loss1 = model(ids, labels=ids).loss.item()
    params = dict(model.named_parameters())
    probes = {k: [params[k].reshape(-1)[i].item() for i in idx] for k, idx in PROBE.items()}
    expected = {
        "generator": f"scripts/make_golden.py, torch {torch.__version__}",
        "config": {"vocab_size": VOCAB, "n_positions": POSITIONS, "n_embd": WIDTH,
                   "n_layer": LAYERS, "n_head": HEADS},
        "input_ids": ids.tolist(),
        "logits_shape": list(out.logits.shape),
        "logits": [float(f"{x:.8e}") for x in logits],
        "loss": out.loss.item(),
        "adamw": {"lr": 1e-3, "weight_decay": 0.01, "eps": 1e-8, "betas": [0.9, 0.999],
                  "max_grad_norm": 1.0, "grad_norm_before_clip": grad_norm,
                  "loss_after_step": loss1,
                  "probe_indices": PROBE, "probe_values_after_step": probes},
    }
    with open(expected_path, "w") as f:
        json.dump(expected, f)
    size = sum(os.path.getsize(os.path.join(dp, n)) for dp, _, ns in os.walk(ROOT) for n in ns)
    print(f"wrote {ROOT}: loss {out.loss.item():.6f} -> {loss1:.6f} after one AdamW step "
          f"(grad norm {grad_norm:.3f}), fixture {size} bytes")


if __name__ == "__main__":
    main()
