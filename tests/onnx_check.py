#!/usr/bin/env python3
"""Runs a model exported by `tl_predict --export-onnx` in ONNX Runtime on the photos of a tl_predict CSV
(pixels decoded and resized by PIL, as Keras' load_img does) and compares p(dog) with tl_predict's.
    python3 tests/onnx_check.py MODEL.onnx PRED.csv [TOLERANCE]
Compares p(dog) (absolute difference) and the logit before the sigmoid (relative difference, where
tl_predict's 17-digit p is strictly between 0 and 1, so that saturated probabilities still compare the
network's output). Prints the largest differences; exits 1 when either is over the tolerance (1e-5)."""
import csv
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

model, table = sys.argv[1], sys.argv[2]
tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
size = inp.shape[1]
assert inp.name == "pixels" and inp.type == "tensor(uint8)" and inp.shape[1:] == [size, size, 3], inp
rows = [r for r in csv.DictReader(open(table)) if r["error"] == ""]
key = [k for k in rows[0] if k.startswith("p_")][0]
pixels = np.stack([np.asarray(Image.open(r["path"]).convert("RGB").resize((size, size), Image.NEAREST)) for r in rows])
p, logit = (a[:, 0].astype(np.float64) for a in sess.run(["p_dog", "logit"], {"pixels": pixels}))
ours = np.array([float(r[key]) for r in rows])
diff = np.abs(p - ours)
inside = (ours > 0) & (ours < 1)
ours_logit = np.log(ours[inside]) - np.log1p(-ours[inside])
rel = np.abs(logit[inside] - ours_logit) / np.maximum(np.abs(ours_logit), 1.0)
worst = rel.max() if rel.size else float("nan")
print(f"{len(rows)} photos at {size}x{size}: largest |p_onnxruntime - p_tl_predict| = {diff.max():.3g}; "
      f"logits of the {rel.size} with 0 < p < 1 in double ({ours_logit.min():.4g} to {ours_logit.max():.4g}) within "
      f"{worst:.3g} (relative, floor 1); onnxruntime {ort.__version__}")
sys.exit(0 if diff.max() <= tol and rel.size >= 1 and worst <= tol else 1)
