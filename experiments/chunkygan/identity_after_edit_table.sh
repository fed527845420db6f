#!/usr/bin/env bash
# ChunkyGAN identity-after-edit table: the edit rows of configs/chunkygan/ffhq1024.yaml x the four
# Chunkmogrify directions, columns (a) reconstructed vs edited and (b) input vs edited. Uses the same output
# folder as projection_table.sh, so rows already inverted there are reused (every row resumes).
set -euo pipefail
D=runs/chunkmogrify-directions
[ -f "$D/beard.safetensors" ] || bash "$(dirname "$0")/directions.sh" "$D"
semedit eval-inversion data/celebahq-test-aligned --config configs/chunkygan/ffhq1024.yaml \
    --out runs/eval-inversion-ffhq \
    --direction "$D/gender.safetensors" --direction "$D/smile.safetensors" \
    --direction "$D/age.safetensors" --direction "$D/beard.safetensors" "$@"
