import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from semedit.cli import main
from semedit.edits import Direction, EditError, save_direction
from semedit.inversion.composite import masks_from_logits
from semedit.inversion.edit import apply_direction, edit_codes_images, render_composite
from semedit.inversion.latents import codes_to_styles, init_codes, render_chunks
from semedit.training import RUN_DIR_ENV


def _codes(G, space, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [c.detach() + 0.5 * torch.randn(c.shape, generator=gen) for c in init_codes(G, space, 1, 3)]


def _masks(G, seed=0):
    return masks_from_logits(torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(seed)), G.img_resolution)


def _w_direction(G, layers=None):
    return Direction.from_vector(torch.randn(G.w_dim, generator=torch.Generator().manual_seed(9)), "w", layers)


def test_edit_of_chosen_chunks_changes_only_them(G):
    codes, masks = _codes(G, "wplus"), _masks(G)
    new_space, edited = apply_direction(G, "wplus", codes, _w_direction(G), 3.0, chunks=[1])
    assert new_space == "wplus"
    assert torch.equal(edited[0][:, [0, 2]], codes[0][:, [0, 2]])
    assert not torch.allclose(edited[0][:, 1], codes[0][:, 1])
    # The composite changes by exactly mask_1 * (G(edited z_1) - G(z_1)): the other chunks' pixels do not move.
    before = render_chunks(G, "wplus", codes)
    after = render_chunks(G, "wplus", edited)
    expected = render_composite(G, "wplus", codes, masks) + masks[:, 1] * (after[:, 1] - before[:, 1])
    torch.testing.assert_close(render_composite(G, "wplus", edited, masks), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]], rtol=0, atol=0)


def test_edit_touches_only_the_direction_layers(G):
    codes = _codes(G, "w")
    direction = _w_direction(G, layers=[1, 2])
    _, edited = apply_direction(G, "w", codes, direction, 2.0)
    ws = codes[0].unsqueeze(2).expand(-1, -1, G.num_ws, -1)
    delta = edited[0] - ws
    untouched = [i for i in range(G.num_ws) if i not in (1, 2)]
    assert torch.equal(delta[:, :, untouched], torch.zeros_like(delta[:, :, untouched]))
    torch.testing.assert_close(delta[:, :, 1], 2.0 * direction.vector.expand(1, 3, -1))
    # Narrowing to layer 2 only.
    _, narrow = apply_direction(G, "w", codes, direction, 2.0, layers=[2])
    assert torch.equal(narrow[0][:, :, 1], ws[:, :, 1])
    with pytest.raises(EditError, match="not among the direction's layers"):
        apply_direction(G, "w", codes, direction, 2.0, layers=[4])


def test_w_direction_on_styles_equals_editing_in_w(G):
    codes = _codes(G, "wplus")
    direction = _w_direction(G)
    _, in_w = apply_direction(G, "wplus", codes, direction, 1.5)
    styles = codes_to_styles(G, "wplus", codes)
    _, in_s = apply_direction(G, "s", styles, direction, 1.5)
    for a, b in zip(codes_to_styles(G, "wplus", in_w), in_s, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_s_direction_changes_only_its_channels(G):
    dims = G.synthesis.style_dims
    vec = torch.zeros(sum(dims))
    vec[dims[0] + 3] = 1.0  # one channel of style layer 1
    direction = Direction(vec, "s", None)
    codes = _codes(G, "s")
    _, edited = apply_direction(G, "s", codes, direction, 5.0, chunks=[0, 2])
    for layer, (a, b) in enumerate(zip(edited, codes, strict=True)):
        diff = a - b
        if layer == 1:
            assert torch.equal(diff[:, [0, 2], 3], torch.full((1, 2), 5.0))
            diff[:, :, 3] = 0
        assert torch.equal(diff, torch.zeros_like(diff))


def test_zero_strength_reproduces_the_reconstruction_and_z_is_rejected(G):
    codes, masks = _codes(G, "wplus"), _masks(G)
    images = edit_codes_images(G, "wplus", codes, masks, _w_direction(G), [0.0, 1.0])
    torch.testing.assert_close(images[0], render_composite(G, "wplus", codes, masks))
    assert not torch.allclose(images[1], images[0])
    z_dir = Direction.from_vector(torch.ones(G.z_dim), "z")
    with pytest.raises(EditError, match="Z-space"):
        apply_direction(G, "wplus", codes, z_dir, 1.0)
    with pytest.raises(EditError, match="out of range"):
        apply_direction(G, "wplus", codes, _w_direction(G), 1.0, chunks=[5])


def test_edit_real_pastes_each_edit_back_into_the_photo(tmp_path, capsys, monkeypatch):
    """`semedit invert` records the photo and crop of each image; `edit-real --paste-back` puts the edited crop
    back into that photo at its own size, the rest of the photo untouched."""
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    photo = np.ascontiguousarray(np.pad(skimage.data.astronaut(), ((0, 0), (64, 64), (0, 0)), mode="edge"))
    Image.fromarray(photo).save(tmp_path / "wide.png")  # 512 x 640: the crop is not the whole photo
    assert main(["invert", str(tmp_path / "wide.png"), "invert.steps=2", "logger.wandb=false",
                 "trainer.enable_progress_bar=false", f"run.output_dir={tmp_path}", "run.name=inv"]) == 0
    direction = save_direction(tmp_path / "d.safetensors", Direction.from_vector(torch.randn(64), "w"))
    assert main(["edit-real", "--inversion", str(tmp_path / "inv"), "--direction", str(direction), "--strengths",
                 "0", "4", "--paste-back", "--out", str(tmp_path / "edits")]) == 0
    assert "only the aligned crop is edited" in capsys.readouterr().out
    edited = np.asarray(Image.open(tmp_path / "edits" / "wide" / "strength+4_photo.png"))
    assert edited.shape == photo.shape
    changed = np.abs(edited.astype(int) - photo).max(axis=2) > 0
    assert 0 < changed.mean() < 0.9 and not changed[:, :8].any() and not changed[:, -8:].any()
