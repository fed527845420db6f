"""The official latent_directions.pkl reader: numpy-only restricted unpickler, shapes and scale."""

from __future__ import annotations

import pickle
import pickletools

import numpy as np
import pytest
import torch

from semedit.hair.fg2021.official_directions import (
    OfficialDirectionsError,
    load_official_directions,
    official_direction_step,
)


def _directions(num_ws=4, w_dim=8):
    rng = np.random.RandomState(0)
    return {"color": rng.randn(num_ws, w_dim), "structure": rng.randn(num_ws, w_dim)}


def _globals(data: bytes) -> set[str]:
    found = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
    return found


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_a_dict_of_arrays_under_the_installed_numpy_names(tmp_path, protocol):
    path = tmp_path / "latent_directions.pkl"
    want = _directions()
    path.write_bytes(pickle.dumps(want, protocol=protocol))
    got = load_official_directions(path)
    assert sorted(got) == ["color", "structure"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_reads_numpy1_module_names(tmp_path):
    # The official file was written under Python 3.6 / numpy 1 (protocol 3, GLOBAL opcodes naming
    # numpy.core.multiarray); write the same names whatever numpy is installed.
    data = pickle.dumps(_directions(), protocol=3)
    if b"numpy._core" in data:
        data = data.replace(b"numpy._core", b"numpy.core")
    assert "numpy.core.multiarray._reconstruct" in _globals(data)
    path = tmp_path / "latent_directions.pkl"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_official_directions(path)["color"], _directions()["color"])
    # and the numpy 2 spelling
    path.write_bytes(data.replace(b"numpy.core", b"numpy._core"))
    assert "numpy._core.multiarray._reconstruct" in _globals(path.read_bytes())
    np.testing.assert_array_equal(load_official_directions(path)["structure"], _directions()["structure"])


class _Planted:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_planted_code_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "executed.txt"
    path = tmp_path / "latent_directions.pkl"
    # A valid array first, then the payload: the refusal must still come before the call.
    path.write_bytes(pickle.dumps({"color": np.ones(3), "structure": _Planted(marker)}, protocol=3))
    with pytest.raises(OfficialDirectionsError, match="builtins.exec"):
        load_official_directions(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # sanity: the planted file does execute under plain pickle
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("obj,match", [
    ([np.ones(3)], "expected a dict"),
    ({"color": [1.0, 2.0]}, "not a numpy array"),
    ({"color": np.array(["a", "b"])}, "dtype"),
    ({"color": np.array([1.0, np.nan])}, "non-finite"),
])
def test_refuses_other_contents(tmp_path, obj, match):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=3))
    with pytest.raises(OfficialDirectionsError, match=match):
        load_official_directions(path)


def test_refuses_torch_files_and_garbage(tmp_path):
    path = tmp_path / "d.pkl"
    torch.save({"color": torch.ones(3)}, path)
    with pytest.raises(OfficialDirectionsError):
        load_official_directions(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(OfficialDirectionsError, match="not a readable pickle"):
        load_official_directions(path)


def test_step_broadcasts_like_the_official_tool_and_keeps_the_scale():
    num_ws, w_dim = 4, 8
    e = torch.randn(1, num_ws, w_dim)
    for stored in (np.arange(w_dim, dtype=np.float64), np.random.randn(num_ws, w_dim),
                   np.random.randn(1, num_ws, w_dim)):
        step = official_direction_step({"color": stored}, "color", num_ws, w_dim)
        # hairstyle_transfer_tool.py line 219: e = e1 + c * latent_dir
        official = e + 12.5 * torch.from_numpy(stored).float()
        torch.testing.assert_close(e + 12.5 * step, official.reshape(1, num_ws, w_dim))
    flat = np.random.randn(num_ws * w_dim)
    np.testing.assert_allclose(official_direction_step({"structure": flat}, "structure", num_ws, w_dim).numpy(),
                               flat.reshape(num_ws, w_dim), rtol=1e-6)
    with pytest.raises(OfficialDirectionsError, match="does not fit"):
        official_direction_step({"color": np.ones(5)}, "color", num_ws, w_dim)
    with pytest.raises(OfficialDirectionsError, match="no direction 'hue'"):
        official_direction_step({"color": np.ones(w_dim)}, "hue", num_ws, w_dim)
