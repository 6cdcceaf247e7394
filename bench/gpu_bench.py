#!/usr/bin/env python3
"""GPU training throughput and MFU, Burn (`sweep bench-train --device cuda:0`, and with `--impls tch`
the LibTorch backend, `--device tch:cuda:0` of a `--features tch` build) vs HF transformers.

The issue's shape: `gpt2` (12 layers, 768 wide, vocabulary 50,259) at batch 8 x 1024 tokens, a
full training step (forward, cross-entropy, backward, gradient clipping at 1.0, AdamW), dropout
0.1, random tokens. HF runs `GPT2LMHeadModel` eagerly (its default SDPA attention), under
`torch.autocast` for bf16/f16, exactly as HF Trainer's `--bf16` does. Each run is its own process.

MFU = tokens/s x training FLOPs per token / the GPU's dense bf16 peak (nanoGPT's estimate:
6 x non-position parameters + 12 x layers x width x block), for every precision, so f32 rows
show how far from the tensor-core peak they are.

    cargo build --features cuda && python3 bench/gpu_bench.py [--sweep target/debug/sweep]
"""
import os
import sys

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

VOCAB = 50259
# Dense bf16 tensor-core peak of the H100/H200 SXM (the vendor's datasheet; both are GH100).
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12}


def hf_child(preset, block, batch, warmup, steps, precision):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    shapes = {"gpt2": (12, 768, 12), "distilgpt2": (6, 768, 12), "gpt2-medium": (24, 1024, 16)}
    n_layer, n_embd, n_head = shapes[preset]
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=1024, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    model = GPT2LMHeadModel(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.01)
    # Burn's CUDA matmuls take f32 inputs through TF32 tensor cores (CubeCL's cmma); "tf32" is
    # the like-for-like PyTorch setting (HF Trainer's `--tf32`), "f32" PyTorch's strict default.
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(enabled=precision == "f16")
    times = []
    for i in range(warmup + steps):
        ids = torch.randint(0, VOCAB, (batch, block), device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(ids, labels=ids).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        print(f"hf step {i}: loss {loss.item():.4f} {dt:.4f}s", file=sys.stderr)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "impl": f"hf-transformers-{precision}", "median_step_s": med, "tokens_per_s": batch * block / med,
        "peak_gpu_bytes": torch.cuda.max_memory_allocated(), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0),
    }))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(p.stderr[-3000:])
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def flops_per_token(preset, block):
    n_layer, c = {"gpt2": (12, 768), "distilgpt2": (6, 768), "gpt2-medium": (24, 1024)}[preset]
    params = VOCAB * c + n_layer * (12 * c * c + 13 * c) + 2 * c  # without the position table
    return 6 * params + 12 * n_layer * c * block


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default="target/debug/sweep")
    ap.add_argument("--tch", default=os.environ.get("SWEEP_BIN_TCH", "bench/bin/sweep-tch"),
                    help="a `--features tch` build, for --impls tch")
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precisions", default="bf16,f32")
    ap.add_argument("--impls", default="burn,hf")
    ap.add_argument("--hf-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="f32", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.hf_child:
        return hf_child(a.preset, a.block, a.batch, a.warmup, a.steps, a.precision)

    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), 989.4e12)
    fpt = flops_per_token(a.preset, a.block)
    rows = []
    for prec in a.precisions.split(","):
        for impl in a.impls.split(","):
            t0 = time.time()
            if impl in ("burn", "tch"):
                # Burn's f32 is TF32 on CUDA already (and tch:cuda turns libtorch's TF32 on, as
                # the trainer does): the f32 row stands for both.
                if prec == "tf32":
                    continue
                binary, device = (a.sweep, "cuda:0") if impl == "burn" else (a.tch, "tch:cuda:0")
                r = run([binary, "bench-train", "--device", device, "--preset", a.preset,
                         "--block-size", str(a.block), "--batch-size", str(a.batch),
                         "--warmup", str(a.warmup), "--steps", str(a.steps), "--precision", prec])
            else:
                r = run([sys.executable, __file__, "--hf-child", "--precision", prec, "--preset", a.preset,
                         "--block", str(a.block), "--batch", str(a.batch), "--warmup", str(a.warmup),
                         "--steps", str(a.steps)])
            r.update({"impl_name": impl, "precision": prec, "wall_s": round(time.time() - t0, 1)})
            if "tokens_per_s" in r:
                r["mfu_vs_bf16_peak"] = r["tokens_per_s"] * fpt / peak
            rows.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{gpu}: {a.preset}, batch {a.batch} x {a.block} tokens, {fpt / 1e9:.3f} GFLOP/token, "
          f"peak {peak / 1e12:.1f} TFLOP/s bf16")
    print(f"{'impl':<8}{'precision':<10}{'tokens/s':>12}{'MFU':>8}{'vs HF':>8}{'queued':>8}  (Burn f32 vs HF tf32 "
          "where run; queued: the host's time to issue a step, as a share of the step)")
    for r in rows:
        like = {"f32": ("tf32", "f32")}.get(r["precision"], (r["precision"],)) if r["impl_name"] != "hf" \
            else (r["precision"],)
        hf = next((x for p in like for x in rows if x["impl_name"] == "hf" and x["precision"] == p
                   and "tokens_per_s" in x), {})
        if "tokens_per_s" not in r:
            print(f"{r['impl_name']:<8}{r['precision']:<10}  {r.get('error')}")
            continue
        ratio = r["tokens_per_s"] / hf["tokens_per_s"] if "tokens_per_s" in hf else float("nan")
        queued = f"{100 * r['median_queued_s'] / r['median_step_s']:>7.0f}%" if "median_queued_s" in r else ""
        print(f"{r['impl_name']:<8}{r['precision']:<10}{r['tokens_per_s']:>12,.0f}"
              f"{100 * r['mfu_vs_bf16_peak']:>7.1f}%{ratio:>7.2f}x{queued}")


if __name__ == "__main__":
    main()
