#!/usr/bin/env python3
"""Write tone440.wav: 1 s of a 440 Hz sine as G.711 mu-law WAV (format 7), the
format SIPp's rtp_stream plays as PCMU. Reproducible: same bytes every run."""
import math, struct, sys

def ulaw(sample):
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    s = min(abs(sample), CLIP) + BIAS
    exp = 7
    while exp > 0 and not (s & (0x4000 >> (7 - exp))):
        exp -= 1
    mant = (s >> (exp + 3)) & 0x0F
    return ~(sign | (exp << 4) | mant) & 0xFF

def main(path="tone440.wav", freq=440.0, rate=8000, secs=1.0, amp=8000):
    n = int(rate * secs)
    data = bytes(ulaw(int(amp * math.sin(2 * math.pi * freq * i / rate))) for i in range(n))
    fmt = struct.pack("<HHIIHH", 7, 1, rate, rate, 1, 8)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(riff)) + riff)

if __name__ == "__main__":
    main(*sys.argv[1:2])
