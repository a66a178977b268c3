#!/usr/bin/env python3
"""The VGG16 conv base (13 conv3x3+ReLU, 5 max-pools, 224x224) through PyTorch on the CPU, for
bench/cpu_peers.py: seconds per batch (median of REPS timed calls after one warm-up), channels_last,
in fp32 or under bf16 autocast (oneDNN's bf16 convolutions on CPUs with AVX512_BF16/AMX).

    python3 bench/torch_base.py --batch 8 [--reps 3] [--threads N] [--mode fp32|bf16]

Prints one line: 'SECONDS <s> torch <version> <mode>'.
"""
import argparse
import os
import statistics
import time

import torch

from torch_vgg_gpu import network as vgg_base  # the same 13 conv + 5 pool graph


def network():
    torch.manual_seed(1)
    return vgg_base().eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mode", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    net = network().to(memory_format=torch.channels_last)
    x = (torch.randn(a.batch, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 50).to(
        memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            if a.mode == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    net(x)
            else:
                net(x)

    run()  # warm-up (oneDNN primitive creation)
    ts = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t0)
    print(f"SECONDS {statistics.median(ts):.6f} torch {torch.__version__} {a.mode}", flush=True)


if __name__ == "__main__":
    main()
