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
ap.add_argument("--draws", choices=["own", "shared"], default="own",
                help="own: the reference draws its initial weights, shuffles and dropout masks from torch's and "
                     "numpy's generators (seed luck differs between the sides); shared: it draws them exactly as "
                     "tl_train does (restated below in numpy), so both sides start from the same weights and see "
                     "the same batches and masks, and any difference left is the implementations'")
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
    return rows


def glorot(layer):
    torch.nn.init.xavier_uniform_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    return layer


# tl_train's random draws, restated from host/core/common.h (splitmix64), host/model/head.cpp (glorot
# init), host/stages/train.cpp (epoch_order) and host/ops/dropout_mask.h, for --draws shared.
M64 = (1 << 64) - 1
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix(z):
    """splitmix64's finaliser on a numpy uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def splitmix_stream(state, count):
    """The next `count` outputs of splitmix64 from `state` (uint64 array) and the state after them."""
    k = np.arange(1, count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix(np.uint64(state) + k * np.uint64(GOLDEN)), (state + count * GOLDEN) & M64


def shared_init(seed, sizes):
    """Glorot-uniform weights in tl_train's order (W1, W2, W3 from one stream), as [in, out] float32."""
    state, out = seed & M64, []
    for fan_in, fan_out in sizes:
        z, state = splitmix_stream(state, fan_in * fan_out)
        u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        out.append(((u * 2.0 - 1.0) * limit).astype(np.float32).reshape(fan_in, fan_out))
    return out


def shared_order(n, seed, epoch):
    z, _ = splitmix_stream((seed * GOLDEN + epoch * 0xD1B54A32D192ED03 + 0x5851F42D4C957F2D) & M64, n - 1)
    p = list(range(n))
    for k, i in enumerate(range(n - 1, 0, -1)):
        j = int(z[k]) % (i + 1)
        p[i], p[j] = p[j], p[i]
    return np.array(p)


def shared_keep(seed, step, count, rate):
    with np.errstate(over="ignore"):
        key = mix(np.array([(seed + GOLDEN * (step + 1)) & M64], dtype=np.uint64))[0]
        h = mix(key ^ (np.arange(count, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)))
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0) >= np.float32(rate)


class Head(torch.nn.Module):
    def __init__(self, n_in, init=None):
        super().__init__()
        self.l1, self.l2, self.l3 = (glorot(torch.nn.Linear(i, o)) for i, o in ((n_in, 400), (400, 20), (20, 1)))
        if init is not None:
            with torch.no_grad():
                for layer, w in zip((self.l1, self.l2, self.l3), init):
                    layer.weight.copy_(torch.from_numpy(w.T.copy()))
        self.drop = torch.nn.Dropout(0.2)

    def forward(self, x, keep=None):
        h = torch.relu(self.l1(x))
        if keep is not None:  # tl_train's mask, inverted dropout as torch's
            h = h * keep * (1.0 / (1.0 - 0.2))
        elif self.training:
            h = self.drop(h)
        return self.l3(torch.relu(self.l2(h)))


def reference(seed):
    shared = a.draws == "shared"
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = Head(Xtr.shape[1], shared_init(seed, [(Xtr.shape[1], 400), (400, 20), (20, 1)]) if shared else None)
    opt = torch.optim.RMSprop(m.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    xv, yv = torch.from_numpy(Xva), torch.from_numpy(yva)
    rows = []
    step = 0
    for epoch in range(1, a.epochs + 1):
        m.train()
        perm = torch.from_numpy(shared_order(len(Xtr), seed, epoch) if shared else rng.permutation(len(Xtr)))
        losses, correct = [], 0
        for i in range(0, len(perm), a.batch):
            idx = perm[i:i + a.batch]
            keep = None
            if shared:
                keep = torch.from_numpy(shared_keep(seed, step, len(idx) * 400, 0.2).reshape(len(idx), 400))
            step += 1
            z = m(xt[idx], keep).squeeze(1)
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
    return rows


results = {"ours (tl_train)": [], f"PyTorch {torch.__version__} reference": []}
import time  # noqa: E402
for s in seeds:
    t0 = time.time()
    o_rows = ours(s)
    t1 = time.time()
    r_rows = reference(s)
    o, r = best_epoch(o_rows), best_epoch(r_rows)
    for e, (x, y) in enumerate(zip(o_rows, r_rows), 1):
        print(f"  epoch {e:2d}: ours loss {x[0]:.4f} val_loss {x[2]:.4f} val_acc {x[3]:.4f} | reference loss "
              f"{y[0]:.4f} val_loss {y[2]:.4f} val_acc {y[3]:.4f}", flush=True)
    print(f"seed {s}: ours {t1 - t0:.0f} s, reference {time.time() - t1:.0f} s", flush=True)
    results["ours (tl_train)"].append(o)
    results[f"PyTorch {torch.__version__} reference"].append(r)
    print(f"seed {s}: ours val_acc {o[3]:.4f} val_loss {o[2]:.4f} | reference val_acc {r[3]:.4f} "
          f"val_loss {r[2]:.4f}", flush=True)

print(f"\n{len(seeds)} seeds, {a.epochs} epochs, batch {a.batch}, best epoch by val_loss, reference draws: {a.draws}; "
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
