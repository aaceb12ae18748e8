"""Transforms follow the model's Preprocessing; every image mode becomes RGB; MixUp/CutMix soft labels."""

import numpy as np
import pytest
import torch
from PIL import Image

from vit_transfer.data import AugmentConfig, build_transform, mixup_cutmix, to_rgb
from vit_transfer.errors import ConfigError
from vit_transfer.models import Preprocessing

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("train", [False, True])
def test_non_square_size_and_normalisation_of_a_constant_image(train):
    pre = Preprocessing(image_size=(24, 40), mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.5))
    out = build_transform(pre, train=train)(Image.new("RGB", (50, 30), (255, 0, 128)))
    assert out.shape == (3, 24, 40) and out.dtype == torch.float32
    expected = torch.tensor([(1 - 0.5) / 0.25, (0 - 0.5) / 0.5, (128 / 255 - 0.5) / 0.5])
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected, atol=1e-5, rtol=0)
    assert out.std(dim=(1, 2)).max() < 1e-5


@pytest.mark.parametrize(
    "mode, value, expected",
    [
        ("L", 100, (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent over white
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("CMYK", (0, 0, 0, 0), (255, 255, 255)),
        ("I;16", 65535, (255, 255, 255)),  # 16-bit scaled, not clipped
        ("I;16", 257 * 40, (40, 40, 40)),
        ("I;16", 200, (1, 1, 1)),  # a dark 16-bit image stays dark
        ("I", 257 * 40, (40, 40, 40)),
        ("F", 0.5, (128, 128, 128)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_every_mode_becomes_rgb(mode, value, expected):
    rgb = to_rgb(Image.new(mode, (4, 3), value))
    assert rgb.mode == "RGB" and rgb.getpixel((2, 1)) == expected


def test_palette_image_becomes_its_palette_colour():
    image = Image.new("P", (5, 5), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    out = build_transform(Preprocessing(image_size=(8, 8), **PLAIN), train=False)(image)
    assert out.shape == (3, 8, 8)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([200, 100, 50]) / 255.0)


def test_grey_image_gives_three_equal_channels():
    out = build_transform(Preprocessing(image_size=(16, 16), **PLAIN), train=True)(Image.new("L", (20, 20), 77))
    assert out.shape == (3, 16, 16)
    torch.testing.assert_close(out, torch.full((3, 16, 16), 77 / 255.0))


def bordered(size=100, border=25) -> Image.Image:
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[border:-border, border:-border] = 255
    return Image.fromarray(pixels)


def test_eval_resize_then_centre_crop_uses_crop_pct():
    # crop_pct 0.5: resize to 64, crop the centre 32 -> only the white centre remains
    tight = build_transform(Preprocessing(image_size=(32, 32), crop_pct=0.5, **PLAIN), train=False)(bordered())
    assert tight[:, 2:-2, 2:-2].min() > 0.99 and tight.min() > 0.85  # bicubic blurs only the outer pixels
    # crop_pct 1.0: resize to 32, the black 8-pixel border stays
    full = build_transform(Preprocessing(image_size=(32, 32), crop_pct=1.0, **PLAIN), train=False)(bordered())
    assert full[:, :6, :6].max() < 0.02 and full[:, 16, 16].min() > 0.98


def test_eval_centre_crop_keeps_the_middle_of_a_wide_image():
    pixels = np.zeros((40, 120, 3), np.uint8)
    pixels[:, :40, 0] = 255  # left third red, middle green, right blue
    pixels[:, 40:80, 1] = 255
    pixels[:, 80:, 2] = 255
    out = build_transform(Preprocessing(image_size=(20, 20), **PLAIN), train=False)(Image.fromarray(pixels))
    inner = out[:, :, 2:-2]  # bicubic bleeds the neighbouring thirds into the outer two columns only
    torch.testing.assert_close(inner.mean(dim=(1, 2)), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6, rtol=0)
    assert out[0, :, 0].mean() > 0.0 or out[2, :, -1].mean() > 0.0  # the crop edge touches red/blue


def test_train_resize_without_flip_is_deterministic_and_flip_mirrors():
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :4] = 255  # white left edge
    image = Image.fromarray(pixels)
    pre = Preprocessing(image_size=(16, 16), **PLAIN)
    plain = build_transform(pre, train=True, augment=AugmentConfig(crop="resize", hflip=False))(image)
    assert plain[:, :, :4].min() == 1.0 and plain[:, :, 4:].max() == 0.0
    flipping = build_transform(pre, train=True, augment=AugmentConfig(crop="resize", hflip=True))
    torch.manual_seed(0)
    outs = [flipping(image) for _ in range(20)]
    flipped = [bool(o[0, 0, -1] == 1.0) for o in outs]
    assert 0 < sum(flipped) < 20
    assert all(torch.equal(o, plain.flip(-1)) for o, f in zip(outs, flipped) if f)


def test_random_resized_crop_scale_and_randaugment_shapes():
    pre = Preprocessing(image_size=(24, 32), **PLAIN)
    augment = AugmentConfig(crop_scale=(0.5, 1.0), randaugment=True)
    transform = build_transform(pre, train=True, augment=augment)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (60, 60, 3), dtype=np.uint8))
    torch.manual_seed(0)
    outs = torch.stack([transform(image) for _ in range(4)])
    assert outs.shape == (4, 3, 24, 32)
    assert not torch.equal(outs[0], outs[1])  # random crops differ
    assert transform.image_size == (24, 32)


def test_random_crop_translates_without_rescaling_and_pads_black():
    pre = Preprocessing(image_size=8, **PLAIN)
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[3:5, 3:5] = 255  # a 2x2 white square in the middle
    image = Image.fromarray(pixels)
    transform = build_transform(pre, train=True, augment=AugmentConfig(crop="random_crop", crop_padding=2, hflip=False))
    torch.manual_seed(0)
    outs = [transform(image) for _ in range(40)]
    offsets = set()
    for out in outs:
        assert out.shape == (3, 8, 8)
        assert out.sum().item() == 3 * 4  # the square is moved whole, never rescaled or cut
        rows, cols = torch.nonzero(out[0], as_tuple=True)
        offsets.add((rows.min().item() - 3, cols.min().item() - 3))
    assert offsets <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert len(offsets) > 5  # shifted in both directions
    with pytest.raises(ConfigError, match="crop_padding"):
        build_transform(pre, train=True, augment=AugmentConfig(crop="random_crop", crop_padding=-1))


def test_mixup_gives_soft_labels_matching_the_mixed_pixels():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    batch = {"pixel_values": x, "labels": y, "num_skipped": torch.tensor(0)}
    out = mixup_cutmix(batch, 5, AugmentConfig(mixup_alpha=0.8))
    soft = out["labels"]
    assert soft.shape == (4, 5) and torch.allclose(soft.sum(1), torch.ones(4))
    lam = soft[0, 0]  # MixUp pairs each image with its neighbour: x[i] * lam + x[i-1] * (1 - lam)
    torch.testing.assert_close(out["pixel_values"], lam * x + (1 - lam) * x.roll(1, 0))
    assert out["num_skipped"] == 0


def test_cutmix_pastes_a_box_and_labels_by_area():
    torch.manual_seed(1)
    x = torch.stack([torch.zeros(3, 10, 10), torch.ones(3, 10, 10)])
    out = mixup_cutmix({"pixel_values": x, "labels": torch.tensor([0, 1])}, 2, AugmentConfig(cutmix_alpha=1.0))
    # image 0 (zeros) receives a box of image 1 (ones): the label weight of class 1 is the box's area
    area = out["pixel_values"][0, 0].mean()
    torch.testing.assert_close(out["labels"][0], torch.stack([1 - area, area]))


def test_mixup_off_or_empty_batch():
    batch = {"pixel_values": torch.zeros(2, 3, 4, 4), "labels": torch.tensor([0, 1])}
    assert mixup_cutmix(batch, 3, AugmentConfig()) is batch
    empty = {"pixel_values": torch.zeros(0, 3, 4, 4), "labels": torch.zeros(0, dtype=torch.long)}
    assert mixup_cutmix(empty, 3, AugmentConfig(mixup_alpha=1.0, cutmix_alpha=1.0))["labels"].shape == (0, 3)


def test_sixteen_bit_png_and_cmyk_jpeg_files_decode_to_rgb(tmp_path):
    from vit_transfer.data import decode_image

    Image.fromarray(np.full((4, 4), 257 * 100, np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (4, 4), (0, 255, 0, 0)).save(tmp_path / "print.jpg")
    assert to_rgb(decode_image(tmp_path / "deep.png")).getpixel((0, 0)) == (100, 100, 100)
    r, g, b = to_rgb(decode_image(tmp_path / "print.jpg")).getpixel((0, 0))
    assert r > 240 and g < 15 and b > 240  # magenta


def test_a_misspelt_interpolation_is_an_error_naming_it():
    pre = Preprocessing(image_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubc")
    with pytest.raises(ConfigError, match=r"'bicubc'.*bicubic, lanczos"):
        build_transform(pre, train=False)
