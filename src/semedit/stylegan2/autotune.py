"""``auto`` by measurement: which of eager, bf16, compiled and compiled + bf16 a job's synthesis runs.

Which path is fastest differs by machine (compiling doubled the CPU speed on an AVX512-BF16 EPYC and slowed it
to 0.80x on an AVX2 one, benchmarks/results/<machine kind>/speed.json), so where ``generator.compile`` and/or ``generator.reduced_precision`` are
"auto" and a job has said how many synthesis calls it expects (``expect_calls``), the first call of that job:

1. looks up the decision cache (``cache_path()``, JSON next to the inductor cache) under the key (device model,
   thread count, torch version, generator shape, batch, with/without gradients);
2. otherwise measures the candidates on the call's own inputs: one warm-up call each (a compiled candidate
   compiles there: that time is its ``compile_seconds``), then ``ROUNDS`` timed calls taking turns (best of
   each), and the mean |difference| of each candidate's images from the eager fp32 ones;
3. keeps the candidates within the error budget (mean |diff| <= ``ERROR_BUDGET`` on [-1, 1] images; a precision
   the user forced is not judged), and picks the one with the least expected job time,
   ``calls * seconds_per_call`` plus the compile time where the graph is not compiled yet in this process;
4. prints one line: what it chose and why, and where the decision is cached.

Steps 1-3 run under a lock on the cache file: the processes of a DDP job (or jobs started together on one machine)
do not measure side by side; the first measures and the others take its decision from the cache.

Candidates: compiled or not where ``compile`` is "auto" (otherwise what it forces), bf16 or fp32 where
``reduced_precision`` is "auto" and the device multiplies bf16 natively (otherwise what it forces). A training job
never takes reduced precision under "auto" (only when bf16 is asked for), nor does the synthesis of its training
data ("training-data"). Compiling is not even measured when
the job is too short to win back the compile time (a single ``generate`` seed), and nothing is measured when
the measuring itself would cost a noticeable part of the job: the static rules of ``compile.py`` then decide.

``SEMEDIT_AUTOTUNE=0`` turns measuring and the cache off (the static rules of ``compile.py`` decide): the test
suite sets it, so that no test depends on the speed of the machine it runs on; tests of this module force each
branch with fake timings (``_timed``) and a counting compile backend.

The measurement runs on the synthesis network, at the first call in each gradient mode (a training step and its
validation renders are measured apart); the mapping network is small and keeps the static rule.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from semedit.errors import ConfigError
from semedit.files import write_atomically

try:
    import fcntl  # the decision cache's lock (POSIX)
except ImportError:  # Windows: no lock; each process may measure for itself
    fcntl = None

from semedit.stylegan2.compile import (
    bf16_capable,
    compile_enabled,
    default_cache_dir,
    describe_cpu,
    resolve_precision,
)

__all__ = ["Candidate", "Workload", "JOBS", "ERROR_BUDGET", "expect_calls", "decide", "choose", "cache_path",
           "autotune_enabled"]

log = logging.getLogger("semedit")

AUTOTUNE_ENV = "SEMEDIT_AUTOTUNE"
AUTOTUNE_CACHE_ENV = "SEMEDIT_AUTOTUNE_CACHE"
# The error budget: mean |diff| <= 0.02 against fp32 on [-1, 1] images (bf16 in the top 4 resolutions measured
# 0.007 at 1024 px and 0.016 at 256 px on FFHQ config-F weights).
ERROR_BUDGET = 0.02
ROUNDS = 3  # timed calls of each candidate after its warm-up, taking turns; the best one counts
# The measuring (warm-up + ROUNDS calls of every candidate) may cost at most this share of the job's expected
# eager time; a shorter job is not measured (semedit's choice).
MAX_MEASURE_SHARE = 0.1
# A compiled graph is measured only if the job could win back its compile time at this speedup (semedit's
# choice: above the best compiled speedup ever measured on a CPU here, 2.25x at 256 px batch 4 on the AVX512-BF16
# EPYC before eager got its in-place and polyphase passes; compiled is 1.02-1.11x eager there now).
COMPILE_SPEEDUP_CEILING = 3.0
# Seconds to compile the synthesis when no compile of this generator shape was measured on this machine yet.
# Measured on the 2-core AMD EPYC with AVX512-BF16 (load below 2, empty inductor cache; first call included):
# forward 37-58 s (256 px batch 4, 1024 px batch 1, fp32 and bf16), forward + backward 83-89 s (256 px batch 4);
# benchmarks/results/amd-epyc-avx512bf16/speed.json ("compile_seconds"). The longest, rounded up (semedit's choice). On the AVX2
# machine under load 5-8 it took 400-580 s (benchmarks/results/amd-epyc-avx2/speed.json). Not measured on a
# GPU; the CPU figure is used there too (inductor's code generation runs on the CPU).
COMPILE_SECONDS_GUESS = 90.0
# Candidates within this share of the fastest count as equally fast; the simpler one is taken (eager before
# compiled, fp32 before bf16: fewer compile minutes, no rounding). semedit's choice.
TIE_SHARE = 0.03

# Job kinds: whether their synthesis calls run with gradients, and whether "auto" may pick reduced precision.
JOBS = {
    "train": dict(grad=True, reduced_ok=False),  # the trained network's loss flows through the generator
    "invert": dict(grad=True, reduced_ok=True),  # optimisation through G (projector, ChunkyGAN, PTI)
    # The pair datamodule's synthesis feeds a training: as the training itself, fp32 unless bf16 is asked for.
    "training-data": dict(grad=False, reduced_ok=False),
    "render": dict(grad=False, reduced_ok=True),  # galleries, transfer batches, demo, generate
}


@dataclass(frozen=True)
class Candidate:
    compiled: bool
    precision: str  # "none" | "bf16" | "fp16"

    @property
    def name(self) -> str:
        parts = (["compiled"] if self.compiled else []) + ([] if self.precision == "none" else [self.precision])
        return "+".join(parts) or "eager"


EAGER = Candidate(False, "none")


@dataclass(frozen=True)
class Workload:
    job: str
    calls: float  # expected synthesis calls of the job in this gradient mode (math.inf: open-ended)
    grad: bool
    reduced_ok: bool


@dataclass
class Measurement:
    seconds: float  # best seconds per call
    compile_seconds: Optional[float] = None  # the warm-up call of a compiled candidate (compiling included)
    mean_abs_diff: float = 0.0  # against eager fp32 on the same inputs


@dataclass
class Decision:
    candidate: Candidate
    line: str  # what was chosen and why
    announce: bool = True  # printed once (not for settings that force the choice: nothing was decided)


_LOCK = threading.RLock()


def autotune_enabled() -> bool:
    value = os.environ.get(AUTOTUNE_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ConfigError(f"{AUTOTUNE_ENV}={value!r}: expected 1 (measure), 0 (static rules) or unset (measure)")
    return value != "0"


def cache_path() -> Path:
    """~/.cache/semedit/autotune.json, next to the inductor cache (``compile.default_cache_dir()``);
    ``$SEMEDIT_AUTOTUNE_CACHE`` names another file (benchmarks decide afresh in their own)."""
    return Path(os.environ.get(AUTOTUNE_CACHE_ENV) or default_cache_dir().parent / "autotune.json")


def expect_calls(G: torch.nn.Module, calls: Union[int, float], job: str = "render") -> None:
    """Declare that this job will call ``G``'s synthesis about ``calls`` times (per process) in the gradient
    mode of ``job`` ("train" | "invert": with gradients; "training-data" | "render": without). The next such call decides "auto"
    for the job (``decide``); a later declaration replaces this one and decides again."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {sorted(JOBS)}, got {job!r}")
    synthesis = getattr(G, "synthesis", G)
    calls = math.inf if calls is None or calls < 0 else float(calls)
    workload = Workload(job, calls, **JOBS[job])
    with _LOCK:
        synthesis.autotune_workloads[workload.grad] = workload
        synthesis.autotune_choices.pop(workload.grad, None)


def settings_candidates(synthesis, device: torch.device, workload: Optional[Workload]) -> list[Candidate]:
    """The candidates the settings leave open (one when nothing is "auto")."""
    compile_setting = synthesis.compile_setting
    compiled = [False, True] if compile_setting == "auto" else [compile_setting == "on"]
    forced = forced_precision(synthesis)
    if forced:
        precisions = [forced]
    elif _has_auto_precision(synthesis):
        reduced_ok = workload is None or workload.reduced_ok
        precisions = ["none", "bf16"] if reduced_ok and bf16_capable(device) else ["none"]
    else:
        precisions = ["none"]
    return [Candidate(c, p) for c in compiled for p in precisions]


def static_candidate(synthesis, device: torch.device, workload: Optional[Workload]) -> Candidate:
    """What the rules without measuring pick (compile.compile_enabled, compile.resolve_precision)."""
    forced = forced_precision(synthesis)
    if forced:
        precision = forced
    elif _has_auto_precision(synthesis) and (workload is None or workload.reduced_ok):
        precision = resolve_precision("auto", device)
    else:
        precision = "none"
    return Candidate(compile_enabled(synthesis.compile_setting, device), precision)


def prepare(synthesis, device: torch.device, inputs: Sequence[torch.Tensor],
            run: Callable[[Sequence[torch.Tensor]], torch.Tensor]) -> Optional[Candidate]:
    """The candidate this call runs (None: the static rules, for a job that declared nothing). Called by
    ``SynthesisNetwork`` before each call; ``run(inputs)`` runs the synthesis with ``synthesis.autotune_active``."""
    if torch.compiler.is_compiling() or synthesis.autotune_busy:
        return synthesis.autotune_active
    grad = torch.is_grad_enabled() and (any(t.requires_grad for t in inputs)
                                        or any(p.requires_grad for p in synthesis.parameters()))
    with _LOCK:
        if grad not in synthesis.autotune_choices:
            workload = synthesis.autotune_workloads.get(grad)
            decision = None if workload is None else decide(synthesis, device, inputs, run, workload)
            synthesis.autotune_choices[grad] = decision
            if decision is not None and decision.announce:
                _say(decision.line)
            elif decision is not None:
                log.debug(decision.line)
        decision = synthesis.autotune_choices[grad]
    return None if decision is None else decision.candidate


def decide(synthesis, device: torch.device, inputs: Sequence[torch.Tensor], run, workload: Workload) -> Decision:
    """Cache, measurement or static rule, for one job's synthesis calls (see the module docstring)."""
    candidates = settings_candidates(synthesis, device, workload)
    head = f"generator {workload.job} (batch {inputs[0].shape[0]}{', with gradients' if workload.grad else ''})"
    if len(candidates) == 1:
        return Decision(candidates[0], f"{head}: {candidates[0].name} (forced by the settings)", announce=False)
    static = static_candidate(synthesis, device, workload)
    if not autotune_enabled():
        # Nothing was decided (the user turned measuring off): said only in the debug log.
        return Decision(static, f"{head}: {static.name} (static rule: {AUTOTUNE_ENV}=0)", announce=False)
    key = cache_key(synthesis, device, inputs[0].shape[0], workload.grad)
    path = cache_path()
    # One process at a time reads, measures and writes this machine's decisions: the processes of a DDP job (or
    # jobs started together) wait for the first one's measurement and then take the same decision from the cache,
    # instead of measuring at once, slowing each other, and possibly choosing differently.
    with _exclusive(path):
        return _decide_from_cache_or_measure(synthesis, device, inputs, run, workload, candidates, static, head, key,
                                             path)


def _decide_from_cache_or_measure(synthesis, device, inputs, run, workload: Workload, candidates: list[Candidate],
                                  static: Candidate, head: str, key: str, path: Path) -> Decision:
    entry = _read_cache(path).get(key)
    if entry is not None:
        measured = {name: Measurement(**m) for name, m in entry["candidates"].items()}
        if all(c.name in measured or _compile_skip_still_holds(c, entry, workload) for c in candidates):
            best, why = choose(measured, candidates, workload, already_compiled=set(),
                               forced_precision=forced_precision(synthesis) is not None)
            return Decision(best, f"{head}: {best.name} ({why}; cached {entry['measured']} in {path})")
    # Measuring costs ROUNDS + 1 calls per candidate (compiles aside): only for a long enough job.
    measuring_calls = (ROUNDS + 1) * len(candidates)
    if workload.calls * MAX_MEASURE_SHARE < measuring_calls:
        return Decision(static, f"{head}: {static.name} (not measured: {workload.calls:g} calls are too few to "
                                f"pay for measuring; static rule)")
    measured, skipped = measure(synthesis, device, inputs, run, candidates, workload)
    best, why = choose(measured, candidates, workload, already_compiled={n for n in measured if "compiled" in n},
                       forced_precision=forced_precision(synthesis) is not None)
    stamp = datetime.datetime.now().isoformat(timespec="seconds")
    # A graph already compiled in this process (or found in inductor's cache) compiles in seconds: keep the
    # longest compile seen for this key, so that a later job does not count on a warm start it may not get.
    for name, m in (entry or {}).get("candidates", {}).items():
        if name in measured and m.get("compile_seconds") and measured[name].compile_seconds is not None:
            measured[name].compile_seconds = max(measured[name].compile_seconds, m["compile_seconds"])
    _write_cache(path, key, {"measured": stamp, "machine": machine_description(device), "batch": inputs[0].shape[0],
                             "grad": workload.grad, "calls_when_measured": workload.calls,
                             "candidates": {n: vars(m) for n, m in measured.items()}, "skipped": skipped})
    note = "; ".join(f"{n} not measured: {w}" for n, w in skipped.items())
    return Decision(best, f"{head}: {best.name} ({why}{'; ' + note if note else ''}; measured {stamp}, cached in "
                          f"{path})")


def forced_precision(synthesis) -> Optional[str]:
    """The reduced precision the settings force on some blocks ("bf16" | "fp16"), or None."""
    forced = {b.precision_setting for b in synthesis.blocks()} - {"none", "auto"}
    return forced.pop() if forced else None


def _has_auto_precision(synthesis) -> bool:
    return any(b.precision_setting == "auto" for b in synthesis.blocks())


def _compile_skip_still_holds(candidate: Candidate, entry: dict, workload: Workload) -> bool:
    """A compiled candidate the cached measurement skipped as not worth compiling for a job of N calls still
    counts as skipped for a job that is not longer."""
    return candidate.name in entry.get("skipped", {}) and workload.calls <= entry.get("calls_when_measured", 0)


def choose(measured: dict[str, Measurement], candidates: Sequence[Candidate], workload: Workload,
           already_compiled: set[str], forced_precision: bool = False) -> tuple[Candidate, str]:
    """The candidate with the least expected job time among those within the error budget; ties (within
    ``TIE_SHARE``) go to the simpler one (order of ``candidates``: eager first). Returns it and why."""
    budget = {c.name: forced_precision or c.precision == "none" or measured[c.name].mean_abs_diff <= ERROR_BUDGET
              for c in candidates if c.name in measured}
    calls = workload.calls if math.isfinite(workload.calls) else 1e9

    def cost(c: Candidate) -> float:
        m = measured[c.name]
        setup = (m.compile_seconds or 0.0) if c.compiled and c.name not in already_compiled else 0.0
        return calls * m.seconds + setup

    ok = [c for c in candidates if budget.get(c.name)]
    if not ok:  # nothing measured within the budget: fp32 of the first kind
        ok = [c for c in candidates if c.name in measured and c.precision == "none"] or list(candidates)[:1]
    fastest = min(cost(c) for c in ok)
    best = next(c for c in ok if cost(c) <= fastest * (1 + TIE_SHARE))
    base = measured.get(EAGER.name) or measured.get(candidates[0].name)
    m = measured[best.name]
    winner = next(c for c in ok if cost(c) <= fastest)
    parts = []
    if best != EAGER:
        parts.append(f"{base.seconds / m.seconds:.2f}x eager" if EAGER.name in measured else f"{m.seconds:.3g} s per call")
    if best != winner:  # the tie rule: nearly as fast, and simpler
        parts.append(f"within {TIE_SHARE:.0%} of {winner.name}'s job time, and simpler")
    elif best == EAGER:
        parts.append("fastest" if len(measured) > 1 else "the only variant measured")
    if best.precision != "none":  # fp32 variants match fp32 by construction
        parts.append(f"mean |diff| {m.mean_abs_diff:.4f} vs fp32")
    rejected = [n for n, within in budget.items() if not within]
    if rejected:
        parts.append(f"{', '.join(rejected)} over the {ERROR_BUDGET} error budget")
    if best.compiled and best.name not in already_compiled and m.compile_seconds:
        parts.append(f"{m.compile_seconds:.0f} s compile counted against {workload.calls:g} calls")
    others = [f"{c.name} {measured[c.name].seconds:.3g}s" for c in candidates if c.name in measured]
    parts.append("per call: " + ", ".join(others))
    return best, "; ".join(parts)


def measure(synthesis, device: torch.device, inputs: Sequence[torch.Tensor], run, candidates: Sequence[Candidate],
            workload: Workload) -> tuple[dict[str, Measurement], dict[str, str]]:
    """Time every candidate on ``inputs`` (see the module docstring); compiled ones only where the job could
    win back their compile time. Returns measurements by name and the skipped candidates with the reason."""
    measured: dict[str, Measurement] = {}
    skipped: dict[str, str] = {}
    outputs: dict[str, torch.Tensor] = {}
    synthesis.autotune_busy = True
    previous = synthesis.autotune_active
    try:
        reference = _call(synthesis, device, inputs, run, EAGER, workload.grad, reference=True)[1]
        eager_like = [c for c in candidates if not c.compiled]
        compiled = [c for c in candidates if c.compiled]
        for c in eager_like:  # warm-up
            outputs[c.name] = _call(synthesis, device, inputs, run, c, workload.grad)[1]
        best = _rounds(synthesis, device, inputs, run, eager_like, workload.grad)
        if compiled and eager_like:
            fastest_eager = min(best.values())
            calls = workload.calls if math.isfinite(workload.calls) else 1e9
            gain = calls * fastest_eager * (1 - 1 / COMPILE_SPEEDUP_CEILING)
            estimate = compile_estimate(synthesis, device)
            if gain < estimate:
                for c in compiled:
                    skipped[c.name] = (f"{workload.calls:g} calls could save at most {gain:.0f} s, compiling takes "
                                       f"about {estimate:.0f} s")
                compiled = []
        compile_seconds = {}
        for c in compiled:  # warm-up: compiles
            compile_seconds[c.name], outputs[c.name] = _call(synthesis, device, inputs, run, c, workload.grad)
        if compiled:  # all candidates take turns again, so that a neighbour's load slows them alike
            best.update(_rounds(synthesis, device, inputs, run, eager_like + compiled, workload.grad))
        for c in eager_like + compiled:
            diff = (outputs[c.name].float() - reference.float()).abs().mean().item()
            measured[c.name] = Measurement(best[c.name], compile_seconds.get(c.name), diff)
    finally:
        synthesis.autotune_busy = False
        synthesis.autotune_active = previous
        synthesis.apply_autotune_precision(device)
    return measured, skipped


def _rounds(synthesis, device, inputs, run, candidates, grad) -> dict[str, float]:
    best = {c.name: math.inf for c in candidates}
    for _ in range(ROUNDS):
        for c in candidates:
            best[c.name] = min(best[c.name], _call(synthesis, device, inputs, run, c, grad)[0])
    return best


def _call(synthesis, device, inputs, run, candidate: Candidate, grad: bool,
          reference: bool = False) -> tuple[float, torch.Tensor]:
    """Run the synthesis once as ``candidate`` (``reference``: every block in fp32, forced ones too); returns
    (seconds, images). With ``grad`` the backward pass to the inputs (and to any trainable weights) is timed
    too, without accumulating into anything's ``.grad``."""
    synthesis.autotune_active = candidate
    synthesis.apply_autotune_precision(device, all_fp32=reference)
    fresh = [t.detach().clone().requires_grad_(grad and t.is_floating_point()) for t in inputs]
    trainable = [p for p in synthesis.parameters() if p.requires_grad] if grad else []

    def fn():
        with torch.set_grad_enabled(grad):
            out = run(fresh)
            if grad:
                wrt = [t for t in fresh if t.requires_grad] + trainable
                torch.autograd.grad(out, wrt, grad_outputs=torch.ones_like(out), allow_unused=True)
        return out.detach()

    return _timed(candidate, fn, device)


def _timed(candidate: Candidate, fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """(seconds, output) of ``fn()``; the tests replace this with fake timings."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def compile_estimate(synthesis, device: torch.device) -> float:
    """Compile seconds of this generator shape measured on this machine before (any batch), else the guess."""
    prefix = f"{machine_key(device)}|torch {torch.__version__}|{shape_signature(synthesis)}|"
    seen = [m["compile_seconds"] for key, entry in _read_cache(cache_path()).items() if key.startswith(prefix)
            for m in entry["candidates"].values() if m.get("compile_seconds")]
    return min(seen) if seen else COMPILE_SECONDS_GUESS


def machine_key(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    cpu = describe_cpu()
    return (f"cpu:{cpu['model_name']}|{cpu['torch_cpu_capability']}|bf16={int(cpu['bf16_native'])}|"
            f"threads={torch.get_num_threads()}")


def machine_description(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info.update(describe_cpu())
    return info


def shape_signature(synthesis) -> str:
    """"<res>px-<architecture>-<hash>": the layer shapes, clamps and which blocks run in which precision setting."""
    blocks = [(b.resolution, b.in_channels, b.out_channels, b.architecture, b.conv1.conv_clamp, b.precision_setting)
              for b in synthesis.blocks()]
    digest = hashlib.sha1(repr((synthesis.img_channels, synthesis.w_dim, blocks)).encode()).hexdigest()[:10]
    return f"{synthesis.img_resolution}px-{synthesis.blocks()[-1].architecture}-{digest}"


def cache_key(synthesis, device: torch.device, batch: int, grad: bool) -> str:
    return (f"{machine_key(device)}|torch {torch.__version__}|{shape_signature(synthesis)}|batch {batch}|"
            f"{'grad' if grad else 'no-grad'}")


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<cache>.lock`` (POSIX ``flock``; released when the process dies, so a killed
    job never blocks the next). Where the lock cannot be taken (read-only home, no fcntl) nothing is held."""
    if fcntl is None:  # not POSIX
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path.with_name(path.name + ".lock"), "a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict) -> None:
    """Add ``entry`` under ``key`` (atomically: concurrent jobs never leave a half-written file)."""
    try:
        entries = _read_cache(path)
        entries[key] = entry
        text = json.dumps({"version": 1, "entries": entries}, indent=1)
        write_atomically(path, lambda tmp: tmp.write_text(text))
    except OSError as err:  # a read-only home: the decision still holds for this run
        log.warning("could not write the autotune cache %s: %s", path, err)


def _say(line: str) -> None:
    message = line
    if logging.getLogger().handlers or log.handlers:
        log.info(message)
    else:  # logging not configured (the CLI): still show the one line
        print(f"semedit: {message}", file=sys.stderr)
