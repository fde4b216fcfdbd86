#!/usr/bin/python3
"""pack_numpy_check.py: read a convnet-dist pack with numpy alone, by the layout docs/pack.md
documents, and compare it with what the C writer was given (tests/test_pack.c runs this).

Usage: pack_numpy_check.py PACK PIXELS LABELS H W C FINGERPRINT_HEX NAME,NAME,...
PIXELS: the expected N*H*W*C uint8 pixels (NHWC), LABELS: the expected N int32 labels.
Exit status 0 when everything matches, 1 otherwise (with what differs).
"""
import sys
import zlib

import numpy as np


def read_pack(path):
    """docs/pack.md's reader: the header by offset, then every section as a memmap view."""
    hd = np.fromfile(path, dtype=np.uint8, count=4096)
    assert hd[:8].tobytes() == b"CNDPACK1", "not a pack"
    u32 = lambda off: int(hd[off:off + 4].view("<u4")[0])
    u64 = lambda off: int(hd[off:off + 8].view("<u8")[0])
    assert u32(8) == 1, "pack version"
    assert zlib.crc32(hd[:4092].tobytes()) == u32(4092), "header CRC"
    n, h, w, c, k = u64(16), u32(24), u32(28), u32(32), u32(36)
    sec = {hd[72 + 32 * s:80 + 32 * s].tobytes().rstrip(b"\0").decode(): (u64(80 + 32 * s), u64(88 + 32 * s))
           for s in range(4)}
    names = np.fromfile(path, dtype=np.uint8, count=sec["classes"][1], offset=sec["classes"][0])
    classes = names.tobytes().decode().split("\0")[:k]
    labels = np.memmap(path, dtype="<i4", mode="r", offset=sec["labels"][0], shape=(n,))
    index = np.memmap(path, dtype=[("offset", "<u8"), ("length", "<u4"), ("crc", "<u4")],
                      mode="r", offset=sec["index"][0], shape=(n,))
    images = np.memmap(path, dtype=np.uint8, mode="r", offset=sec["records"][0], shape=(n, h, w, c))
    return dict(fingerprint=u64(40), classes=classes, labels=labels, index=index, images=images)


def main():
    path, pixels, labels, h, w, c, fp, names = sys.argv[1:9]
    p = read_pack(path)
    want_px = np.fromfile(pixels, dtype=np.uint8).reshape(-1, int(h), int(w), int(c))
    want_lb = np.fromfile(labels, dtype="<i4")
    bad = []
    if p["images"].shape != want_px.shape:
        bad.append(f"shape {p['images'].shape} != {want_px.shape}")
    elif not np.array_equal(p["images"], want_px):
        bad.append(f"pixels differ in samples {np.flatnonzero((p['images'] != want_px).any(axis=(1, 2, 3)))}")
    if not np.array_equal(p["labels"], want_lb):
        bad.append("labels differ")
    if p["fingerprint"] != int(fp, 16):
        bad.append(f"fingerprint {p['fingerprint']:016x} != {fp}")
    if p["classes"] != names.split(","):
        bad.append(f"classes {p['classes']} != {names}")
    # the per-record CRCs of the index, as pack_record checks them
    for i in range(len(p["labels"])):
        rec = p["images"][i]
        if zlib.crc32(rec.tobytes()) != int(p["index"]["crc"][i]):
            bad.append(f"record {i}: CRC mismatch")
            break
    if bad:
        print("pack_numpy_check:", path, "; ".join(bad))
        return 1
    print(f"pack_numpy_check: {path}: {len(want_lb)} samples of {h}x{w}x{c} match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
