#!/usr/bin/env python3
"""The VGG16 conv base (13 conv3x3+ReLU, 5 max-pools, 224x224) through PyTorch/cuDNN on the GPU, for
bench/gpu_check.sh: images/s per precision and batch, timed with CUDA events (median of REPS after
cuDNN autotuning), whole network and per conv layer at every batch size.

    python3 bench/torch_vgg_gpu.py [BATCH ...]       (default 32 64 128; env REPS=10, BUDGET_S=150)

Modes: fp32 (TF32 off, NCHW), fp32-cl (channels_last), tf32 (channels_last), bf16 (channels_last).
Lines: 'RESULT torch <mode> batch <B>: <ms> ms <images/s> images/s <TFLOP/s> TFLOP/s' and
'LAYER torch <mode> <name> batch <B>: <ms> ms <TFLOP/s> TFLOP/s'.
"""
import os
import sys
import time

import torch
import torch.nn as nn

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def convs():
    out, c, s, block, idx = [], 3, 224, 1, 0
    for v in CFG:
        if v == "M":
            s //= 2
            block, idx = block + 1, 0
        else:
            idx += 1
            out.append((f"block{block}_conv{idx}", c, v, s))
            c = v
    return out


def network():
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def gflop():
    return sum(2.0 * s * s * 9 * ci * co for _, ci, co, s in convs()) / 1e9


def timed(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def setup(mode):
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    fmt = torch.contiguous_format if mode == "fp32" else torch.channels_last
    return dtype, fmt


def main():
    batches = [int(a) for a in sys.argv[1:]] or [32, 64, 128]
    reps = int(os.environ.get("REPS", "10"))
    deadline = time.time() + float(os.environ.get("BUDGET_S", "150"))
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}; "
          f"{gflop():.2f} GFLOP per image", flush=True)
    for mode in ("fp32", "fp32-cl", "tf32", "bf16"):
        dtype, fmt = setup(mode)
        m = network().cuda().to(dtype).to(memory_format=fmt).eval()
        for b in batches:
            if time.time() > deadline:
                print(f"SKIPPED torch {mode} batch {b}: time budget spent", flush=True)
                continue
            x = torch.randn(b, 3, 224, 224, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
            with torch.inference_mode():
                ms = timed(lambda: m(x), reps)
            print(f"RESULT torch {mode} batch {b}: {ms:.3f} ms {b / (ms / 1e3):.1f} images/s "
                  f"{b * gflop() / (ms / 1e3) / 1e3:.2f} TFLOP/s", flush=True)
            if time.time() < deadline:  # per layer, at every batch size while the budget lasts
                for name, ci, co, s in convs():
                    conv = nn.Conv2d(ci, co, 3, padding=1).cuda().to(dtype).to(memory_format=fmt)
                    xi = torch.randn(b, ci, s, s, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
                    with torch.inference_mode():
                        lm = timed(lambda: torch.relu_(conv(xi)), reps)
                    f = 2.0 * b * s * s * 9 * ci * co
                    print(f"LAYER torch {mode} {name} batch {b}: {lm:.3f} ms {f / (lm / 1e3) / 1e12:.2f} TFLOP/s",
                          flush=True)
            del x
        del m
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
