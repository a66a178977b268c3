#!/usr/bin/python3
"""PyTorch side of the caching benchmark: the same work as tl_cache, written the way a PyTorch user
would. PIL decodes and resizes (NEAREST, as Keras' load_img), Keras' 'caffe' preprocessing,
torchvision's vgg16().features with the engine's synthetic weights (read from its .bin file),
batches of 8, a DataLoader worker for decoding, features saved as float32 .npy shards of 512.
Prints images/s and peak RSS.
    /usr/bin/python3 bench/torch_cache.py --data DIR --weights W.bin --out DIR [--threads 2] [--channels-last]
"""
import argparse
import os
import resource
import struct
import sys
import time
import zlib

import numpy as np
import torch
import torchvision
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True)
ap.add_argument("--weights", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--threads", type=int, default=0)
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--limit", type=int, default=0)
ap.add_argument("--channels-last", action="store_true")
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)


def read_tl_weights(path):  # weights/FORMAT.md
    b = open(path, "rb").read()
    assert b[:8] == b"TLVGGWT\0"
    n = struct.unpack_from("<I", b, 16)[0]
    assert zlib.crc32(b[:-4]) == struct.unpack_from("<I", b, len(b) - 4)[0]
    out = []
    for i in range(n):
        o = 256 + 64 * i
        kind, cin, cout, pool, wo, bo = struct.unpack_from("<4I2Q", b, o + 32)
        out.append((np.frombuffer(b, np.float32, 9 * cin * cout, wo).reshape(3, 3, cin, cout),
                    np.frombuffer(b, np.float32, cout, bo)))
    return out


files = []
for root, _, names in sorted(os.walk(a.data)):
    for n in sorted(names):
        if n.lower().endswith((".jpg", ".jpeg", ".png")):
            files.append(os.path.join(root, n))
if a.limit:
    files = files[:a.limit]


class Photos(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)

    def __getitem__(self, i):
        img = Image.open(files[i]).convert("RGB").resize((a.size, a.size), Image.NEAREST)
        x = np.asarray(img, dtype=np.float32)[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


features = torchvision.models.vgg16().features.eval()
convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
for conv, (w, b) in zip(convs, read_tl_weights(a.weights)):
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    conv.bias.data = torch.from_numpy(b.copy())
if a.channels_last:
    features = features.to(memory_format=torch.channels_last)
loader = torch.utils.data.DataLoader(Photos(), batch_size=a.batch, num_workers=a.workers)
os.makedirs(a.out, exist_ok=True)
t0 = time.time()
shard, k, done = [], 0, 0
with torch.no_grad():
    for x in loader:
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = features(x).permute(0, 2, 3, 1).contiguous().numpy()  # NHWC, as Keras
        shard.append(y)
        done += len(y)
        if sum(len(s) for s in shard) >= 512 or done == len(files):
            np.save(os.path.join(a.out, f"shard-{k:05d}.npy"), np.concatenate(shard))
            shard, k = [], k + 1
        if done % 400 < a.batch:
            print(f"  torch: {done}/{len(files)} images, {done / (time.time() - t0):.2f} images/s", file=sys.stderr,
                  flush=True)
dt = time.time() - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"torch {torch.__version__} ({'channels_last' if a.channels_last else 'NCHW'}, {torch.get_num_threads()} threads, "
      f"{a.workers} loader worker): {len(files)} images in {dt:.1f} s = {len(files) / dt:.2f} images/s, "
      f"peak RSS {rss / 1024:.0f} MB (largest process)")
