#!/usr/bin/python3
"""PyTorch side of the training benchmark: one epoch of the tutorial's head (Flatten -> Dense 400
relu -> Dropout 0.2 -> Dense 20 relu -> Dense 1, BCE from logits, RMSprop(lr 1e-3, alpha 0.9,
eps 1e-7)) over N random cached features (the same distribution as bench_train's), batch 32 / 128.
    /usr/bin/python3 bench/torch_train.py [--samples 23076] [--batch 32,128] [--threads 2]
"""
import argparse
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--samples", type=int, default=23076)
ap.add_argument("--batch", default="32,128")
ap.add_argument("--threads", type=int, default=0)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
d = 7 * 7 * 512
u = torch.rand(a.samples, d)
X = torch.where(u < 0.6, torch.zeros(()), (u - 0.6) * 2.0)
del u
y = (torch.arange(a.samples) % 2).float()
for b in [int(s) for s in a.batch.split(",")]:
    m = torch.nn.Sequential(torch.nn.Linear(d, 400), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(400, 20),
                            torch.nn.ReLU(), torch.nn.Linear(20, 1))
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    m.train()
    t0 = time.time()
    perm = torch.randperm(a.samples)
    for i in range(0, a.samples, b):
        idx = perm[i:i + b]
        z = m(X[idx]).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.time() - t0
    print(f"torch cpu  batch {b:4d}: {dt:.2f} s per epoch of {a.samples} samples ({a.samples / dt:.0f} samples/s, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})", flush=True)
