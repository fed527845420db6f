#!/usr/bin/env bash
# ChunkyGAN projection table (ECCV 2022): every row of eval.rows in configs/chunkygan/ffhq1024.yaml on the
# test set named there (eval.test_set / eval.test_set_size; assumption: the CelebA-HQ test split, as pSp/e4e).
# Needs: ffhq.pkl, LPIPS backbones, model_ir_se50.pth, psp_ffhq_encode.pt, e4e_ffhq_encode.pt
# (`semedit weights list`), and the aligned test images in data/celebahq-test-aligned.
set -euo pipefail
semedit eval-inversion data/celebahq-test-aligned --config configs/chunkygan/ffhq1024.yaml \
    --out runs/eval-inversion-ffhq "$@"
