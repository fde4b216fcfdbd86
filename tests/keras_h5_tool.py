#!/usr/bin/python3
"""keras_h5_tool.py: Keras weights files written with h5py, for the tests of the importer and
the exporter (tests/test_export.c), in the layouts Keras itself writes:

  Keras 2 (tf.keras save_weights): root attributes layer_names (np.array of bytes), backend,
  keras_version; one group per layer with attribute weight_names (an empty float64 array for
  a layer without weights) and datasets <layer>/<layer>/kernel:0, .../bias:0.
  Keras 3 (model.save_weights("x.weights.h5"), saving_lib.H5IOStore): /vars (the model's own,
  empty), /layers/<key>/vars/0, 1 where key is the snake-case class name numbered per class.

  keras_h5_tool.py write SPEC OUT_KERAS2 OUT_KERAS3 SEED
      SPEC: comma-separated layers NAME:CLASSKEY[:KERNEL_SHAPE[:b]], e.g.
      conv2d:conv2d:3x3x1x4:b,max_pooling2d:max_pooling2d,flatten:flatten,dense:dense:100x3:b
      The same random float32 values go into both files.
  keras_h5_tool.py compare A B
      Exit 0 when A and B hold the same groups, datasets (shape, dtype, values bitwise) and
      attributes (names, types, values); else print the differences and exit 1.
Exit 77 when h5py is missing (apt-get install python3-h5py).
"""
import sys

try:
    import h5py
    import numpy as np
except ImportError:
    print("python3-h5py is not installed (apt-get install python3-h5py)")
    sys.exit(77)


def parse_spec(spec):
    layers = []
    for item in spec.split(","):
        f = item.split(":")
        shape = tuple(int(x) for x in f[2].split("x")) if len(f) > 2 else None
        layers.append((f[0], f[1], shape, len(f) > 3 and f[3] == "b"))
    return layers


def write(spec, out2, out3, seed):
    rng = np.random.default_rng(seed)
    layers = parse_spec(spec)
    values = {}
    for name, _, shape, bias in layers:
        if shape:
            values[name] = [rng.uniform(-1, 1, shape).astype(np.float32)]
            if bias:
                values[name].append(rng.uniform(-1, 1, (shape[-1],)).astype(np.float32))
    with h5py.File(out2, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _, _, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.15.0"
        for name, _, _, _ in layers:
            g = f.create_group(name)
            w = values.get(name, [])
            wn = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()][: len(w)]
            g.attrs["weight_names"] = np.array(wn) if wn else np.asarray([])
            for n, v in zip(wn, w):
                g.create_dataset(n.decode(), data=v)
    counts = {}
    with h5py.File(out3, "w") as f:
        f.create_group("vars")
        top = f.create_group("layers")
        for name, cls, _, _ in layers:
            k = counts.get(cls, 0)
            counts[cls] = k + 1
            vars_ = top.create_group(cls if k == 0 else f"{cls}_{k}").create_group("vars")
            for i, v in enumerate(values.get(name, [])):
                vars_[str(i)] = v


def describe(f):
    """Every object and attribute of an open file as {path: description}."""
    out = {}

    def attrs(path, obj):
        for k, v in obj.attrs.items():
            a = obj.attrs.get_id(k)
            t = a.get_type()
            if t.get_class() == h5py.h5t.STRING:
                kind = ("string", t.is_variable_str(), t.get_cset(),
                        None if t.is_variable_str() else (t.get_size(), t.get_strpad()))
                val = [x if isinstance(x, bytes) else str(x).encode() for x in np.atleast_1d(v)]
            else:
                kind = (t.get_class(), t.get_size())
                val = np.asarray(v).tobytes()
            out[f"{path}@{k}"] = (kind, val, np.shape(v))

    def visit(path, obj):
        if isinstance(obj, h5py.Dataset):
            out[path] = ("dataset", obj.dtype.str, obj.shape, obj[()].tobytes())
        else:
            out[path] = ("group",)
        attrs(path, obj)

    attrs("/", f)
    f.visititems(visit)
    return out


def compare(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = describe(fa), describe(fb)
    bad = 0
    for k in sorted(set(da) | set(db)):
        if k not in da or k not in db:
            print(f"{k}: only in {a if k in da else b}")
            bad += 1
        elif da[k] != db[k]:
            print(f"{k}: differs: {str(da[k])[:120]} vs {str(db[k])[:120]}")
            bad += 1
    print(f"{len(da)} objects and attributes compared, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    print(__doc__)
    sys.exit(2)
