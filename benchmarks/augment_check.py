"""One-seed check: does the fine-tune candidates' augmentation explain why fine-tunes trail the probe on digits?

digits at 10 images per class, seed 0 (``bench_transfer``'s folder), a full fine-tune at SGD 0.03 for 30 epochs
(``bench_transfer.fine_tune_recipe``, auto's candidate recipe) with three augmentations: random-resized crop
(scale 0.35-1) + horizontal flip (the benchmark's and auto's), the crop without the flip, and plain resizing
without the flip. Three runs, ~50 s each on the 2-core CPU. Results: benchmarks/results/augment_check.jsonl.

    python benchmarks/augment_check.py
"""

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_transfer as bt  # noqa: E402

VARIANTS = [("random-resized crop 0.35-1 + flip (bench_transfer, auto)", {}),
            ("random-resized crop 0.35-1, no flip", {"hflip": False}),
            ("resize, no flip", {"hflip": False, "crop": "resize"})]


def main() -> None:
    import torch

    from vit_transfer.training import train

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="augment_check_"))
    folder = bt.write_splits(root / "digits-10-seed0", bt.SETTINGS["digits-10"], 0)
    out = bt.RESULTS / "augment_check.jsonl"
    rows = []
    for name, change in VARIANTS:
        recipe = bt.fine_tune_recipe("full", 0.03, folder, root / "run", 0, 30, bt.BATCH_SIZE)
        recipe = dataclasses.replace(recipe, augment=dataclasses.replace(recipe.augment, **change))
        started = time.time()
        m = train(recipe, command="benchmarks/augment_check.py").metrics
        rows.append({"augment": name, "val_top1": m["eval_top1"], "test_top1": m["test_top1"],
                     "seconds": round(time.time() - started), "commit": bt.commit()})
        print(json.dumps(rows[-1]), flush=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
