#!/usr/bin/env python3
"""Fine-tuning step throughput: vitlens (`vitlens bench --train`) against PyTorch eager (timm
ViT-Tiny, same heads, mean-pooled head, AdamW), batch 32, alternating runs, medians.
Run by `make bench-peers` (needs torch, timm)."""
import json, os, statistics, subprocess, sys, time
import torch, timm

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VITLENS = os.path.join(ROOT, ".build", "release", "vitlens")
BATCH, ITERS = 32, 5


def torch_step_rate(heads, threads):
    torch.set_num_threads(threads)
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_heads=heads, num_classes=10, global_pool="avg", fc_norm=False)
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.05)
    x = torch.randn(BATCH, 3, 224, 224)
    y = torch.arange(BATCH) % 10
    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    step()
    ts = []
    for _ in range(ITERS):
        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
    return BATCH / statistics.median(ts)


def vitlens_rate(ckpt, threads):
    out = subprocess.run([VITLENS, "bench", ckpt, "--train", "--batch", str(BATCH), "--iters", str(ITERS), "--threads", str(threads), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["train_images_per_second"]


def main():
    print(f"fine-tuning step, batch {BATCH}, images/s (median of {ITERS} steps; two alternating rounds)")
    for name, ckpt, heads in [("ViT-Tiny, 3 heads", "checkpoints/vit_tiny_init.safetensors", 3),
                              ("ViT-Tiny, 12 heads", "checkpoints/vit_tiny_mae_demo.safetensors", 12)]:
        for threads in (1, os.cpu_count() or 2):
            v, t = [], []
            for _ in range(2):
                v.append(vitlens_rate(os.path.join(ROOT, ckpt), threads))
                t.append(torch_step_rate(heads, threads))
            print(f"  {name}, {threads} thread(s): vitlens {v[0]:.1f}/{v[1]:.1f}   PyTorch {t[0]:.1f}/{t[1]:.1f}   "
                  f"ratio {statistics.mean(v) / statistics.mean(t):.2f}x")


if __name__ == "__main__":
    sys.exit(main())
