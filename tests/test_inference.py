"""predict and evaluate: the model's own numbers through its own transform, with independent oracles."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vit_transfer.data import build_transform, decode_image
from vit_transfer.errors import DataError
from vit_transfer.inference import (classification_numbers, collect_images, evaluate, load_split, load_trained_model,
                                    model_label_ids, most_confused, predict)
from vit_transfer.inference.figures import confusion_figure
from vit_transfer.models import load_vit
from vit_transfer.testing import write_image_folder

NAMES = {0: "class_0", 1: "class_1", 2: "class_2"}


def fit_head(model, root: Path) -> None:
    """A least-squares head on the frozen features of ``root``'s train images: a model whose top classes differ
    from image to image (a random tiny head gives every colour the same argmax)."""
    dataset, _ = load_split(str(root), "train")
    transform = build_transform(model.preprocessing, train=False)
    with torch.no_grad():
        x = torch.stack([transform(dataset.load_image(i)) for i in range(len(dataset))])
        feats = model.forward_features(x, pooling=model.head_spec.pooling)
    targets = torch.nn.functional.one_hot(torch.as_tensor(dataset.labels), 3).float() * 6 - 3
    solution = torch.linalg.lstsq(torch.cat([feats, torch.ones(len(feats), 1)], 1), targets).solution
    params = model.head_parameters()
    weight = next(p for p in params if tuple(p.shape) == (3, feats.shape[1]))
    bias = next(p for p in params if tuple(p.shape) == (3,))
    weight.data.copy_(solution[:-1].T)
    bias.data.copy_(solution[-1])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Colour images at two sizes (the transform resizes), nested folders, a corrupt file and a non-image."""
    root = write_image_folder(tmp_path_factory.mktemp("colours"), per_class=6, size=40)
    (root / "test" / "class_1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "test" / "class_1" / "notes.txt").write_text("not an image: ignored in a folder")
    nested = root / "test" / "class_2" / "more"
    nested.mkdir()
    Image.fromarray(np.full((24, 28, 3), (10, 20, 220), np.uint8)).save(nested / "deep.jpg")
    return root


@pytest.fixture(scope="module", params=["hf", "timm"])
def model(request, hf_vit_dir, timm_vit_dir):
    m = load_vit(hf_vit_dir if request.param == "hf" else timm_vit_dir, id2label=NAMES)
    fit_head(m, request.getfixturevalue("folder"))
    return m.eval()


def oracle_probabilities(model, paths: list[str]) -> torch.Tensor:
    transform = build_transform(model.preprocessing, train=False)
    with torch.no_grad():
        return model(torch.stack([transform(decode_image(p)) for p in paths])).softmax(-1)


def test_predictions_are_the_models_softmax_through_its_eval_transform(model, folder):
    result = predict(model, folder / "test", top_k=3, batch_size=4, progress=False)
    paths = collect_images(folder / "test")
    assert [p.path for p in result.predictions] == paths  # one row per image, input order, recursive
    assert any(p.endswith("deep.jpg") for p in paths) and not any(p.endswith(".txt") for p in paths)
    broken = [p for p in result.predictions if p.error is not None]
    assert [p.path for p in broken] == [str(folder / "test" / "class_1" / "broken.png")]
    assert "broken.png" in broken[0].path and broken[0].error  # the reason, e.g. "SyntaxError: broken PNG file"

    good = [p for p in result.predictions if p.error is None]
    probs = oracle_probabilities(model, [p.path for p in good])
    for row, expected in zip(good, probs):
        order = torch.argsort(expected, descending=True)
        assert row.labels == [NAMES[int(i)] for i in order]
        np.testing.assert_allclose(row.probabilities, expected[order].numpy(), atol=1e-5)
        assert abs(sum(row.probabilities) - 1.0) < 1e-5  # all 3 classes: the probabilities sum to 1
    assert len({row.labels[0] for row in good}) > 1  # the head tells images apart: argmax is not vacuous


def test_predict_reads_tables_and_writes_csv_and_jsonl(tmp_path, hf_vit_dir, folder):
    import pandas as pd

    from vit_transfer.cli import main

    images = sorted((folder / "test" / "class_0").glob("*.png"))[:3]
    table = tmp_path / "images.csv"
    pd.DataFrame({"file": [str(p) for p in images] + ["missing.png"]}).to_csv(table, index=False)
    with pytest.warns(UserWarning, match="do not exist"):
        result = predict(str(hf_vit_dir), table, top_k=2, image_column="file", progress=False)
    assert [p.path for p in result.predictions][:3] == [str(p) for p in images]
    assert result.predictions[3].path == str(tmp_path / "missing.png") and "No such file" in result.predictions[3].error

    rows = list(csv.DictReader(result.write(tmp_path / "p.csv").open()))
    assert list(rows[0]) == ["path", "label_1", "probability_1", "label_2", "probability_2", "error"]
    assert rows[0]["label_1"] == result.predictions[0].labels[0]
    assert float(rows[0]["probability_1"]) == pytest.approx(result.predictions[0].probabilities[0], rel=1e-5)
    assert rows[3]["label_1"] == "" and rows[3]["error"]
    lines = [json.loads(line) for line in result.write(tmp_path / "p.jsonl").read_text().splitlines()]
    assert lines[0]["labels"] == result.predictions[0].labels and "error" in lines[3]

    out = tmp_path / "cli.jsonl"
    assert main(["predict", str(hf_vit_dir), str(images[0]), str(images[1]), "--top-k", "1", "--output", str(out)]) == 0
    cli_rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in cli_rows] == [p.labels[:1] for p in result.predictions[:2]]


def test_report_of_fixed_predictions_equals_independent_counts():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    top_ids = np.stack([rng.permutation(5) for _ in range(200)])  # the model knows a 5th class, never true
    top_ids[:120, 0] = y_true[:120]  # 60% right (and a few more by chance)
    names = {i: f"c{i}" for i in range(5)}
    log_probs = -rng.random(200)
    numbers = classification_numbers(y_true, top_ids, names, np.arange(5), log_probs)

    counts = np.zeros((5, 5), dtype=np.int64)
    np.add.at(counts, (y_true, top_ids[:, 0]), 1)
    assert numbers["confusion_matrix"] == counts.tolist()
    assert numbers["confusion_matrix"] == confusion_matrix(y_true, top_ids[:, 0], labels=range(5)).tolist()
    assert numbers["top1"] == pytest.approx(np.trace(counts) / 200)
    assert numbers["top5"] == pytest.approx(np.mean([t in row[:5] for t, row in zip(y_true, top_ids)]))
    assert numbers["loss"] == pytest.approx(-log_probs.mean())
    precision, recall, f1, support = precision_recall_fscore_support(y_true, top_ids[:, 0], labels=range(5),
                                                                     zero_division=0)
    for i in range(4):
        cls = numbers["per_class"][f"c{i}"]
        assert cls["precision"] == pytest.approx(counts[i, i] / counts[:, i].sum())
        assert cls["recall"] == pytest.approx(counts[i, i] / counts[i].sum())
        assert (cls["f1-score"], cls["support"]) == (pytest.approx(f1[i]), support[i])
    off = counts - np.diag(np.diag(counts))
    top = numbers["most_confused"][0]
    r, c = np.unravel_index(np.argmax(off), off.shape)
    assert (top["true"], top["predicted"], top["count"]) == (f"c{r}", f"c{c}", off.max())
    assert top["fraction"] == pytest.approx(off.max() / counts[r].sum())
    assert [p["count"] for p in numbers["most_confused"]] == sorted((p["count"] for p in numbers["most_confused"]),
                                                                     reverse=True)


def test_most_confused_breaks_ties_in_class_order():
    matrix = np.array([[5, 2, 0], [2, 5, 1], [0, 2, 5]])
    pairs = most_confused(matrix, ["a", "b", "c"], limit=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("a", "b", 2), ("b", "a", 2), ("c", "b", 2)]


def test_dataset_labels_are_matched_to_the_model_by_name():
    model_names = {0: "cat", 1: "dog", 2: "fox"}
    assert model_label_ids({0: "fox", 1: "cat"}, model_names).tolist() == [2, 0]
    with pytest.warns(UserWarning, match="matched by number"):
        assert model_label_ids({0: "a", 1: "b", 2: "c"}, model_names).tolist() == [0, 1, 2]
    with pytest.raises(DataError, match="not among the model's 3"):
        model_label_ids({0: "a", 1: "b"}, model_names)


def test_evaluate_writes_the_report_and_scores_renumbered_labels_by_name(tmp_path, model, folder):
    clean, id2label = load_split(str(folder), "test")
    dataset = clean.subset(np.arange(len(clean)))
    dataset.labels = clean.labels.copy()
    dataset.labels[::3] = (clean.labels[::3] + 1) % 3  # every third label wrong: mistakes to report
    result = evaluate(model, dataset, id2label, output_dir=tmp_path / "ev", batch_size=4, progress=False)
    n = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert n["skipped_images"] == 1 and n["skipped"][0]["path"].endswith("broken.png")
    assert n["num_examples"] == len(dataset) - 1 == sum(map(sum, n["confusion_matrix"]))
    probs = oracle_probabilities(model, [dataset.describe(i) for i in result.scores.positions.tolist()])
    truth = dataset.labels[result.scores.positions.numpy()]
    assert n["top1"] == pytest.approx(float((probs.argmax(-1).numpy() == truth).mean()))
    assert n["loss"] == pytest.approx(float(-probs[torch.arange(len(truth)), truth].log().mean()), rel=1e-5)
    wrong = n["confidently_wrong"]
    assert [w["probability"] for w in wrong] == sorted((w["probability"] for w in wrong), reverse=True)
    assert len(wrong) == int((probs.argmax(-1).numpy() != truth).sum()) > 0
    for name in ("confusion_matrix.png", "confidently_wrong.png", "predictions.csv"):
        assert (tmp_path / "ev" / name).stat().st_size > 0
    assert Image.open(tmp_path / "ev" / "confusion_matrix.png").size[0] > 200

    # the same images with the classes numbered backwards: the same numbers
    renumbered = dataset.subset(np.arange(len(dataset)))
    renumbered.labels = 2 - dataset.labels
    again = evaluate(model, renumbered, {2 - i: name for i, name in id2label.items()}, progress=False)
    assert again.numbers["confusion_matrix"] == n["confusion_matrix"] and again.numbers["top1"] == n["top1"]


def test_confusion_figure_labels_do_not_overlap_at_100_classes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    names = [f"a_rather_long_class_name_{i:03d}" if i % 9 == 0 else f"class_{i}" for i in range(100)]
    matrix = np.eye(100, dtype=int) * 5 + 1
    fig = confusion_figure(matrix, names)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    figure_box = fig.bbox
    for labels, vertical in ((ax.get_yticklabels(), True), (ax.get_xticklabels(), False)):
        boxes = [t.get_window_extent(renderer) for t in labels]
        assert len(boxes) == 100 and all(t.get_text() for t in labels)
        assert min(t.get_fontsize() for t in labels) >= 6
        spans = sorted((b.y0, b.y1) if vertical else (b.x0, b.x1) for b in boxes)
        assert all(low[1] <= high[0] + 0.5 for low, high in zip(spans, spans[1:]))  # neighbours do not overlap
        assert all(figure_box.x0 <= b.x0 and b.x1 <= figure_box.x1 and figure_box.y0 <= b.y0 for b in boxes)


def test_a_training_run_writes_the_test_report_and_logs_the_figure(tmp_path, hf_vit_dir, folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vit_transfer.training import load_train_recipe, train

    out = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(hf_vit_dir)},
        "data": {"source": str(folder), "num_workers": 0, "val_fraction": 0.25},
        "augment": {"crop": "resize", "hflip": False},
        "optim": {"name": "adamw", "lr": 0.01},
        "train": {"max_steps": 3, "batch_size": 6},
        "output": {"dir": str(out), "log_with": "tensorboard"},
    }))
    result = train(load_train_recipe(tmp_path / "r.yaml"))
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert report["top1"] == pytest.approx(result.metrics["test_top1"])
    assert report["loss"] == pytest.approx(result.metrics["test_loss"], rel=1e-5)
    assert report["num_examples"] == result.metrics["test_examples"]
    assert set(report["per_class"]) >= set(NAMES.values()) | {"macro avg", "weighted avg"}
    tags = set()
    for events in (out / "logs").rglob("events.out.tfevents.*"):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()["images"])
    assert "test/confusion_matrix" in tags

    images = collect_images(folder / "test" / "class_2")
    from_folder = predict(out, images, top_k=3, progress=False).predictions  # the run folder: its model/
    expected = oracle_probabilities(result.model.eval(), images)
    got = torch.tensor([[dict(zip(r.labels, r.probabilities))[NAMES[i]] for i in range(3)] for r in from_folder])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, timm_vit_dir, folder):
    from vit_transfer.training import load_train_recipe, train

    root = tmp_path_factory.mktemp("lora")
    (root / "r.yaml").write_text(yaml.safe_dump({
        "model": {"source": str(timm_vit_dir)},
        "data": {"source": str(folder), "num_workers": 0, "test_split": "none"},
        "augment": {"crop": "resize", "hflip": False},
        "method": "lora", "lora": {"r": 4, "merge": False},
        "optim": {"name": "adamw", "lr": 0.05},
        "train": {"max_steps": 3, "batch_size": 6},
        "output": {"dir": str(root / "run"), "log_with": "none"},
    }))
    result = train(load_train_recipe(root / "r.yaml"))
    return root / "run", result.model


def test_adapter_outputs_load_and_predict_like_the_trained_model(lora_run, folder):
    run, trained = lora_run
    assert not (run / "model").exists()
    images = collect_images(folder / "test" / "class_0")
    expected = oracle_probabilities(trained.eval(), images)
    for source in (run, run / "adapter"):
        model = load_trained_model(source)
        assert "lora_" not in "".join(n for n, _ in model.named_parameters())  # merged for inference
        rows = predict(model, images, top_k=3, progress=False).predictions
        got = torch.tensor([[dict(zip(r.labels, r.probabilities))[NAMES[i]] for i in range(3)] for r in rows])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        assert model.id2label == NAMES


def test_unusable_inputs_are_errors_naming_them(tmp_path):
    with pytest.raises(DataError, match="no such image, folder or table: .*nope"):
        collect_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no image files"):
        collect_images(tmp_path / "empty")
    (tmp_path / "t.csv").write_text("file\na.png\n")
    with pytest.raises(DataError, match="column 'image' not found.*available columns: file.*--image-column"):
        collect_images(tmp_path / "t.csv")
