#!/usr/bin/python3
"""onnx_check.py: our ONNX exports checked by independent runtimes (tests/test_export.c).

  onnx_check.py check FILE.onnx...
      python3-onnx's checker (full_check: shapes inferred too) on every file.
  onnx_check.py images --size H,W [--gray] --out DIR [--idx IMAGES.gz --count N | --random N]
                [JPEG...]
      JPEGs already at the model's input size (so that `predict` and OpenCV decode the same
      pixels and neither resizes): each JPEG resized with OpenCV (INTER_AREA), or the first N
      images of an IDX file; written as DIR/<class>/<name>.jpg, the class being the source's
      folder name (IDX: "digits"; --random: noise images in classes a and b); quality 95,
      4:4:4. Prints the paths.
  onnx_check.py compare FILE.onnx PREDICT.json [--gray] JPEG...
      Runs FILE.onnx in OpenCV's DNN module (cv2.dnn.readNetFromONNX) on the JPEGs (NHWC
      float32 pixels 0..255, RGB) and compares its probabilities with `convnet-dist predict
      --json --top K`'s (lines of PREDICT.json; class k is the k-th class name in sorted order,
      as predict numbers them; a 1-unit sigmoid output is class 1's probability; where class
      names repeat, as in ImageNet's short names, the sorted probabilities). Prints the
      maximum absolute difference; exit 1 when it exceeds 1e-4.
Exit 77 when python3-onnx / python3-opencv / numpy is missing (the test counts a skip).
"""
import gzip
import json
import os
import sys

try:
    import numpy as np
except ImportError:
    print("python3-numpy is not installed (apt-get install python3-numpy)")
    sys.exit(77)

TOL = 1e-4


def need(module, package):
    try:
        return __import__(module)
    except ImportError:
        print(f"{package} is not installed (apt-get install {package})")
        sys.exit(77)


def check(files):
    onnx = need("onnx", "python3-onnx")
    for f in files:
        m = onnx.load(f)
        onnx.checker.check_model(m, full_check=True)
        ops = sorted({n.op_type for n in m.graph.node})
        print(f"{f}: valid, opset {m.opset_import[0].version}, {len(m.graph.node)} nodes ({' '.join(ops)}), "
              f"{os.path.getsize(f)} bytes")
    return 0


def write_jpeg(cv2, path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95]
    if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    if not cv2.imwrite(path, img, params):
        raise SystemExit(f"cannot write {path}")
    print(path)


def images(args):
    cv2 = need("cv2", "python3-opencv")
    h, w = (int(x) for x in args[args.index("--size") + 1].split(","))
    out = args[args.index("--out") + 1]
    gray = "--gray" in args
    if "--random" in args:  # noise images in two classes, a and b (no data set needed)
        n = int(args[args.index("--random") + 1])
        rng = np.random.default_rng(5)
        for i in range(n):
            shape = (h, w) if gray else (h, w, 3)
            write_jpeg(cv2, os.path.join(out, "ab"[i % 2], f"{i}.jpg"), rng.integers(0, 256, shape, dtype=np.uint8))
        return 0
    if "--idx" in args:
        src, n = args[args.index("--idx") + 1], int(args[args.index("--count") + 1])
        with gzip.open(src) as f:
            data = f.read()
        rows, cols = int.from_bytes(data[8:12], "big"), int.from_bytes(data[12:16], "big")
        pix = np.frombuffer(data, np.uint8, n * rows * cols, 16).reshape(n, rows, cols)
        for i in range(n):
            write_jpeg(cv2, os.path.join(out, "digits", f"{i}.jpg"), cv2.resize(pix[i], (w, h), interpolation=cv2.INTER_AREA))
        return 0
    skip = {"--size", "--out"}
    srcs = [a for i, a in enumerate(args) if not a.startswith("--") and args[i - 1] not in skip]
    for s in srcs:
        img = cv2.imread(s, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read {s}")
        cls = os.path.basename(os.path.dirname(s))
        write_jpeg(cv2, os.path.join(out, cls, os.path.basename(s)), cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
    return 0


def compare(model, pred_json, imgs, gray):
    cv2 = need("cv2", "python3-opencv")
    ours, ours_top = {}, {}
    with open(pred_json) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                ours[r["path"]] = {t["class"]: t["probability"] for t in r["top"]}
                ours_top[r["path"]] = r["top"]
    batch = []
    for p in imgs:
        img = cv2.imread(p, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        img = img[:, :, None] if gray else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        batch.append(img.astype(np.float32))
    net = cv2.dnn.readNetFromONNX(model)
    net.setInput(np.stack(batch))
    probs = net.forward()
    worst = 0.0
    lo, hi = float(np.min(probs)), float(np.max(probs))
    for p, row in zip(imgs, probs):
        if p not in ours:
            print(f"{p}: no prediction of ours")
            return 1
        names = sorted(ours[p])
        mine = np.array([ours[p][n] for n in names])
        theirs = np.array([1 - row[0], row[0]]) if row.size == 1 else row
        if len(names) < theirs.size:  # class names repeat (ImageNet's short names): by rank
            mine = np.sort(np.array([t["probability"] for t in ours_top[p]]))
            theirs = np.sort(theirs)
        if theirs.size != mine.size:
            print(f"{p}: OpenCV gives {theirs.size} classes, predict {mine.size}")
            return 1
        worst = max(worst, float(np.max(np.abs(theirs - mine))))
    print(f"{model}: OpenCV DNN vs convnet-dist predict: max |dp| = {worst:.3g} over {len(imgs)} images, "
          f"{probs.shape[1]} outputs in [{lo:.3g}, {hi:.3g}], {os.path.getsize(model)} bytes")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "check" and len(a) > 1:
        sys.exit(check(a[1:]))
    if a and a[0] == "images":
        sys.exit(images(a[1:]))
    if a and a[0] == "compare" and len(a) > 3:
        rest = [x for x in a[3:] if x != "--gray"]
        sys.exit(compare(a[1], a[2], rest, "--gray" in a))
    print(__doc__)
    sys.exit(2)
