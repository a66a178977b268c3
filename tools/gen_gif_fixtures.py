#!/usr/bin/env python3
"""GIF fixtures for tests/test_trust2b.cpp (issue 26, finding 12): small GIFs built byte by byte
(uncovered pixels, a transparent index, a frame past the logical screen), written to tests/fixtures/,
with Pillow's convert('RGB') of each printed (the test holds those values). Run from the repo root."""
import struct, sys
from PIL import Image
import numpy as np
def bits_pack(codes):
    out=bytearray(); acc=0; n=0
    for c in codes:
        acc |= c << n; n += 3
        while n >= 8: out.append(acc & 255); acc >>= 8; n -= 8
    if n: out.append(acc & 255)
    return bytes(out)
def gif(sw, sh, frame, trans=None, bg=2):
    x0,y0,fw,fh = frame
    b = b'GIF89a' + struct.pack('<HHBBB', sw, sh, 0x81, bg, 0)
    b += bytes([0,0,0, 200,10,10, 10,200,10, 10,10,200])
    if trans is not None:
        b += bytes([0x21,0xF9,4,1,0,0,trans,0])
    b += b'\x2c' + struct.pack('<HHHHB', x0, y0, fw, fh, 0)
    codes=[]
    for i in range(fw*fh):
        if i % 2 == 0: codes.append(4)
        codes.append(1)
    codes.append(5)
    data = bits_pack(codes)
    b += bytes([2, len(data)]) + data + b'\x00;'
    return b
def frame_bytes(frame, fill, disposal=0):
    """A graphic control extension (disposal, 10 cs delay) and a frame of palette index `fill`."""
    x0,y0,fw,fh = frame
    b = bytes([0x21,0xF9,4,disposal<<2,10,0,0,0])
    b += b'\x2c' + struct.pack('<HHHHB', x0, y0, fw, fh, 0)
    codes=[]
    for i in range(fw*fh):
        if i % 2 == 0: codes.append(4)
        codes.append(fill)
    codes.append(5)
    data = bits_pack(codes)
    return b + bytes([2, len(data)]) + data + b'\x00'
def anim(sw, sh, frames):
    """An animated GIF as encoders write them: a NETSCAPE loop block, then one frame after another."""
    b = b'GIF89a' + struct.pack('<HHBBB', sw, sh, 0x81, 2, 0)
    b += bytes([0,0,0, 200,10,10, 10,200,10, 10,10,200])
    b += bytes([0x21,0xFF,11]) + b'NETSCAPE2.0' + bytes([3,1,0,0,0])
    for f in frames: b += frame_bytes(*f)
    return b + b';'
cases = {'gif_pillow_uncovered.gif': gif(4,3,(1,1,2,2)),
         # Three frames: Pillow's Image.open(f).convert('RGB') is the first alone (Keras' load_img too).
         'gif_pillow_animated.gif': anim(4,3,[((1,1,2,2),1,2),((0,0,4,3),3,0),((0,0,2,1),2,0)]),
         'gif_pillow_uncovered_trns.gif': gif(4,3,(1,1,2,2),trans=3),
         'gif_pillow_frame_past_screen.gif': gif(2,2,(1,0,2,3))}
for name, b in cases.items():
    open('tests/fixtures/'+name,'wb').write(b)
    im = Image.open('tests/fixtures/'+name)
    a = np.asarray(im.convert('RGB'))
    print(name, im.size, im.mode, a.reshape(-1).tolist())
