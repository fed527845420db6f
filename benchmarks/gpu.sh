#!/usr/bin/env bash
# GPU readiness check, <= 8 minutes on one CUDA machine (each stage has its own time limit):
#   1. the gpu-marked tests (pytest -m gpu);
#   2. benchmarks/speed.py on CUDA at 1024 px batch 8: fp32 / bf16 / compiled / compiled bf16 (+ NVlabs'
#      reference ops when NVLABS_STYLEGAN2_ADA points at a stylegan2-ada-pytorch checkout), the hair
#      transfer per pair, the ChunkyGAN step and a hair training step in fp32 and bf16 autocast;
#   3. 50 DDP training steps of the tiny hair job on every visible GPU;
# then prints one table. Results go to $OUT (default benchmarks/results/latest/gpu, git-ignored).
#
#     bash benchmarks/gpu.sh            # from the repository root, after `make install`
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-benchmarks/results/latest/gpu}
mkdir -p "$OUT"
export WANDB_MODE=offline

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device visible to PyTorch; run it on a GPU machine" >&2
    exit 2
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")

declare -A STATUS SECONDS_TAKEN
stage() {  # stage NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    SECONDS_TAKEN[$name]=$((SECONDS - start))
    case $rc in
        0) STATUS[$name]=ok ;;
        124) STATUS[$name]="timed out" ;;
        *) STATUS[$name]="failed (rc $rc, see $OUT/$name.log)" ;;
    esac
    tail -n 3 "$OUT/$name.log"
}

stage gpu_tests 60 "$PY" -m pytest -q -m gpu -p no:cacheprovider
stage speed 300 "$PY" benchmarks/speed.py --device cuda --resolutions 1024 --batches 8 --repeats 3 \
    --out "$OUT/speed.json" ${NVLABS_STYLEGAN2_ADA:+--nvlabs "$NVLABS_STYLEGAN2_ADA"}
# The tiny hair job (the generator eager, so that the time goes to DDP steps rather than compiling).
stage ddp 100 "${SEMEDIT:-.venv/bin/semedit}" train hair trainer.accelerator=gpu "trainer.devices=$NGPU" \
    trainer.strategy=ddp trainer.max_steps=50 trainer.check_val_every_n_epoch=1000 \
    generator.compile=off logger.wandb=false "run.output_dir=$OUT/runs"

"$PY" - "$OUT" "$NGPU" "${STATUS[gpu_tests]}" "${SECONDS_TAKEN[gpu_tests]}" "${STATUS[speed]}" \
    "${SECONDS_TAKEN[speed]}" "${STATUS[ddp]}" "${SECONDS_TAKEN[ddp]}" <<'EOF'
import json, sys
from pathlib import Path

out, ngpu, tests, t_tests, speed, t_speed, ddp, t_ddp = sys.argv[1:]
rows = [("gpu tests", tests, f"{t_tests} s", ""), ("speed benchmark", speed, f"{t_speed} s", ""),
        (f"DDP 50 steps x {ngpu} GPU", ddp, f"{t_ddp} s", f"{50 / max(float(t_ddp), 1e-9):.2f} steps/s incl. start-up")]
path = Path(out) / "speed.json"
if path.is_file():
    report = json.loads(path.read_text())
    for r in report["generator"]:
        rows.append((f"synthesis {r['resolution']}px b{r['batch']} {r['variant']}", "", f"{r['images_per_s']:.1f} img/s",
                     f"x{r['speedup_vs_eager']:.2f} eager, {r['fraction_of_bf16_matmul']:.0%} of bf16 matmul"))
    for key in ("hair_transfer_per_pair", "chunkygan_step", "hair_training"):
        if key in report:
            r = report[key]
            figures = r.get("seconds_per_pair") or r.get("steps_per_s")
            unit = "s/pair" if "seconds_per_pair" in r else "steps/s"
            rows.append((key.replace("_", " "), "", ", ".join(f"{k} {v:.3g} {unit}" for k, v in figures.items()),
                         f"bf16 x{r['bf16_speedup']:.2f}"))
width = max(len(r[0]) for r in rows)
print(f"\n{'what':{width}s}  {'status':10s}  {'figure':28s}  note")
for name, status, figure, note in rows:
    print(f"{name:{width}s}  {status:10s}  {figure:28s}  {note}")
EOF
