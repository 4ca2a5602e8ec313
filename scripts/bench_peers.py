#!/usr/bin/env python3
"""vitlens against PyTorch eager and ONNX Runtime on the same machine (`make bench-peers`).

With --bf16 (where the CPU has AVX512_BF16) two more columns: vitlens --precision bf16 and
PyTorch under torch.autocast("cpu", dtype=torch.bfloat16) — PyTorch's own bf16 path.

The same ViT-Tiny (checkpoints/vit_tiny_init.safetensors loaded into timm's
deit_tiny_patch16_224), float32, forward_features; PyTorch under torch.inference_mode, ONNX
Runtime with the CPUExecutionProvider on the model exported to ONNX. The three are run in
alternation (vitlens, torch, ort, vitlens, …) `--rounds` times at each batch size and thread
count; the table shows medians of images/s and the ratios vitlens/peer. Each run starts after a
`--pause` (0.5 s) so that the previous engine's idle threads (OpenMP's and ONNX Runtime's spin
before they sleep; this machine has few cores) have stopped competing for the cores.
"""
import atexit
import shutil
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import timm
import torch
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VITLENS = os.path.join(ROOT, ".build", "release", "vitlens")
CKPT = os.path.join(ROOT, "checkpoints", "vit_tiny_init.safetensors")


class Features(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m.forward_features(x)


def timed(fn, iters):
    fn()  # warm-up
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--pause", type=float, default=0.5)
    ap.add_argument("--bf16", action="store_true", help="add vitlens bf16 and PyTorch bf16 autocast")
    args = ap.parse_args()
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    model.load_state_dict({k: v.float() for k, v in load_file(CKPT).items()})
    model = Features(model).eval()
    try:
        import onnxruntime as ort
        onnx_dir = tempfile.mkdtemp()
        atexit.register(shutil.rmtree, onnx_dir, ignore_errors=True)
        onnx_path = os.path.join(onnx_dir, "vit_tiny.onnx")
        torch.onnx.export(model, torch.randn(1, 3, 224, 224), onnx_path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, opset_version=17, dynamo=False)
    except Exception as e:  # noqa: BLE001 — report and go on without the ONNX column
        print(f"ONNX Runtime unavailable: {e}")
        ort = None
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        sess = None
        if ort:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        for batch in map(int, args.batches.split(",")):
            x = torch.randn(batch, 3, 224, 224)
            xn = x.numpy()
            res = {"vitlens": [], "torch": [], "ort": [], "vitlens_bf16": [], "torch_bf16": []}
            for _ in range(args.rounds):
                for precision in ["f32", "bf16"] if args.bf16 else ["f32"]:
                    time.sleep(args.pause)
                    out = subprocess.run([VITLENS, "bench", CKPT, "--batch", str(batch), "--threads", str(threads),
                                          "--iters", str(args.iters), "--json", "--precision", precision],
                                         check=True, capture_output=True, text=True)
                    res["vitlens" if precision == "f32" else "vitlens_bf16"].append(json.loads(out.stdout)["images_per_second"])
                time.sleep(args.pause)
                with torch.inference_mode():
                    res["torch"].append(batch / timed(lambda: model(x), args.iters))
                if args.bf16:
                    time.sleep(args.pause)
                    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                        res["torch_bf16"].append(batch / timed(lambda: model(x), args.iters))
                if sess:
                    time.sleep(args.pause)
                    res["ort"].append(batch / timed(lambda: sess.run(None, {"x": xn}), args.iters))
            med = {k: statistics.median(v) for k, v in res.items() if v}
            rows.append((threads, batch, med))
            line = f"threads {threads:2d} batch {batch:3d}: vitlens {med['vitlens']:6.1f}  torch {med['torch']:6.1f} ({med['vitlens'] / med['torch']:.2f}x)"
            if "ort" in med:
                line += f"  onnxruntime {med['ort']:6.1f} ({med['vitlens'] / med['ort']:.2f}x)"
            if "vitlens_bf16" in med:
                line += (f"  | vitlens bf16 {med['vitlens_bf16']:6.1f}  torch bf16 {med['torch_bf16']:6.1f}"
                         f" ({med['vitlens_bf16'] / med['torch_bf16']:.2f}x)")
                if "ort" in med:
                    line += f"  bf16 vs onnxruntime f32 {med['vitlens_bf16'] / med['ort']:.2f}x"
            print(line, flush=True)
    print("\n| threads | batch | vitlens | PyTorch | ratio | ONNX Runtime | ratio |\n| --- | --- | --- | --- | --- | --- | --- |")
    for threads, batch, med in rows:
        o = f"{med['ort']:.1f} | {med['vitlens'] / med['ort']:.2f}x" if "ort" in med else "– | –"
        print(f"| {threads} | {batch} | {med['vitlens']:.1f} | {med['torch']:.1f} | {med['vitlens'] / med['torch']:.2f}x | {o} |")
    if args.bf16:
        print("\n| threads | batch | vitlens bf16 | PyTorch bf16 autocast | ratio | ONNX Runtime f32 | ratio |\n| --- | --- | --- | --- | --- | --- | --- |")
        for threads, batch, med in rows:
            o = f"{med['ort']:.1f} | {med['vitlens_bf16'] / med['ort']:.2f}x" if "ort" in med else "– | –"
            print(f"| {threads} | {batch} | {med['vitlens_bf16']:.1f} | {med['torch_bf16']:.1f} | {med['vitlens_bf16'] / med['torch_bf16']:.2f}x | {o} |")


if __name__ == "__main__":
    main()
