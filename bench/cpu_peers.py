#!/usr/bin/env python3
"""The VGG16 conv base (13 conv3x3+ReLU, 5 max-pools, 224x224) on the CPU, side by side in one run:
ours (build/bench_ops --only base: the automatic algorithm choice, F(2x2)-only Winograd, direct, and
--precision bf16 on CPUs with AVX512_BF16), ONNX Runtime, OpenVINO fp32 and OpenVINO bf16
(inference_precision_hint) on the same ONNX graph with random weights, and PyTorch (channels_last fp32
and bf16 autocast, bench/torch_base.py) when TORCH_PYTHON names a Python with torch (default:
/tmp/tv/bin/python when present; torch is not installed by cpu_peers.sh: its PyPI wheel is ~5 GB). Interleaved rounds; prints images/s per system and batch (median, min, max over the
rounds) and the ratio to ours.

On AMX CPUs ours-bf16 runs the direct conv on AMX tiles (with the AVX512_BF16 Winograd path beside it,
TL_CPU_AMX=0) and ours-fp32 also as bf16x3 (TL_CONV=amx3). --whole-job N also times the whole job on N
real photos: tl_cache --precision bf16 (decode, resize, conv base, shards) against PIL decode + resize +
OpenVINO bf16 inference in Python, and our conv rate on the same batch, in the same rounds.

    python3 bench/cpu_peers.py [--batches 8,32] [--rounds 3] [--reps 3] [--threads N] [--whole-job 256 --data DIR]
(bench/cpu_peers.sh makes the venv with openvino, onnxruntime, onnx and numpy from PyPI.)
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vgg_onnx(path):
    rng = np.random.default_rng(1)
    nodes, inits, c, cur, i = [], [], 3, "x", 0
    for v in CFG:
        if v == "M":
            nodes.append(helper.make_node("MaxPool", [cur], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]))
            cur = f"p{i}"
        else:
            w = (rng.standard_normal((v, c, 3, 3)) * np.sqrt(2.0 / (9 * c))).astype(np.float32)
            b = (rng.standard_normal(v) * 0.01).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
            nodes.append(helper.make_node("Conv", [cur, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
            cur, c = f"r{i}", v
        i += 1
    g = helper.make_graph(nodes, "vgg16_base", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 224, 224])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, ["N", 512, 7, 7])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(m, path)


def timed(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def whole_job_systems(a, ov_bf16_model, flags):
    """The whole job on a.whole_job photos of a.data, as the rows' fn(b) (seconds per b images)."""
    from PIL import Image
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.data) for f in fs if f.lower().endswith((".jpg", ".jpeg")))
    files = files[::max(1, len(files) // a.whole_job)][:a.whole_job]  # spread over the class folders
    n = len(files)
    weights = os.path.join(ROOT, "weights/vgg16_notop.bin")
    if not os.path.exists(weights):
        sys.exit("--whole-job needs weights/vgg16_notop.bin (make weights)")
    photos = tempfile.mkdtemp()
    for i, f in enumerate(files):  # a folder of exactly these photos, class folders kept
        cls = os.path.basename(os.path.dirname(f))
        os.makedirs(os.path.join(photos, cls), exist_ok=True)
        os.symlink(f, os.path.join(photos, cls, os.path.basename(f)))
    out = tempfile.mkdtemp()
    mean = np.array([103.939, 116.779, 123.68], np.float32)

    def ours_job(b):
        t0 = time.perf_counter()
        subprocess.run([os.path.join(ROOT, "tl_cache"), "--data", photos, "--weights", weights, "--out", out,
                        "--precision", "bf16", "--device", "cpu", "--force", "--quiet"], check=True,
                       env=dict(os.environ, TL_THREADS=str(a.threads)))
        return (time.perf_counter() - t0) * b / n

    def ov_job(b):
        req = ov_bf16_model.create_infer_request()
        t0 = time.perf_counter()
        for i in range(0, n, 32):
            batch = []
            for f in files[i:i + 32]:
                rgb = np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.NEAREST), np.float32)
                batch.append((rgb[:, :, ::-1] - mean).transpose(2, 0, 1))
            req.infer({0: np.stack(batch)})
        return (time.perf_counter() - t0) * b / n

    print(f"whole job: {n} photos of {a.data}", flush=True)
    return [(f"whole job: tl_cache --precision bf16, {n} photos", ours_job),
            (f"whole job: PIL + OpenVINO bf16, {n} photos", ov_job)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="8,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--whole-job", type=int, default=0, help="also time the whole job on this many photos")
    ap.add_argument("--data", default=os.path.join(ROOT, "../shared/data/dogs-vs-cats-4k/valid"))
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    import onnxruntime as ort
    import openvino as ov

    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "vgg16_base.onnx")
    vgg_onnx(path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    core = ov.Core()
    ovm = {}
    for prec in ("f32", "bf16"):
        ovm[prec] = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": prec, "INFERENCE_NUM_THREADS": str(a.threads),
                                                     "PERFORMANCE_HINT": "LATENCY"})
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu).group(1)
    flags = set(re.search(r"flags\s*:\s*(.*)", cpu).group(1).split())
    print(f"{model}, {a.threads} threads; avx512_bf16: {'avx512_bf16' in flags}, amx_bf16: {'amx_bf16' in flags}; "
          f"onnxruntime {ort.__version__}, openvino {ov.__version__}; {a.rounds} rounds x {a.reps} reps", flush=True)
    print("openvino bf16 runs in:", ovm["bf16"].get_property("INFERENCE_PRECISION_HINT"), flush=True)

    def ours(env, extra=()):
        def run(b):
            e = dict(os.environ, **env)
            out = subprocess.run([os.path.join(ROOT, "build/bench_ops"), "--device", "cpu", "--only", "base", "--batch",
                                  str(b), "--reps", str(a.reps), "--threads", str(a.threads), *extra],
                                 capture_output=True, text=True, env=e, check=True).stdout
            return b / float(re.search(r"-> ([\d.]+) images/s", out).group(1))  # seconds per batch
        return run

    torch_py = os.environ.get("TORCH_PYTHON", "/tmp/tv/bin/python" if os.path.exists("/tmp/tv/bin/python") else "")

    def torch_run(mode):
        def run(b):
            out = subprocess.run([torch_py, os.path.join(ROOT, "bench/torch_base.py"), "--batch", str(b), "--reps",
                                  str(a.reps), "--threads", str(a.threads), "--mode", mode],
                                 capture_output=True, text=True, check=True).stdout
            return float(re.search(r"SECONDS ([\d.]+)", out).group(1))
        return run

    def ort_run(b):
        x = np.random.default_rng(2).standard_normal((b, 3, 224, 224)).astype(np.float32) * 50
        return timed(lambda: sess.run(None, {"x": x}), a.reps)

    def ov_run(prec):
        def run(b):
            x = np.random.default_rng(2).standard_normal((b, 3, 224, 224)).astype(np.float32) * 50
            req = ovm[prec].create_infer_request()
            return timed(lambda: req.infer({0: x}), a.reps)
        return run

    amx = "amx_bf16" in flags and "amx_tile" in flags
    systems = [("ours (automatic: Winograd F(2x2) and F(4x4))", ours({})),
               ("ours, Winograd F(2x2) only (before F(4x4))", ours({"TL_CONV": "winograd"})),
               ("ours, direct conv only", ours({"TL_CONV": "direct"})),
               *([("ours, fp32 as bf16x3 on AMX tiles (TL_CONV=amx3)", ours({"TL_CONV": "amx3"}))] if amx else []),
               *([("ours, --precision bf16 (AMX tiles, direct conv)", ours({}, ["--precision", "bf16"]))] if amx else []),
               *([("ours, --precision bf16 (AVX512_BF16 Winograd, bf16 planes)",
                   ours({"TL_CPU_AMX": "0"}, ["--precision", "bf16"]))] if "avx512_bf16" in flags else []),
               (f"ONNX Runtime {ort.__version__} (all optimisations)", ort_run),
               (f"OpenVINO {ov.__version__.split('-')[0]} fp32", ov_run("f32")),
               (f"OpenVINO {ov.__version__.split('-')[0]} bf16 hint", ov_run("bf16"))]
    if torch_py:
        tv = subprocess.run([torch_py, "-c", "import torch; print(torch.__version__.split('+')[0])"], capture_output=True,
                            text=True, check=True).stdout.strip()
        print(f"PyTorch {tv} from {torch_py}", flush=True)
        systems += [(f"PyTorch {tv} channels_last fp32", torch_run("fp32")),
                    (f"PyTorch {tv} channels_last, bf16 autocast", torch_run("bf16"))]
    ov_bf16_name = next(n for n, _ in systems if n.startswith("OpenVINO") and "bf16" in n)
    if a.whole_job:
        systems += whole_job_systems(a, ovm["bf16"], flags)
    res = {(n, b): [] for n, _ in systems for b in batches}
    for r in range(a.rounds):
        for b in batches:
            for name, fn in systems:
                s = fn(b)
                res[(name, b)].append(b / s)
                print(f"round {r + 1} batch {b}: {name}: {b / s:.2f} images/s", flush=True)
    print()
    head = "%-58s" % "VGG16 conv base, 224x224, images/s (median [min-max])"
    print(head + "".join("%24s" % f"batch {b}" for b in batches) + "%14s" % "vs ours")
    base = {b: statistics.median(res[(systems[0][0], b)]) for b in batches}
    for name, _ in systems:
        row = "%-58s" % name
        for b in batches:
            v = res[(name, b)]
            row += "%24s" % f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"
        row += "%14s" % f"{statistics.median(res[(name, batches[-1])]) / base[batches[-1]]:.2f}"
        print(row)
    ov_bf16 = statistics.median(res[(ov_bf16_name, batches[-1])])
    if a.whole_job:
        job = {n: statistics.median(res[(n, batches[-1])]) for n, _ in systems if n.startswith("whole job")}
        ours_job = next(v for n, v in job.items() if "tl_cache" in n)
        ov_job = next(v for n, v in job.items() if "OpenVINO" in n)
        ours_conv = max(statistics.median(res[(n, batches[-1])]) for n, _ in systems if n.startswith("ours, --precision bf16"))
        print(f"RESULT whole_job_ours_vs_openvino_bf16: {ours_job / ov_job:.2f}x")
        print(f"RESULT whole_job_vs_conv_rate (tl_cache --precision bf16 / our bf16 conv base): {ours_job / ours_conv:.2f}")
    print(f"RESULT ours_vs_openvino_bf16 batch {batches[-1]}: {base[batches[-1]] / ov_bf16:.2f}x")
    for name, _ in systems:
        if "bf16" in name and name.startswith("ours"):
            print(f"RESULT ours_bf16_vs_openvino_bf16 batch {batches[-1]}: "
                  f"{statistics.median(res[(name, batches[-1])]) / ov_bf16:.2f}x")


if __name__ == "__main__":
    main()
