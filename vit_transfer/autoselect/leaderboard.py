"""``leaderboard.md`` and ``leaderboard.json``: every run ``auto`` made, best validation top-1 first.

Rows: the probe sweep's configurations, the augmentation duel's runs, each successive-halving run, the winner's full
run. Columns: method, train augmentation, rate (C for a probe), steps and epochs, validation top-1, seconds; the
returned model is marked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..runs.files import write_json

JSON_FILE = "leaderboard.json"
MARKDOWN_FILE = "leaderboard.md"


@dataclass
class Row:
    method: str  # "probe (cls+mean, last 2 blocks)" or an auto menu name (lp-ft, lora, ...)
    rate: float  # the learning rate, or the probe's C
    rate_name: str  # "lr" or "C"
    steps: "int | None"
    epochs: "float | None"
    val_top1: float
    seconds: float
    stage: str  # probe sweep | augmentation duel | halving rung N | final
    returned: bool = False
    augment: "str | None" = None  # a fine-tune's train augmentation (autoselect.augment.AUGMENTS); None: a probe


def write_leaderboard(rows: list[Row], output_dir: "str | Path", *, budget_seconds: float, elapsed: float,
                      summary: str) -> tuple[Path, Path]:
    """Both files in ``output_dir``; rows sorted by validation top-1 (stable: the order they ran breaks ties)."""
    output_dir = Path(output_dir)
    ordered = sorted(rows, key=lambda r: -r.val_top1)
    json_path = write_json(output_dir / JSON_FILE, {
        "summary": summary, "budget_seconds": budget_seconds, "elapsed_seconds": elapsed,
        "rows": [asdict(r) for r in ordered]})
    lines = [
        "# vit-transfer auto: leaderboard", "",
        summary, "",
        f"Budget {budget_seconds:.0f} s, used {elapsed:.0f} s. Every choice was made on the validation split.", "",
        "| | method | augment | rate | steps | epochs | val top-1 | seconds | stage |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ordered:
        steps = "-" if row.steps is None else str(row.steps)
        epochs = "-" if row.epochs is None else f"{row.epochs:.1f}"
        lines.append(f"| {'**returned**' if row.returned else ''} | {row.method} | {row.augment or '-'} | "
                     f"{row.rate_name} {row.rate:.3g} | "
                     f"{steps} | {epochs} | {row.val_top1:.4f} | {row.seconds:.1f} | {row.stage} |")
    md_path = output_dir / MARKDOWN_FILE
    md_path.write_text("\n".join(lines) + "\n")
    return md_path, json_path
