"""`semedit directions import` of Chunkmogrify's (18, 512) .npy directions, and their registry entries."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from semedit.directions.chunkmogrify import (
    CHUNKMOGRIFY_DIRECTIONS,
    import_chunkmogrify_npy,
    parse_layer_range,
)
from semedit.edits import DirectionFileError, load_direction, wplus_offset
from semedit.weights import get_entry, verify_file


def _npy(path, dtype=np.float64, shape=(18, 512), seed=0):
    arr = np.random.RandomState(seed).randn(*shape).astype(dtype)
    np.save(path, arr)
    return arr


def test_cli_import_and_edit_semantics(tmp_path, capsys):
    from semedit.cli import main

    arr = _npy(tmp_path / "smile_styleganv2.npy")
    out = tmp_path / "dirs"
    assert main(["directions", "import", str(tmp_path / "smile_styleganv2.npy"), "--name", "smile",
                 "--layers", "0-5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    d = load_direction(out / "smile.safetensors")
    assert d.space == "wplus" and d.layers == [0, 1, 2, 3, 4]
    norm = np.linalg.norm(arr[0:5])
    assert d.meta["source_norm"] == pytest.approx(norm) and str(round(norm, 3))[:4] in printed
    assert d.meta["source_layers"] == [0, 5] and d.meta["source_dtype"] == "float64"
    # A Chunkmogrify edit adds m * d to rows [0, 5) (synthesis.py lines 318-321); in semedit that is the
    # strength m * source_norm on the unit vector.
    G = SimpleNamespace(num_ws=18, w_dim=512, w_avg=torch.zeros(512))
    m = 0.75
    delta = wplus_offset(d, G.num_ws, G.w_dim) * (m * d.meta["source_norm"])
    expected = torch.zeros(18, 512)
    expected[0:5] = torch.from_numpy(arr[0:5]).float() * m
    torch.testing.assert_close(delta, expected, atol=1e-5, rtol=1e-5)


def test_import_float32_and_errors(tmp_path):
    _npy(tmp_path / "beard.npy", dtype=np.float32)  # Chunkmogrify's beard.npy is float32
    d = import_chunkmogrify_npy(tmp_path / "beard.npy", (6, 9), name="beard")
    assert d.layers == [6, 7, 8] and d.dim == 3 * 512 and d.meta["source_dtype"] == "float32"
    with pytest.raises(DirectionFileError, match="exceed its 18 W"):
        import_chunkmogrify_npy(tmp_path / "beard.npy", (10, 19))
    _npy(tmp_path / "flat.npy", shape=(512,))
    with pytest.raises(DirectionFileError, match=r"expected a float array \(num_ws, w_dim\)"):
        import_chunkmogrify_npy(tmp_path / "flat.npy", (0, 5))
    # A pickled object array is refused, not unpickled.
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DirectionFileError, match="pickled arrays are refused"):
        import_chunkmogrify_npy(tmp_path / "obj.npy", (0, 1))
    (tmp_path / "bad.npy").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(DirectionFileError):
        import_chunkmogrify_npy(tmp_path / "bad.npy", (0, 1))
    with pytest.raises(DirectionFileError, match="START-END"):
        parse_layer_range("5")
    with pytest.raises(DirectionFileError, match="START < END"):
        parse_layer_range("5-5")
    with pytest.raises(DirectionFileError, match="not found"):
        import_chunkmogrify_npy(tmp_path / "none.npy", (0, 5))


def test_cli_import_error_is_clean(tmp_path, capsys):
    from semedit.cli import main

    _npy(tmp_path / "age.npy")
    code = main(["directions", "import", str(tmp_path / "age.npy"), "--name", "age", "--layers", "0-20",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "exceed its 18 W+ rows" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_registry_entries_name_the_source_and_digest(tmp_path):
    digests = {"gender": "f1ac40508d9f5b7df499378f60766d93fe4e5f5461b63fff8ed14233e9b15a9e",
               "smile_styleganv2": "703a67fe070ce1f3c5ad18fc0f5711093756ba1a7048e2e09b2cd6c933032b6e",
               "age": "72095858d9f441494d46742639da43b17c282bbd48add6f5eca143073d725986",
               "beard": "638af0410490f88cf7e1d2198b1b9ebd8d4f19d915e791354fa15a913d212a6f",
               "yaw": "600bbadd2569a8382f444498bf995b3484b9151972601ddfacd80dfa4d5740cd"}
    for stem, digest in digests.items():
        e = get_entry(f"chunkmogrify-{stem}")
        assert e.filename == f"{stem}.npy" and e.sha256 == digest and "futscdav/Chunkmogrify" in e.source
        assert e.url.endswith(f"/directions/{stem}.npy")
    assert {v[0] for v in CHUNKMOGRIFY_DIRECTIONS.values()} == set(digests)
    # A different file under that name is reported as corrupt, not accepted.
    _npy(tmp_path / "age.npy")
    status, detail = verify_file("chunkmogrify-age", tmp_path / "age.npy")
    assert status == "corrupt" and "differs" in detail
