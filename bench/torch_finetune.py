#!/usr/bin/python3
"""PyTorch side of the fine-tuning benchmark (bench/finetune_peers.sh): the same recipe as
`tl_train --fine-tune block5` on the same cached block4_pool activations (exported by
`tl_inspect --export-npy`), with block5 holding the same converted weights (read independently from
weights/vgg16_notop.bin): --warmup epochs of the head alone on the frozen block, then block5 and the
head together at RMSprop --fine-tune-lr; batch 32, dropout 0.2, glorot-uniform head, zero biases.
Prints one line per epoch (training loss, validation loss and accuracy, seconds) and a summary.

    /usr/bin/python3 bench/torch_finetune.py NPY_PREFIX WEIGHTS [--epochs 3] [--warmup 2] [--seed 0]
        [--threads 2] [--limit N]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from gen_fixtures import read_tl_weights  # noqa: E402  (an independent reader of the weights format)

ap = argparse.ArgumentParser()
ap.add_argument("npy")
ap.add_argument("weights")
ap.add_argument("--epochs", type=int, default=3)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--fine-tune-lr", type=float, default=1e-5)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--limit", type=int, default=0, help="train on the first N samples only (timing runs)")
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

Xtr = np.load(a.npy + "_train_features.npy", mmap_mode="r")
ytr = np.load(a.npy + "_train_labels.npy").astype(np.float32)
Xva = np.load(a.npy + "_valid_features.npy", mmap_mode="r")
yva = np.load(a.npy + "_valid_labels.npy").astype(np.float32)
if a.limit:
    Xtr, ytr = Xtr[:a.limit], ytr[:a.limit]
layers, _, _ = read_tl_weights(a.weights)
block = []
for name, cin, cout, pool, w, b in layers:
    if name.startswith("block5_"):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)).copy())
        conv.bias.data = torch.from_numpy(b.copy())
        block += [conv, torch.nn.ReLU()]
block += [torch.nn.MaxPool2d(2)]
block = torch.nn.Sequential(*block)
d = 7 * 7 * 512
head = torch.nn.Sequential(torch.nn.Linear(d, 400), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(400, 20),
                           torch.nn.ReLU(), torch.nn.Linear(20, 1))
for m in head:
    if isinstance(m, torch.nn.Linear):
        torch.nn.init.xavier_uniform_(m.weight)
        torch.nn.init.zeros_(m.bias)


def features(x):
    f = block(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2))
    return f.permute(0, 2, 3, 1).reshape(len(x), -1)  # Keras' flatten (NHWC)


def validate():
    head.eval()
    with torch.no_grad():
        z = torch.cat([head(features(Xva[i:i + 64])).squeeze(1) for i in range(0, len(Xva), 64)])
    y = torch.from_numpy(yva)
    loss = F.binary_cross_entropy_with_logits(z, y).item()
    acc = ((z > 0).float() == y).float().mean().item()
    return loss, acc


opt = torch.optim.RMSprop(head.parameters(), lr=a.lr, alpha=0.9, eps=1e-7)
n = len(Xtr)
best = (1e9, 0, 0)
for epoch in range(1, a.epochs + 1):
    tune = epoch > a.warmup
    if tune and epoch == a.warmup + 1:  # the book's recompile: block and head at the low rate
        opt = torch.optim.RMSprop(list(block.parameters()) + list(head.parameters()), lr=a.fine_tune_lr, alpha=0.9,
                                  eps=1e-7)
    head.train()
    g = torch.Generator().manual_seed(a.seed * 1000 + epoch)
    perm = torch.randperm(n, generator=g).numpy()
    t0 = time.time()
    tot = 0.0
    for i in range(0, n, a.batch):
        idx = np.sort(perm[i:i + a.batch])
        if tune:
            f = features(Xtr[idx])
        else:
            with torch.no_grad():
                f = features(Xtr[idx])
        z = head(f).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(z, torch.from_numpy(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += loss.item() * len(idx)
    dt = time.time() - t0
    vl, va = validate()
    if vl < best[0]:
        best = (vl, va, epoch)
    print(f"torch epoch {epoch} ({'block5 + head' if tune else 'head alone'}): loss {tot / n:.4f} val_loss {vl:.4f} "
          f"val_accuracy {va:.4f}  {dt:.1f} s ({n / dt:.1f} samples/s)", flush=True)
print(f"torch best epoch {best[2]}: val_loss {best[0]:.4f} val_accuracy {best[1]:.4f}")
