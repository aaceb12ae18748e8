"""make_dataloader: undecodable images are dropped and counted, never raised; shuffling repeats per seed."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vit_transfer.data import (
    ArrayImageDataset,
    DataConfig,
    UndecodableImageWarning,
    build_transform,
    load_image_datasets,
    make_dataloader,
)
from vit_transfer.models import Preprocessing
from vit_transfer.testing import write_image_folder

TRANSFORM = build_transform(Preprocessing(image_size=(16, 24), mean=(0.0,) * 3, std=(1.0,) * 3), train=False)


def corrupt_folder(root):
    """3 classes x 4 good train images, plus a truncated PNG and a garbage .jpg."""
    write_image_folder(root, num_classes=3, per_class=4, size=16)
    good = (root / "train" / "class_0" / "0.png").read_bytes()
    (root / "train" / "class_1" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "class_2" / "garbage.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    return root


def run_epoch(loader):
    rows, skipped, labels = 0, 0, []
    for batch in loader:
        assert batch["pixel_values"].shape[1:] == (3, 16, 24)
        assert batch["pixel_values"].shape[0] == batch["labels"].shape[0]
        rows += batch["labels"].shape[0]
        skipped += int(batch["num_skipped"])
        labels += batch["labels"].tolist()
    return rows, skipped, labels


def test_corrupt_images_are_skipped_counted_and_named(tmp_path):
    root = corrupt_folder(tmp_path / "imgs")
    ds = load_image_datasets(DataConfig(source=str(root), eval_split="none"))
    assert len(ds.train) == 14
    loader = make_dataloader(ds.train, TRANSFORM, batch_size=4, shuffle=True, seed=0)
    with pytest.warns(UndecodableImageWarning) as caught:
        rows, skipped, labels = run_epoch(loader)
    assert (rows, skipped) == (12, 2) and sorted(labels) == [0] * 4 + [1] * 4 + [2] * 4
    messages = " ".join(str(w.message) for w in caught)
    assert "truncated.png" in messages and "garbage.jpg" in messages
    assert ds.train[ds.train.refs.index(str(root / "train" / "class_2" / "garbage.jpg"))][0] is None


def test_a_batch_of_only_bad_images_has_zero_rows(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("x.png", "y.png"):
        (tmp_path / "a" / name).write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    ds = load_image_datasets(DataConfig(source=str(tmp_path), eval_split="none"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndecodableImageWarning)
        (batch,) = list(make_dataloader(ds.train, TRANSFORM, batch_size=8, shuffle=False))
    assert batch["pixel_values"].shape == (0, 3, 16, 24) and batch["labels"].shape == (0,)
    assert int(batch["num_skipped"]) == 2


def test_missing_file_in_csv_is_skipped(tmp_path):
    Image.new("RGB", (5, 5), (9, 9, 9)).save(tmp_path / "ok.png")
    (tmp_path / "t.csv").write_text("image,label\nok.png,a\ngone.png,b\n")
    with pytest.warns(UserWarning, match="1 of 2 image file"):
        ds = load_image_datasets(DataConfig(source=str(tmp_path / "t.csv"), eval_split="none"))
    with pytest.warns(UndecodableImageWarning, match="gone.png"):
        rows, skipped, labels = run_epoch(make_dataloader(ds.train, TRANSFORM, batch_size=2, shuffle=False))
    assert (rows, skipped, labels) == (1, 1, [0])


def numbered(n=20):
    """Images whose label is their index, so a batch's labels show the order."""
    return ArrayImageDataset(np.zeros((n, 4, 4), np.uint8), np.arange(n), name="numbered")


def epoch_orders(loader, epochs=2):
    return [run_epoch(loader)[2] for _ in range(epochs)]


def test_shuffle_order_repeats_for_a_seed_and_changes_per_epoch():
    first = epoch_orders(make_dataloader(numbered(), TRANSFORM, batch_size=6, shuffle=True, seed=5))
    second = epoch_orders(make_dataloader(numbered(), TRANSFORM, batch_size=6, shuffle=True, seed=5))
    other = epoch_orders(make_dataloader(numbered(), TRANSFORM, batch_size=6, shuffle=True, seed=6))
    assert first == second and first != other
    assert first[0] != first[1] and sorted(first[0]) == list(range(20))
    unshuffled = epoch_orders(make_dataloader(numbered(), TRANSFORM, batch_size=6, shuffle=False), epochs=1)
    assert unshuffled == [list(range(20))]


@pytest.fixture
def accelerator():
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    yield Accelerator(cpu=True)
    AcceleratorState._reset_state(reset_partial_state=True)  # leave no global state for other tests


def test_resume_mid_epoch_with_set_epoch_and_skip_first_batches(accelerator):
    from accelerate import skip_first_batches

    reference = epoch_orders(make_dataloader(numbered(), TRANSFORM, batch_size=4, shuffle=True, seed=1))
    prepared = accelerator.prepare(make_dataloader(numbered(), TRANSFORM, batch_size=4, shuffle=True, seed=1))
    assert epoch_orders(prepared) == reference  # Accelerate keeps the order
    fresh = accelerator.prepare(make_dataloader(numbered(), TRANSFORM, batch_size=4, shuffle=True, seed=1))
    fresh.set_epoch(1)  # resuming in epoch 1 after 2 of its 5 batches
    skipping = skip_first_batches(fresh, 2)
    skipping.set_epoch(1)  # as the loop does: accelerate < 1.15 does not carry the epoch into the new loader
    resumed = [b["labels"].tolist() for b in skipping]
    assert sum(resumed, []) == reference[1][8:]
    plain = make_dataloader(numbered(), TRANSFORM, batch_size=4, shuffle=True, seed=1)
    plain.sampler.set_epoch(1)  # the same without Accelerate's wrapper
    assert sum((b["labels"].tolist() for b in skip_first_batches(plain, 3)), []) == reference[1][12:]


def test_workers_persist_and_give_the_same_batches():
    with_workers = make_dataloader(numbered(), TRANSFORM, batch_size=5, shuffle=True, seed=2, num_workers=2)
    assert with_workers.persistent_workers and with_workers.pin_memory == torch.cuda.is_available()
    without = make_dataloader(numbered(), TRANSFORM, batch_size=5, shuffle=True, seed=2)
    assert epoch_orders(with_workers) == epoch_orders(without)


def test_corrupt_bytes_in_a_datasets_table_are_skipped(tmp_path):
    import io

    import datasets

    buf = io.BytesIO()
    Image.new("RGB", (6, 6), (1, 2, 3)).save(buf, format="PNG")
    cells = [{"bytes": buf.getvalue(), "path": None}, {"bytes": b"garbage", "path": None}] * 2
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    datasets.Dataset.from_dict({"image": cells, "label": [0, 1, 0, 1]}, features=features).save_to_disk(str(tmp_path / "d"))
    ds = load_image_datasets(DataConfig(source=str(tmp_path / "d"), eval_split="none"))
    assert ds.format == "hub" and ds.train[1][0] is None and ds.train[2][0].getpixel((0, 0)) == (1, 2, 3)
    loader = make_dataloader(ds.train, TRANSFORM, batch_size=3, shuffle=False)
    with pytest.warns(UndecodableImageWarning) as caught:
        rows, skipped, labels = run_epoch(loader)
    assert (rows, skipped, labels) == (2, 2, [0, 0])
    assert sorted(str(w.message).split(": ", 1)[1].split(" (")[0][-8:] for w in caught) == ["train[1]", "train[3]"]
    assert "7 bytes" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as again:  # once per item: a second epoch is quiet
        warnings.simplefilter("always")
        assert run_epoch(loader)[1] == 2
    assert not [w for w in again if issubclass(w.category, UndecodableImageWarning)]


# --- one sampler, one seeding rule (exact resume) -------------------------------------------------


def keys_of(loader, epoch):
    """The dataset indices of one epoch, batch by batch (labels are the indices in ``numbered``)."""
    loader.sampler.set_epoch(epoch)
    return [b["labels"].tolist() for b in loader]


def test_a_plain_shuffling_loader_gets_the_same_seeded_order_as_make_dataloader():
    from torch.utils.data import DataLoader

    from vit_transfer.data.loader import SkipUndecodable, TransformedItems
    from vit_transfer.training.data_order import reproducible_loader

    made = make_dataloader(numbered(), TRANSFORM, batch_size=4, shuffle=True, seed=3)
    assert reproducible_loader(made, seed=3) == (made, made.sampler)  # already replayable: kept as it is
    plain = DataLoader(TransformedItems(numbered(), TRANSFORM), batch_size=4, shuffle=True, collate_fn=SkipUndecodable())
    rebuilt, sampler = reproducible_loader(plain, seed=3)
    assert keys_of(rebuilt, 2) == keys_of(made, 2) and keys_of(made, 2) != keys_of(made, 3)
    reseeded, _ = reproducible_loader(made, seed=4)  # the loop's seed decides
    assert keys_of(reseeded, 2) == keys_of(make_dataloader(numbered(), TRANSFORM, 4, shuffle=True, seed=4), 2)


@pytest.mark.parametrize("kind", ["weighted", "subset", "replacement", "batch_sampler"])
def test_a_sampler_that_cannot_be_replayed_is_refused_by_name(kind):
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, SubsetRandomSampler
    from torch.utils.data import WeightedRandomSampler

    from vit_transfer.errors import ConfigError
    from vit_transfer.training.data_order import reproducible_loader

    items = numbered()
    loader, name = {
        "weighted": (DataLoader(items, batch_size=4, sampler=WeightedRandomSampler([1.0] * 20, 20)), "WeightedRandomSampler"),
        "subset": (DataLoader(items, batch_size=4, sampler=SubsetRandomSampler(range(10))), "SubsetRandomSampler"),
        "replacement": (DataLoader(items, batch_size=4, sampler=RandomSampler(items, replacement=True)), "RandomSampler"),
        "batch_sampler": (DataLoader(items, batch_sampler=BatchSampler(SequentialSampler(items), 4, False)), "BatchSampler"),
    }[kind]
    with pytest.raises(ConfigError, match=rf"{name} cannot be replayed.*balance=True.*data\.balance"):
        reproducible_loader(loader, seed=0)


def imbalanced(n=200):
    """90% class 0, 10% class 1; the label of item i is in ``labels``, its index in the pixels."""
    labels = (np.arange(n) % 10 == 9).astype(np.int64)
    pixels = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 4, 4)).copy()
    return ArrayImageDataset(pixels, labels, name="imbalanced")


def drawn(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [i for b in loader for i in b["labels"].tolist()]


def test_balanced_sampling_draws_classes_evenly_and_is_fixed_by_seed_and_epoch():
    data = imbalanced()
    loader = make_dataloader(data, TRANSFORM, batch_size=50, shuffle=True, seed=0, balance=True)
    sampler = loader.sampler
    draws = np.concatenate([data.labels[sampler.order(epoch)] for epoch in range(50)])  # 10,000 draws
    assert len(draws) == 50 * 200 and abs(draws.mean() - 0.5) < 0.02  # class 1: 10% of the items, half the draws
    sampler.set_epoch(7)
    keys = [i for _, i in sampler]
    assert len(set(keys)) < 150 and drawn(loader, 7) == data.labels[keys].tolist()  # with replacement
    again = make_dataloader(imbalanced(), TRANSFORM, batch_size=50, shuffle=True, seed=0, balance=True)
    assert drawn(again, 7) == drawn(loader, 7) and sampler.order(7) != sampler.order(8)
    assert make_dataloader(data, TRANSFORM, 50, True, seed=1, balance=True).sampler.order(7) != sampler.order(7)


def test_balanced_sampling_resumes_mid_epoch_on_the_same_items(accelerator):
    from accelerate import skip_first_batches

    from vit_transfer.training.data_order import reproducible_loader

    def pixel_ids(loader):
        return [int(v) for b in loader for v in (b["pixel_values"][:, 0, 0, 0] * 255).round().tolist()]

    straight, sampler = reproducible_loader(make_dataloader(imbalanced(), TRANSFORM, 20, True, seed=2, balance=True), 2)
    sampler.set_epoch(3)
    reference = pixel_ids(straight)
    resumed, sampler = reproducible_loader(make_dataloader(imbalanced(), TRANSFORM, 20, True, seed=2, balance=True), 2)
    prepared = accelerator.prepare(resumed)
    prepared.set_epoch(3)
    skipping = skip_first_batches(prepared, 4)
    skipping.set_epoch(3)  # as the loop does (accelerate < 1.15 starts the new loader at epoch 0)
    assert pixel_ids(skipping) == reference[80:]
    assert len(set(reference)) < len(reference)  # drawn with replacement


def test_balance_needs_labels():
    from vit_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="data.balance needs a dataset with a .labels array; list"):
        make_dataloader([(Image.new("RGB", (4, 4)), 0)], TRANSFORM, 1, shuffle=True, balance=True)


# --- only decode failures are skipped ---------------------------------------------------------------


def test_a_transform_bug_raises_naming_the_file(tmp_path):
    from vit_transfer.errors import DataError

    root = write_image_folder(tmp_path / "imgs", num_classes=2, per_class=2, size=8)
    ds = load_image_datasets(DataConfig(source=str(root), eval_split="none"))

    def buggy(image):
        return 1 / 0

    with pytest.raises(DataError, match=r"transform failed on .*class_0.0\.png: ZeroDivisionError") as caught:
        next(iter(make_dataloader(ds.train, buggy, batch_size=2, shuffle=False)))
    assert isinstance(caught.value.__cause__, ZeroDivisionError)


def test_a_bug_in_a_dataset_reader_is_not_taken_for_a_bad_image():
    class Broken(ArrayImageDataset):
        def load_image(self, index):
            raise KeyError("a bug, not a corrupt file")

    with pytest.raises(KeyError, match="a bug"):
        Broken(np.zeros((2, 4, 4), np.uint8), np.zeros(2)).try_load(0)


def test_truncated_jpeg_missing_file_and_decompression_bomb_are_skipped_and_counted(tmp_path, monkeypatch):
    import io

    from vit_transfer.data import FileImageDataset

    def encoded(fmt, size):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
        return buf.getvalue()

    (tmp_path / "ok.jpg").write_bytes(encoded("JPEG", 16))
    (tmp_path / "cut.jpg").write_bytes(encoded("JPEG", 16)[:-200])
    (tmp_path / "cut.png").write_bytes(encoded("PNG", 16)[:300])
    (tmp_path / "bomb.png").write_bytes(encoded("PNG", 64))
    names = ["ok.jpg", "cut.jpg", "cut.png", "gone.png", "bomb.png"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x 1000: a decompression bomb
    ds = FileImageDataset([str(tmp_path / n) for n in names], np.arange(5), name="files")
    with pytest.warns(UndecodableImageWarning) as caught:
        rows, skipped, labels = run_epoch(make_dataloader(ds, TRANSFORM, batch_size=5, shuffle=False))
    assert (rows, skipped, labels) == (1, 4, [0])
    reasons = {n: next(str(w.message) for w in caught if n in str(w.message)) for n in names[1:]}
    assert "truncated" in reasons["cut.jpg"] and "FileNotFoundError" in reasons["gone.png"]
    assert "DecompressionBombError" in reasons["bomb.png"]
