#!/bin/sh
# fetch-mnist.sh: download the original MNIST digits (IDX, gzip'd) into data/mnist/ and check
# them: SHA-256 of each .gz, and the published MD5 of each uncompressed file.
# Usage: data/fetch-mnist.sh [DEST]   (default: the mnist/ folder next to this script)
set -eu
dest=${1:-$(dirname "$0")/mnist}
mkdir -p "$dest"
cd "$dest"
mirrors="https://ossci-datasets.s3.amazonaws.com/mnist http://yann.lecun.com/exdb/mnist"
cat > SHA256SUMS <<'SUMS'
1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be  t10k-images-idx3-ubyte.gz
b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b  t10k-labels-idx1-ubyte.gz
0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971  train-images-idx3-ubyte.gz
1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203  train-labels-idx1-ubyte.gz
SUMS
cat > MD5SUMS.raw <<'SUMS'
2646ac647ad5339dbf082846283269ea  t10k-images-idx3-ubyte
27ae3e4e09519cfbb04c329615203637  t10k-labels-idx1-ubyte
6bbc9ace898e44ae57da46a324031adb  train-images-idx3-ubyte
a25bea736e30d166cdddb491f175f624  train-labels-idx1-ubyte
SUMS
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -s "$f.gz" ] && continue
    ok=0
    for m in $mirrors; do
        if curl -fsSL -o "$f.gz.part" "$m/$f.gz" || wget -q -O "$f.gz.part" "$m/$f.gz"; then
            mv "$f.gz.part" "$f.gz"; ok=1; break
        fi
    done
    [ $ok = 1 ] || { echo "fetch-mnist: could not download $f.gz from: $mirrors" >&2; exit 1; }
done
sha256sum -c SHA256SUMS
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    want=$(grep " $f\$" MD5SUMS.raw | cut -d' ' -f1)
    got=$(gunzip -c "$f.gz" | md5sum | cut -d' ' -f1)
    [ "$want" = "$got" ] || { echo "fetch-mnist: $f: md5 $got, published $want" >&2; exit 1; }
done
echo "MNIST is in $(pwd); run: CONVNET_DATA=$(cd .. && pwd) ./convnet-dist train jobs/mnist-digits.job"
