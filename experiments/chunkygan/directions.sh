#!/usr/bin/env bash
# The paper's four edit directions (gender, smile, age, beard) from Chunkmogrify (futscdav/Chunkmogrify,
# by the ChunkyGAN authors), imported into semedit direction files with Chunkmogrify's W+ row ranges
# (w_directions.py lines 25-41: [start, end), end exclusive).
#   semedit weights download chunkmogrify-gender ... (or copy directions/*.npy of a Chunkmogrify checkout
#   into the weights folder); `semedit weights verify` checks them against the registry's SHA-256.
set -euo pipefail
W="${SEMEDIT_WEIGHTS:-$HOME/.cache/semedit/weights}"
OUT="${1:-runs/chunkmogrify-directions}"
for spec in gender:gender:0-5 smile:smile_styleganv2:0-5 age:age:0-8 beard:beard:6-9; do
  IFS=: read -r name stem layers <<<"$spec"
  semedit weights download "chunkmogrify-$stem"
  semedit directions import "$W/$stem.npy" --name "$name" --layers "$layers" --out "$OUT"
done
