"""resample_pos_embed against the ecosystems' own resamplers, to float precision."""

import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from vit_transfer import Interpolation, resample_pos_embed


@pytest.mark.parametrize("prefix", [0, 1, 2])
@pytest.mark.parametrize("new_grid", [(6, 6), (3, 5), (7, 4)])
@pytest.mark.parametrize("mode,antialias", [("bicubic", True), ("bicubic", False), ("bilinear", True), ("nearest", False)])
def test_matches_timm_resample_abs_pos_embed(prefix, new_grid, mode, antialias):
    torch.manual_seed(0)
    table = torch.randn(1, prefix + 16, 8)
    ours = resample_pos_embed(table, new_grid, (4, 4), prefix, Interpolation(mode, False, antialias))
    theirs = resample_abs_pos_embed(table, list(new_grid), [4, 4], num_prefix_tokens=prefix,
                                    interpolation=mode, antialias=antialias, verbose=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_prefix_rows_untouched_and_shape():
    table = torch.randn(1, 2 + 4 * 6, 5)
    out = resample_pos_embed(table, (8, 3), (4, 6), num_prefix_tokens=2)
    assert out.shape == (1, 2 + 24, 5)
    assert torch.equal(out[:, :2], table[:, :2])


def test_presets_reproduce_their_codebases():
    torch.manual_seed(0)
    table = torch.randn(1, 1 + 9, 4)
    grid = table[:, 1:].reshape(1, 3, 3, 4).permute(0, 3, 1, 2)
    for preset, kwargs in {
        "big_vision": dict(mode="bilinear", align_corners=True),
        "torchvision": dict(mode="bicubic", align_corners=True),
        "transformers": dict(mode="bicubic", align_corners=False),
    }.items():
        expected = F.interpolate(grid, size=(5, 5), **kwargs).permute(0, 2, 3, 1).reshape(1, 25, 4)
        out = resample_pos_embed(table, (5, 5), interpolation=preset)
        torch.testing.assert_close(out[:, 1:], expected, rtol=0, atol=1e-6)


def test_same_grid_is_identity_and_dtype_kept():
    table = torch.randn(1, 17, 4, dtype=torch.bfloat16)
    assert resample_pos_embed(table, (4, 4)) is table
    assert resample_pos_embed(table, (5, 5)).dtype == torch.bfloat16


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="square grid"):
        resample_pos_embed(torch.randn(1, 1 + 12, 4), (4, 4))
    with pytest.raises(ValueError, match="unknown interpolation"):
        resample_pos_embed(torch.randn(1, 17, 4), (5, 5), interpolation="lanczos")
