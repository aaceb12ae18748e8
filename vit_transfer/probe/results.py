"""What a probe run measured, as ``probe_results.json`` and as a table for the terminal."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .fewshot import FewShotScore


@dataclass
class LinearProbeResult:
    C: float
    val_top1: float  # on the split that chose C
    selection_split: str  # "eval", or "train (10% held out)" when eval is the report split
    report_split: str  # "test", or "eval" without a test split
    top1: float
    top5: float
    top5_k: int  # min(5, num_labels)
    refit_on: list[str] = field(default_factory=list)
    sweep: list[dict] = field(default_factory=list)  # {"C", "val_top1", "val_loss"} per value tried


@dataclass
class ProbeResult:
    model: str
    pooling: str
    last_n: int
    image_size: list[int]
    precision: str
    feature_dim: int
    num_labels: int
    samples: dict[str, int]  # rows per split after skipping undecodable images
    skipped: dict[str, int]
    cache: dict[str, str]  # split -> "hit" | "miss" | "off"
    seconds: dict[str, float]  # features, linear, fewshot, total
    linear: LinearProbeResult | None = None
    fewshot: list[FewShotScore] = field(default_factory=list)
    fewshot_split: str | None = None
    fewshot_l2: float | None = None
    notes: list[str] = field(default_factory=list)
    model_dir: str | None = None  # OUTPUT_DIR/model when the probe was saved as a classifier
    dataset: str | None = None

    @property
    def cache_hits(self) -> int:
        return sum(v == "hit" for v in self.cache.values())

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fewshot"] = {str(s.shots): {"mean": s.mean, "std": s.std, "runs": s.runs} for s in self.fewshot}
        return out

    def save(self, path: "str | Path") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def table(self) -> str:
        """A short human summary: the linear probe, each few-shot k, and where the time went."""
        lines = [
            f"{self.model}  {self.image_size[0]}x{self.image_size[1]}  {self.pooling} features"
            f"{f' of the last {self.last_n} blocks' if self.last_n > 1 else ''}  dim {self.feature_dim}  "
            f"{self.num_labels} classes  ({self.precision})",
        ]
        lin = self.linear
        if lin is not None:
            lines += [
                "",
                f"Linear probe (L2 logistic regression, C={lin.C:.3g} chosen on {lin.selection_split}: "
                f"{100 * lin.val_top1:.2f}%)",
                f"  {'split':<8}{'n':>8}{'top-1':>10}{f'top-{lin.top5_k}':>10}",
                f"  {lin.report_split:<8}{self.samples.get(lin.report_split, 0):>8}"
                f"{100 * lin.top1:>9.2f}%{100 * lin.top5:>9.2f}%",
            ]
        if self.fewshot:
            lines += ["", f"Few-shot (ridge regression, l2={self.fewshot_l2:g}) on {self.fewshot_split}",
                      f"  {'shots':<8}{'top-1':>18}{'draws':>8}"]
            for s in self.fewshot:
                lines.append(f"  {s.shots:<8}{f'{100 * s.mean:.2f} ± {100 * s.std:.2f}%':>18}{len(s.runs):>8}")
        feats = ", ".join(f"{k} {self.samples[k]} ({self.cache[k]})" for k in self.samples)
        lines += ["", f"Features: {feats}; {self.seconds.get('features', 0):.1f} s features, "
                      f"{self.seconds.get('total', 0):.1f} s total"]
        lines += [f"Note: {n}" for n in self.notes]
        if self.model_dir:
            lines.append(f"Classifier saved to {self.model_dir} (load_vit() it)")
        return "\n".join(lines)
