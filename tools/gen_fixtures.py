#!/usr/bin/python3
"""Writes the reference fixtures the doctest suites compare against.

An independent implementation (PyTorch, numpy, PIL, h5py, scipy) computes every expected value;
the C++ code is never used to make its own reference. Inputs are float32; references are computed
in float64 from those float32 inputs, so the tests measure the engine's fp32 error alone.

    /usr/bin/python3 tools/gen_fixtures.py tests/fixtures [--only ops,weights,...]

Needs Debian's python3-torch, python3-numpy (and for later groups python3-h5py, python3-pil,
python3-scipy, python3-torchvision). Run from the top of the checkout.
"""
import argparse
import os
import sys

import numpy as np

OUT = "tests/fixtures"


def save(name, **arrays):
    path = os.path.join(OUT, name)
    np.savez_compressed(path, **arrays)
    print(f"  wrote {path} ({os.path.getsize(path)} bytes)")


def f32(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# ops: conv3x3, relu, maxpool, dense (+backward), dropout, sigmoid+bce, rmsprop, fp16

def gen_ops():
    import torch
    import torch.nn.functional as F
    torch.set_grad_enabled(True)
    rng = np.random.default_rng(20261127)

    # conv3x3: NHWC input, HWIO kernel (Keras layout); reference by torch conv2d in float64.
    conv_cases = [  # n, h, w, cin, cout, relu
        (1, 1, 1, 1, 1, 0), (2, 2, 3, 3, 5, 1), (1, 3, 3, 5, 7, 0), (2, 7, 7, 3, 17, 1),
        (1, 5, 9, 17, 33, 1), (3, 2, 7, 1, 3, 0), (1, 4, 5, 64, 40, 1), (1, 3, 3, 300, 5, 1),
        (2, 1, 4, 2, 40, 0),
    ]
    arrays = {"count": np.array(len(conv_cases))}
    for i, (n, h, w, cin, cout, relu) in enumerate(conv_cases):
        x = f32(rng, n, h, w, cin)
        k = f32(rng, 3, 3, cin, cout, scale=1.0 / np.sqrt(9 * cin))
        b = f32(rng, cout)
        xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
        kt = torch.from_numpy(k.astype(np.float64)).permute(3, 2, 0, 1)  # OIHW
        y = F.conv2d(xt, kt, torch.from_numpy(b.astype(np.float64)), padding=1)
        if relu:
            y = F.relu(y)
        arrays.update({f"c{i}_x": x, f"c{i}_w": k, f"c{i}_b": b, f"c{i}_relu": np.array(relu),
                       f"c{i}_y": y.permute(0, 2, 3, 1).numpy().astype(np.float32)})
    save("ops_conv3x3.npz", **arrays)

    # max-pool 2x2 stride 2 (floor), NHWC.
    pool_cases = [(1, 2, 2, 1), (2, 3, 5, 3), (1, 7, 7, 5), (2, 4, 6, 17), (1, 9, 3, 2)]
    arrays = {"count": np.array(len(pool_cases))}
    for i, (n, h, w, c) in enumerate(pool_cases):
        x = f32(rng, n, h, w, c)
        y = F.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1).numpy()
        arrays.update({f"c{i}_x": x, f"c{i}_y": np.ascontiguousarray(y)})
    save("ops_maxpool.npz", **arrays)

    # relu and relu backward (exact).
    arrays = {}
    for i, n in enumerate([1, 7, 1000]):
        x = f32(rng, n)
        x[::5] = 0.0
        dy = f32(rng, n)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        y = F.relu(xt)
        y.backward(torch.from_numpy(dy.astype(np.float64)))
        arrays.update({f"c{i}_x": x, f"c{i}_y": y.detach().numpy().astype(np.float32), f"c{i}_dy": dy,
                       f"c{i}_dx": xt.grad.numpy().astype(np.float32)})
    arrays["count"] = np.array(3)
    save("ops_relu.npz", **arrays)

    # dense: y = x w + b (optional relu), and the gradients of sum(y * g).
    dense_cases = [(1, 1, 1, 0), (2, 3, 5, 1), (3, 17, 33, 0), (5, 300, 7, 1), (32, 40, 400, 1),
                   (7, 513, 20, 0), (15, 29, 1, 0)]
    arrays = {"count": np.array(len(dense_cases))}
    for i, (m, k, n, relu) in enumerate(dense_cases):
        x = f32(rng, m, k)
        w = f32(rng, k, n, scale=1.0 / np.sqrt(k))
        b = f32(rng, n)
        g = f32(rng, m, n)
        xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        wt = torch.from_numpy(w.astype(np.float64)).requires_grad_()
        bt = torch.from_numpy(b.astype(np.float64)).requires_grad_()
        y = xt @ wt + bt
        if relu:
            y = F.relu(y)
        y.backward(torch.from_numpy(g.astype(np.float64)))
        # the backward test feeds dy = g * (y > 0) directly (dense_backward has no relu)
        gz = g * (y.detach().numpy() > 0) if relu else g
        xt2 = torch.from_numpy(x.astype(np.float64)).requires_grad_()
        wt2 = torch.from_numpy(w.astype(np.float64)).requires_grad_()
        bt2 = torch.from_numpy(b.astype(np.float64)).requires_grad_()
        (xt2 @ wt2 + bt2).backward(torch.from_numpy(gz.astype(np.float64)))
        arrays.update({f"c{i}_x": x, f"c{i}_w": w, f"c{i}_b": b, f"c{i}_relu": np.array(relu),
                       f"c{i}_y": y.detach().numpy().astype(np.float32), f"c{i}_dy": gz.astype(np.float32),
                       f"c{i}_dx": xt2.grad.numpy().astype(np.float32), f"c{i}_dw": wt2.grad.numpy().astype(np.float32),
                       f"c{i}_db": bt2.grad.numpy().astype(np.float32)})
    save("ops_dense.npz", **arrays)

    # dropout: the engine's counter-based mask, implemented here independently with numpy.
    M64 = np.uint64(0xFFFFFFFFFFFFFFFF)

    def mix(z):
        z = z.astype(np.uint64)
        with np.errstate(over="ignore"):
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    def keep_mask(seed, step, n, rate):
        with np.errstate(over="ignore"):
            s = np.array([(seed + 0x9E3779B97F4A7C15 * (step + 1)) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
            h = mix(mix(s) ^ (np.arange(n, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)))
        u = (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)
        return u >= np.float32(rate)

    drop_cases = [(1, 0.2, 1, 0), (37, 0.2, 42, 3), (1000, 0.2, 7, 12345), (1000, 0.5, 2**40 + 3, 2**33),
                  (64, 0.0, 5, 5)]
    arrays = {"count": np.array(len(drop_cases))}
    for i, (n, rate, seed, step) in enumerate(drop_cases):
        x = f32(rng, n)
        keep = keep_mask(seed, step, n, rate)
        scale = np.float32(1.0) / np.float32(1.0 - rate)
        y = np.where(keep, x * scale, np.float32(0)).astype(np.float32)
        arrays.update({f"c{i}_x": x, f"c{i}_y": y, f"c{i}_rate": np.array(rate, dtype=np.float32),
                       f"c{i}_seed": np.array(seed, dtype=np.uint64), f"c{i}_step": np.array(step, dtype=np.uint64)})
    save("ops_dropout.npz", **arrays)

    # sigmoid + binary cross-entropy from logits (float64 reference), per element, dz = (p - y)/n.
    z = np.array([0.0, 1e-8, -1e-8, 0.5, -0.5, 3.0, -3.0, 17.0, -17.0, 40.0, -40.0, 100.0, -100.0, 88.7, -88.7,
                  1e4, -1e4, 0.1234, -7.5, 2.0], dtype=np.float32)
    y = np.array([0, 1, 0, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1], dtype=np.float32)
    zt = torch.from_numpy(z.astype(np.float64)).requires_grad_()
    yt = torch.from_numpy(y.astype(np.float64))
    loss = F.binary_cross_entropy_with_logits(zt, yt, reduction="none")
    loss.mean().backward()
    save("ops_bce.npz", z=z, y=y, prob=torch.sigmoid(zt).detach().numpy().astype(np.float32),
         loss=loss.detach().numpy().astype(np.float32), dz=zt.grad.numpy().astype(np.float32))

    # RMSprop: torch.optim.RMSprop(lr, alpha=rho, eps) uses tf.keras 2.x's formula.
    arrays = {}
    for i, (n, steps, lr) in enumerate([(1, 3, 1e-3), (1000, 5, 1e-3), (77, 4, 0.01)]):
        w0 = f32(rng, n)
        grads = f32(rng, steps, n, scale=0.1)
        grads[0, :3] = 0.0  # zero gradients: v stays 0, w must not move (eps keeps it finite)
        p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
        opt = torch.optim.RMSprop([p], lr=lr, alpha=0.9, eps=1e-7)
        for s in range(steps):
            p.grad = torch.from_numpy(grads[s].copy())
            opt.step()
        arrays.update({f"c{i}_w0": w0, f"c{i}_g": grads, f"c{i}_lr": np.array(lr, dtype=np.float32),
                       f"c{i}_w": p.detach().numpy().copy(), f"c{i}_v": opt.state[p]["square_avg"].numpy().copy()})
    arrays["count"] = np.array(3)
    save("ops_rmsprop.npz", **arrays)

    # fp16 conversion (round to nearest even, overflow to inf, subnormals).
    vals = np.concatenate([
        np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e6, -1e6, 6.1035156e-05, 6.0e-08, 5.96e-08,
                  2.98e-08, 2.9802322e-08, 1e-10, np.inf, -np.inf, 0.1, 1.0009765625, 1.00048828125,
                  1.00146484375, 2049.0, 2051.0], dtype=np.float32),
        f32(rng, 200, scale=100.0), f32(rng, 100, scale=1e-5)])
    save("ops_f16.npz", x=vals, y=vals.astype(np.float16).view(np.uint16))


GROUPS = {"ops": gen_ops}


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=OUT)
    ap.add_argument("--only", default=",".join(GROUPS), help="comma-separated groups: " + ",".join(GROUPS))
    args = ap.parse_args()
    OUT = args.out
    os.makedirs(OUT, exist_ok=True)
    for g in args.only.split(","):
        if g not in GROUPS:
            sys.exit(f"unknown group {g}; choose from {','.join(GROUPS)}")
        print(f"[{g}]")
        GROUPS[g]()


if __name__ == "__main__":
    main()
