"""The inference commands on a CPU with bf16 units, on every machine.

``--precision auto`` (the default of generate, transfer and hair-edit) takes bf16 where the CPU multiplies
bf16 natively and fp32 elsewhere. The suite pins the probe to "no bf16 units" (tests/conftest.py); here it
is forced to "bf16 units" (SEMEDIT_CPU_BF16=1), so that branch runs wherever the tests run. On a CPU without
the units bf16 is emulated: the same numbers, only slower, so the images stay small.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semedit.cli import main
from semedit.stylegan2 import build_tiny_generator, save_generator
from tests.hair.test_hair_edit_official import release  # noqa: F401 - the released-model fixture


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def _run_each_precision(argv_for, tmp_path, monkeypatch) -> dict[str, np.ndarray]:
    """Run the command with --precision auto on a bf16 CPU and on a CPU without, and forced bf16 / none."""
    out = {}
    for name, probe, precision in [("auto-bf16-cpu", "1", "auto"), ("auto-plain-cpu", "0", "auto"),
                                   ("bf16", "1", "bf16"), ("none", "1", "none")]:
        monkeypatch.setenv("SEMEDIT_CPU_BF16", probe)
        argv, image = argv_for(tmp_path / name)
        assert main([*argv, "--precision", precision]) == 0
        out[name] = _png(image)
    return out


def _check(images: dict[str, np.ndarray], max_levels: int) -> None:
    assert np.array_equal(images["auto-bf16-cpu"], images["bf16"])  # auto took bf16 on the bf16 CPU
    assert np.array_equal(images["auto-plain-cpu"], images["none"])  # and fp32 elsewhere
    diff = np.abs(images["bf16"] - images["none"])
    assert diff.max() > 0, "bf16 and fp32 gave identical images: the bf16 blocks did not run"
    assert diff.max() <= max_levels and diff.mean() < 2.0


def test_generate_auto_takes_bf16_on_a_bf16_cpu(tmp_path, monkeypatch):
    G = build_tiny_generator(resolution=32, channel_max=32, seed=5)
    ckpt = save_generator(G, tmp_path / "g.safetensors")
    images = _run_each_precision(
        lambda out: (["generate", "--generator", str(ckpt), "--seeds", "3", "--noise-mode", "const", "--out", str(out)],
                     out / "seed0003.png"), tmp_path, monkeypatch)
    _check(images, max_levels=16)


@pytest.mark.parametrize("command", ["transfer", "hair-edit"])
def test_hair_commands_auto_take_bf16_on_a_bf16_cpu(release, tmp_path, monkeypatch, command):  # noqa: F811
    _, ckpt, pkl, _, face = release
    argv = {
        "transfer": ["transfer", "--hair-model", str(ckpt), "--face", str(face), "--hair", str(face), "--regions", "ellipse"],
        "hair-edit": ["hair-edit", "--hair-model", str(ckpt), "--face", str(face), "--regions", "ellipse",
                      "--direction", "color", "--directions-file", str(pkl)],
    }[command]
    variants = _run_each_precision(lambda out: ([*argv, "--out", f"{out}.png"], f"{out}.png"), tmp_path, monkeypatch)
    _check(variants, max_levels=24)
