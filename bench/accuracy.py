#!/usr/bin/python3
"""Accuracy side by side: our cached pipeline (tl_train) and an independent PyTorch implementation of
the tutorial's head on the same features, split, head, optimiser, batch and epochs, over several seeds.

    /usr/bin/python3 bench/accuracy.py --cache CACHE [--seeds 1,2,3,4,5] [--epochs 10] [--batch 32]

The features are the cache's own, exported by `tl_inspect --export-npy` (so both sides train on the
same numbers). PyTorch side: Flatten -> Linear(400) relu -> Dropout(0.2) -> Linear(20) relu ->
Linear(1), glorot-uniform weights and zero biases (Keras' defaults), BCE from the logit,
RMSprop(lr 1e-3, alpha 0.9, eps 1e-7) = tf.keras 2.x's formula, reshuffled every epoch, last partial
batch kept, validation without dropout; the reported epoch is the one with the lowest validation loss
(Keras' ModelCheckpoint(save_best_only=True) on val_loss, as tl_train's best.bin). Prints mean, min and
max of validation accuracy and log loss for each side.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--cache", required=True)
ap.add_argument("--seeds", default="1,2,3,4,5")
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--tl", default=".", help="folder with tl_train and tl_inspect")
a = ap.parse_args()
seeds = [int(s) for s in a.seeds.split(",")]
if a.threads:
    torch.set_num_threads(a.threads)
# Subnormals flushed to zero, as TensorFlow (the tutorial's Keras) and tl_train do on the CPU; without
# it RMSprop's decaying second moments make this reference many times slower, with the same results
# to within the subnormal range.
torch.set_flush_denormal(True)
work = tempfile.mkdtemp(prefix="tl_accuracy_")

# The same features for both sides.
subprocess.run([os.path.join(a.tl, "tl_inspect"), "--export-npy", a.cache, os.path.join(work, "f")], check=True,
               stdout=subprocess.DEVNULL)
load = lambda name: np.load(os.path.join(work, f"f_{name}.npy"))  # noqa: E731
Xtr, ytr = load("train_features"), load("train_labels").astype(np.float32)
Xva, yva = load("valid_features"), load("valid_labels").astype(np.float32)
Xtr, Xva = Xtr.reshape(len(Xtr), -1).astype(np.float32), Xva.reshape(len(Xva), -1).astype(np.float32)
print(f"features: {len(Xtr)} train, {len(Xva)} valid, {Xtr.shape[1]} values each", flush=True)


def best_epoch(rows):
    """rows: (loss, acc, val_loss, val_acc) per epoch -> the one with the lowest val_loss."""
    return min(rows, key=lambda r: r[2])


def ours(seed):
    out = os.path.join(work, f"ours_{seed}")
    cmd = [os.path.join(a.tl, "tl_train"), "--cache", a.cache, "--out", out, "--seed", str(seed), "--epochs",
           str(a.epochs), "--batch", str(a.batch), "--no-plots", "--quiet"]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    subprocess.run(cmd, check=True)
    with open(os.path.join(out, "history.csv")) as f:
        rows = [(float(r["loss"]), float(r["accuracy"]), float(r["val_loss"]), float(r["val_accuracy"]))
                for r in csv.DictReader(f)]
    return best_epoch(rows)


def glorot(layer):
    torch.nn.init.xavier_uniform_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    return layer


def reference(seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = torch.nn.Sequential(glorot(torch.nn.Linear(Xtr.shape[1], 400)), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                            glorot(torch.nn.Linear(400, 20)), torch.nn.ReLU(), glorot(torch.nn.Linear(20, 1)))
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    xv, yv = torch.from_numpy(Xva), torch.from_numpy(yva)
    rows = []
    for _ in range(a.epochs):
        m.train()
        perm = torch.from_numpy(rng.permutation(len(Xtr)))
        losses, correct = [], 0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            z = m(xt[idx]).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            correct += int(((z > 0).float() == yt[idx]).sum())
        m.eval()
        with torch.no_grad():
            z = m(xv).squeeze(1)
            vl = torch.nn.functional.binary_cross_entropy_with_logits(z.double(), yv.double()).item()
            va = float(((z > 0).float() == yv).float().mean())
        rows.append((float(np.mean(losses)), correct / len(Xtr), vl, va))
    return best_epoch(rows)


results = {"ours (tl_train)": [], f"PyTorch {torch.__version__} reference": []}
import time  # noqa: E402
for s in seeds:
    t0 = time.time()
    o = ours(s)
    t1 = time.time()
    r = reference(s)
    print(f"seed {s}: ours {t1 - t0:.0f} s, reference {time.time() - t1:.0f} s", flush=True)
    results["ours (tl_train)"].append(o)
    results[f"PyTorch {torch.__version__} reference"].append(r)
    print(f"seed {s}: ours val_acc {o[3]:.4f} val_loss {o[2]:.4f} | reference val_acc {r[3]:.4f} "
          f"val_loss {r[2]:.4f}", flush=True)

print(f"\n{len(seeds)} seeds, {a.epochs} epochs, batch {a.batch}, best epoch by val_loss; "
      f"{len(Xva)} validation photos")
print("| | val accuracy mean | min | max | val log loss mean | min | max |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, rows in results.items():
    acc = np.array([r[3] for r in rows]) * 100
    ll = np.array([r[2] for r in rows])
    print(f"| {name} | {acc.mean():.2f}% | {acc.min():.2f}% | {acc.max():.2f}% | {ll.mean():.4f} | {ll.min():.4f} | "
          f"{ll.max():.4f} |")
accs = [np.mean([r[3] for r in rows]) * 100 for rows in results.values()]
print(f"difference of the means: {accs[0] - accs[1]:+.2f} points")
sys.exit(0)
