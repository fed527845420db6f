"""Two semedit jobs on one small machine: each job's training speed alone and side by side, default threads.

A job's automatic thread count is every CPU it may use (semedit.threads). Two such jobs on a 2-core machine
ran 4 threads on 2 cores, and each job ran 4x slower than alone: OpenMP's parallel regions wait at their
barriers for threads the other job has descheduled. semedit's jobs now follow the machine's load between
steps (``ThreadGovernor``: the CPUs other processes leave free). This benchmark measures the hair job's
training step (the tiny default: synthesis of a pair batch, encoders, losses, backward, Adam), with what
`semedit train` adds between steps, in worker processes started as the CLI starts them, for the variants
below: alone, and as two concurrent jobs.

Each is run alone and as two concurrent jobs; the JSON records steps/s and the concurrent/alone ratio
(goal: each of two concurrent default jobs at >= 45 % of its solo speed on 2 cores), with the machine.

    python benchmarks/threads.py --out benchmarks/results/latest/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "default": {},  # the thread count follows the machine's load (semedit.threads.ThreadGovernor)
    "default-passive-wait": {"OMP_WAIT_POLICY": "PASSIVE"},  # the same with OpenMP's passive wait policy
    "fixed-threads": {"SEMEDIT_FIXED_THREADS": "1"},  # no governor: every CPU, all the time (before)
    "fixed-threads-passive-wait": {"SEMEDIT_FIXED_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"SEMEDIT_THREADS": "1"},  # the manual remedy, --threads 1
}


def worker(seconds: float, start_at: float) -> None:
    """Train the tiny hair job's steps for ``seconds`` after a warm-up; print steps/s as JSON."""
    import torch

    from semedit.hair.fg2021.train import build
    from semedit.jobs import get_job
    from semedit.threads import configure_threads
    from semedit.training import machine_share_callbacks

    threads = configure_threads()
    cfg = get_job("hair").load_config(None, ["logger.wandb=false"])
    module, datamodule = build(cfg)
    # What `semedit train` adds to its Trainer: between steps, the thread count follows the machine's load.
    between_steps = ([] if os.environ.get("SEMEDIT_FIXED_THREADS") else
                     [cb.on_train_batch_start for cb in machine_share_callbacks(0, cfg.trainer)])
    module.on_fit_start()
    optimizer = torch.optim.Adam(module.net.parameters(), lr=1e-4)
    batch_size = cfg.data.batch_size

    def step(i: int) -> None:
        for hook in between_steps:
            hook()
        batch = datamodule.synthesize(torch.arange(i * batch_size, (i + 1) * batch_size))
        result = module.transfer_batch(batch)
        loss = module.compute_losses(result["output"], batch, result["ws"])["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(3):  # warm-up: allocator, oneDNN primitives
        step(i)
    while time.time() < start_at:  # concurrent workers start measuring together
        time.sleep(0.01)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        step(3 + done)
        done += 1
    elapsed = time.perf_counter() - began
    print(json.dumps({"steps_per_s": done / elapsed, "steps": done, "threads": threads,
                      "threads_at_end": torch.get_num_threads()}))


def run(variant: str, jobs: int, seconds: float) -> list[dict]:
    env = {**os.environ, **VARIANTS[variant]}
    env.pop("OMP_NUM_THREADS", None)
    if "OMP_WAIT_POLICY" not in VARIANTS[variant]:
        env.pop("OMP_WAIT_POLICY", None)
    start_at = time.time() + 25  # after every worker has built its models
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", "--seconds", str(seconds),
                               "--start-at", str(start_at)], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(jobs)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"worker failed ({variant}, {jobs} jobs)")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/latest/threads.json")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.seconds, args.start_at)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from semedit.stylegan2.compile import describe_cpu

    report = {"benchmark": "two concurrent `semedit train hair` (tiny default) jobs vs one alone",
              "machine": {**describe_cpu(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_at_start": os.getloadavg()},
              "seconds_per_run": args.seconds, "variants": {}}
    for variant in VARIANTS:
        alone = run(variant, 1, args.seconds)[0]
        pair = run(variant, 2, args.seconds)
        each = [r["steps_per_s"] for r in pair]
        report["variants"][variant] = {
            "threads_per_job": alone["threads"],
            "alone_steps_per_s": round(alone["steps_per_s"], 3),
            "concurrent_steps_per_s": [round(x, 3) for x in each],
            "concurrent_over_alone": [round(x / alone["steps_per_s"], 3) for x in each],
        }
        print(variant, report["variants"][variant], flush=True)
    default = report["variants"]["default"]["concurrent_over_alone"]
    report["goal"] = {"each_concurrent_default_job_at_least": 0.45, "met": min(default) >= 0.45}
    report["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
