#!/usr/bin/env python3
"""Training throughput, Burn (`sweep bench-train`) vs plain PyTorch GPT-2, same shapes, same threads.

Each measurement runs in its own process (so peak RSS is per run): a GPT-2 training step
(forward, cross-entropy over the 50,259-token vocabulary, backward, AdamW) on random tokens,
dropout 0.1, median step time after warm-up. Prints a table with tokens/s and the ratio.

    cargo build && python bench/train_bench.py [--threads 2] [--shapes tiny,distil] [--sweep target/debug/sweep]
"""
import os
import sys

# bench/ holds a tokenize.py that would shadow the standard library's module.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

SHAPES = {
    # name: (preset, layers, width, heads, positions, block, batch, warmup, steps)
    "tiny": ("gpt2-tiny", 2, 128, 4, 256, 128, 8, 2, 8),
    "distil": ("distilgpt2", 6, 768, 12, 1024, 512, 1, 1, 4),
}
VOCAB = 50259


def torch_child(shape, threads):
    import resource

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, n_layer, c, n_head, n_pos, block, batch, warmup, steps = SHAPES[shape]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
            self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
            self.c_fc, self.m_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=0.1 if self.training else 0.0, is_causal=True)
            x = x + self.drop(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))
            return x + self.drop(self.m_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, c), nn.Embedding(n_pos, c)
            self.h = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f, self.drop = nn.LayerNorm(c), nn.Dropout(0.1)

        def forward(self, ids):
            x = self.drop(self.wte(ids) + self.wpe(torch.arange(ids.shape[1])))
            for blk in self.h:
                x = blk(x)
            logits = self.ln_f(x)[:, :-1] @ self.wte.weight.T
            return F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))

    model = GPT().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-8, weight_decay=0.01)
    times = []
    for i in range(warmup + steps):
        ids = torch.randint(0, VOCAB, (batch, block))
        t0 = time.perf_counter()
        loss = model(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    print(json.dumps({
        "impl": f"pytorch-{torch.__version__}", "tokens_per_s": batch * block / med,
        "median_step_s": med,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))


def run_json(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="tiny,distil")
    ap.add_argument("--sweep", default="target/debug/sweep")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--torch-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        return torch_child(a.torch_child, a.threads)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads),
               RAYON_NUM_THREADS=str(a.threads))
    cpu = next((l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores visible, {a.threads} threads; {platform.platform()}")
    print("| shape | burn tok/s | pytorch tok/s | burn / pytorch | burn peak RSS | pytorch peak RSS |")
    print("|---|---|---|---|---|---|")
    for shape in a.shapes.split(","):
        preset, _, _, _, _, block, batch, warmup, steps = SHAPES[shape]
        burn = run_json([a.sweep, "bench-train", "--preset", preset, "--block-size", str(block),
                         "--batch-size", str(batch), "--warmup", str(warmup), "--steps", str(steps),
                         "--device", a.device], env)
        torch_r = run_json([sys.executable, __file__, "--threads", str(a.threads), "--torch-child", shape], env)
        print(f"| {shape} ({preset}, block {block}, batch {batch}) | {burn['tokens_per_s']:.0f} | "
              f"{torch_r['tokens_per_s']:.0f} | {burn['tokens_per_s'] / torch_r['tokens_per_s']:.2f}x | "
              f"{burn['peak_rss_bytes'] / 1e9:.2f} GB | {torch_r['peak_rss_bytes'] / 1e9:.2f} GB |", flush=True)


if __name__ == "__main__":
    main()
