"""``auto`` by measurement (semedit.stylegan2.autotune), every branch forced on any CPU.

Timings are fake (``autotune._timed`` returns a chosen number of seconds per candidate while still running the
candidate, so images and their errors are real), compiling uses a counting backend instead of inductor, the
decision cache lives in a temporary folder, and the bf16 probe is forced. Nothing depends on this CPU's speed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter

from semedit.stylegan2 import autotune, build_tiny_generator
from semedit.stylegan2 import compile as sg_compile
from semedit.stylegan2.autotune import Candidate, Measurement, Workload


@pytest.fixture
def tuned(monkeypatch, tmp_path):
    """Measuring on, a fresh cache, a counting compile backend; returns (fake seconds by candidate, said lines,
    candidates timed, compile counter)."""
    dynamo.reset()
    monkeypatch.setenv("SEMEDIT_AUTOTUNE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    counter = CompileCounter()
    monkeypatch.setattr(sg_compile, "COMPILE_BACKEND", counter)
    monkeypatch.setattr(sg_compile, "_COMPILED", {})
    seconds = {"eager": 1.0, "compiled": 0.5, "bf16": 0.7, "compiled+bf16": 0.4}
    said, timed = [], []

    def fake_timed(candidate, fn, device):
        timed.append(candidate.name)
        return seconds[candidate.name], fn()

    monkeypatch.setattr(autotune, "_timed", fake_timed)
    monkeypatch.setattr(autotune, "_say", said.append)
    yield seconds, said, timed, counter
    dynamo.reset()


def _generator(precision="none", compile_setting="auto"):
    G = build_tiny_generator(resolution=16, channel_max=32, seed=0)
    G.set_reduced_precision(precision, num_res=2)
    G.set_compile(compile_setting)
    return G


def _ws(G, n=2):
    with torch.no_grad():
        return G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(0)))


def _render(G, ws):
    with torch.no_grad():
        return G.synthesis(ws, noise_mode="const")


def test_fastest_is_compiled_for_a_long_job_and_the_job_then_runs_compiled(tuned):
    seconds, said, timed, counter = tuned
    G = _generator()
    ws = _ws(G)
    eager = _render(G, ws)
    autotune.expect_calls(G, 100_000, "render")
    out = _render(G, ws)
    assert torch.allclose(out, eager, atol=1e-5)
    assert set(timed) == {"eager", "compiled"} and counter.frame_count == 1
    assert len(said) == 1 and "render (batch 2): compiled (2.00x eager" in said[0] and "measured" in said[0]
    # The job's calls now run the compiled graph (no new compile) and the decision is not measured again.
    timed.clear()
    _render(G, ws)
    assert timed == [] and counter.frame_count == 1 and len(said) == 1
    entry = next(iter(json.loads(autotune.cache_path().read_text())["entries"].values()))
    assert entry["candidates"]["compiled"]["seconds"] == 0.5 and entry["batch"] == 2 and not entry["grad"]


def test_fastest_is_eager_when_compiling_does_not_pay(tuned):
    seconds, said, timed, counter = tuned
    seconds["compiled"] = 1.2  # slower than eager (as on the AVX2 EPYC at 256 px batch 4)
    G = _generator()
    autotune.expect_calls(G, 100_000, "render")
    _render(G, _ws(G))
    assert "compiled" in timed and ": eager (fastest" in said[0]
    # The compiled graph was built for the measurement only; the job's next calls run eagerly.
    before = counter.frame_count
    _render(G, _ws(G, 3))
    assert counter.frame_count == before


def test_compile_time_counts_against_the_job_length(tuned, monkeypatch):
    seconds, said, timed, counter = tuned
    monkeypatch.setattr(autotune, "COMPILE_SECONDS_GUESS", 180.0)  # no compile measured on this "machine" yet
    G = _generator()
    autotune.expect_calls(G, 300, "train")  # (another gradient mode: not this call's job)
    # 200 calls of 1 s could save at most 133 s at a 3x speedup, less than compiling: not even measured.
    autotune.expect_calls(G, 200, "render")
    _render(G, _ws(G))
    assert counter.frame_count == 0 and "compiled" not in timed
    assert ": eager" in said[0] and "compiled not measured" in said[0]
    # choose() itself: a compiled path that is faster per call loses when its compile time is not won back.
    measured = {"eager": Measurement(1.0), "compiled": Measurement(0.5, compile_seconds=400.0)}
    cands = [Candidate(False, "none"), Candidate(True, "none")]
    short, long = Workload("render", 100, False, True), Workload("render", 10_000, False, True)
    assert autotune.choose(measured, cands, short, already_compiled=set())[0].name == "eager"
    assert autotune.choose(measured, cands, long, already_compiled=set())[0].name == "compiled"
    assert autotune.choose(measured, cands, short, already_compiled={"compiled"})[0].name == "compiled"


def test_a_near_tie_goes_to_the_simpler_variant_and_says_so():
    cands = [Candidate(False, "none"), Candidate(False, "bf16"), Candidate(True, "none"), Candidate(True, "bf16")]
    measured = {"eager": Measurement(2.0), "bf16": Measurement(1.0, mean_abs_diff=0.01),
                "compiled": Measurement(1.9, compile_seconds=50.0),
                "compiled+bf16": Measurement(0.99, compile_seconds=50.0, mean_abs_diff=0.01)}
    gallery = Workload("render", 25_000, False, True)
    # compiled+bf16 costs 24,800 s, bf16 25,000 s: within the tie share, so bf16 (no compiling) is kept.
    best, why = autotune.choose(measured, cands, gallery, already_compiled=set())
    assert best.name == "bf16" and "2.00x eager" in why and "within 3% of compiled+bf16's job time" in why
    # Far apart: the faster one wins and no tie is claimed.
    measured["compiled+bf16"] = Measurement(0.5, compile_seconds=50.0, mean_abs_diff=0.01)
    best, why = autotune.choose(measured, cands, gallery, already_compiled=set())
    assert best.name == "compiled+bf16" and "within" not in why


def test_a_single_seed_is_not_measured(tuned):
    seconds, said, timed, counter = tuned
    G = _generator(precision="auto")
    autotune.expect_calls(G, 1, "render")
    _render(G, _ws(G, 1))
    assert timed == [] and "not measured" in said[0] and "static rule" in said[0]
    assert not autotune.cache_path().exists()


@pytest.mark.parametrize("budget, pick", [(1.0, "compiled+bf16"), (1e-7, "compiled")])
def test_bf16_is_kept_only_within_the_error_budget(tuned, monkeypatch, budget, pick):
    seconds, said, timed, counter = tuned
    monkeypatch.setenv("SEMEDIT_CPU_BF16", "1")  # a CPU with bf16 units, on any machine
    monkeypatch.setattr(autotune, "ERROR_BUDGET", budget)
    G = _generator(precision="auto")
    autotune.expect_calls(G, 100_000, "render")
    ws = _ws(G)
    out = _render(G, ws)
    assert set(timed) == {"eager", "bf16", "compiled", "compiled+bf16"}
    assert f": {pick} (" in said[0]
    if pick == "compiled":
        assert "bf16, compiled+bf16 over the" in said[0]
    entry = next(iter(json.loads(autotune.cache_path().read_text())["entries"].values()))
    assert entry["candidates"]["eager"]["mean_abs_diff"] == 0.0
    assert 0 < entry["candidates"]["bf16"]["mean_abs_diff"] < 0.05 * out.abs().mean().item()
    # The decision sets the blocks' dtype for the job's calls.
    assert (G.synthesis.b16.compute_dtype == torch.bfloat16) == (pick == "compiled+bf16")


def test_training_never_takes_bf16_under_auto_and_measures_with_gradients(tuned, monkeypatch):
    seconds, said, timed, counter = tuned
    monkeypatch.setenv("SEMEDIT_CPU_BF16", "1")
    monkeypatch.setattr(autotune, "ERROR_BUDGET", math.inf)
    G = _generator(precision="auto")
    autotune.expect_calls(G, 100_000, "train")
    ws = _ws(G).requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert set(timed) == {"eager", "compiled"} and "train (batch 2, with gradients): compiled" in said[0]
    assert G.synthesis.b16.compute_dtype is None
    # The measurement's backward passes left nothing in the job's tensors: only the job's own backward did.
    ref = ws.detach().clone().requires_grad_(True)
    G.set_compile("off")
    G.synthesis(ref).square().mean().backward()
    assert torch.allclose(ws.grad, ref.grad, atol=1e-5)
    assert all(p.grad is None for p in G.parameters())
    # bf16 asked for in training: used (not judged by the budget), compiled or not by measurement.
    said.clear()
    G.set_reduced_precision("bf16", num_res=2)
    G.set_compile("auto")
    autotune.expect_calls(G, 100_000, "train")
    G.synthesis(_ws(G).requires_grad_(True))
    assert ": compiled+bf16 (" in said[0] and G.synthesis.b16.compute_dtype == torch.bfloat16


def test_training_data_synthesis_stays_fp32_under_auto(tuned, monkeypatch):
    seconds, said, timed, counter = tuned
    monkeypatch.setenv("SEMEDIT_CPU_BF16", "1")
    monkeypatch.setattr(autotune, "ERROR_BUDGET", math.inf)
    G = _generator(precision="auto")
    autotune.expect_calls(G, 100_000, "training-data")  # what the pair datamodule declares
    with torch.no_grad():
        G.synthesis(_ws(G))
    assert set(timed) == {"eager", "compiled"} and G.synthesis.b16.compute_dtype is None
    timed.clear()
    autotune.expect_calls(G, 100_000, "render")  # a gallery of the same generator may take bf16
    with torch.no_grad():
        G.synthesis(_ws(G))
    assert "bf16" in set(timed)


def test_a_cached_decision_is_reused_and_says_so(tuned):
    seconds, said, timed, counter = tuned
    G = _generator()
    autotune.expect_calls(G, 100_000, "render")
    _render(G, _ws(G))
    timed.clear()
    G2 = _generator()  # another job, same machine, shape and batch
    autotune.expect_calls(G2, 100_000, "render")
    _render(G2, _ws(G2))
    assert timed == [] and ": compiled (" in said[1] and "cached" in said[1] and str(autotune.cache_path()) in said[1]
    # Another batch size is another key: measured again.
    G3 = _generator()
    autotune.expect_calls(G3, 100_000, "render")
    _render(G3, _ws(G3, 3))
    assert timed and "measured" in said[2]


def test_forced_settings_and_undeclared_jobs_are_not_measured(tuned, monkeypatch):
    seconds, said, timed, counter = tuned
    monkeypatch.setenv("SEMEDIT_CPU_BF16", "1")
    for precision, compile_setting in [("none", "off"), ("bf16", "on"), ("none", "on")]:
        G = _generator(precision, compile_setting)
        autotune.expect_calls(G, 100_000, "render")
        _render(G, _ws(G))
        assert "forced by the settings" in G.synthesis.autotune_choices[False].line
    G = _generator(precision="auto")  # no expect_calls: the static rules
    _render(G, _ws(G))
    assert G.synthesis.b16.compute_dtype == torch.bfloat16  # the probe says bf16 units
    # Nothing was decided, so nothing was said, timed or cached.
    assert timed == [] and said == [] and not autotune.cache_path().exists()


def test_autotune_off_follows_the_static_rules(tuned, monkeypatch):
    seconds, said, timed, counter = tuned
    monkeypatch.setenv("SEMEDIT_AUTOTUNE", "0")
    G = _generator()
    autotune.expect_calls(G, 100_000, "render")
    _render(G, _ws(G))
    assert timed == [] and counter.frame_count == 0 and said == []  # nothing decided: nothing printed
    assert "static rule" in G.synthesis.autotune_choices[False].line
    monkeypatch.setenv("SEMEDIT_AUTOTUNE", "yes")
    with pytest.raises(ValueError, match="SEMEDIT_AUTOTUNE"):
        autotune.autotune_enabled()
    with pytest.raises(ValueError, match="job"):
        autotune.expect_calls(G, 10, "gallery")


_RACE_SCRIPT = """
import os, sys, time
from pathlib import Path
import torch
from semedit.stylegan2 import autotune, build_tiny_generator

folder, prefer = Path(sys.argv[1]), sys.argv[2]
# Each process's fake timings favour a different variant: a process that measured for itself would say so.
seconds = {"eager": 1.0, "bf16": 0.5} if prefer == "bf16" else {"eager": 0.5, "bf16": 1.0}

def fake_timed(candidate, fn, device):
    with open(folder / "timed.log", "a") as log:
        log.write(prefer + "\\n")
    time.sleep(0.2)
    return seconds[candidate.name], fn()

autotune._timed = fake_timed
autotune._say = lambda line: None
G = build_tiny_generator(resolution=16, channel_max=32, seed=0)
G.set_reduced_precision("auto", num_res=2)
G.set_compile("off")
autotune.expect_calls(G, 100_000, "render")
ws = G.mapping(torch.randn(2, G.z_dim)).detach()
(folder / f"ready-{prefer}").touch()  # start the first synthesis together, as the ranks of a DDP job do
while len(list(folder.glob("ready-*"))) < 2:
    time.sleep(0.01)
with torch.no_grad():
    G.synthesis(ws, noise_mode="const")
print(G.synthesis.autotune_choices[False].candidate.name)
"""


def test_processes_starting_together_measure_once_and_agree(tmp_path):
    """Two processes (the ranks of a DDP job, or two jobs) meet "auto" at once: one measures, the other waits for
    the cached decision instead of measuring alongside it, so both run the same variant."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, SEMEDIT_AUTOTUNE="1", SEMEDIT_CPU_BF16="1",
               SEMEDIT_AUTOTUNE_CACHE=str(tmp_path / "autotune.json"))
    script = tmp_path / "race.py"
    script.write_text(_RACE_SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), prefer], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for prefer in ("bf16", "eager")]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in results]
    picks = {out.strip() for out, _ in results}
    measured_by = set((tmp_path / "timed.log").read_text().split())
    assert len(measured_by) == 1, "both processes measured"
    assert picks == measured_by  # the process that measured chose its own favourite; the other took it
