"""Full fine-tuning: every parameter trained with AdamW (the paper's upper baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.adapters._base import Adapter


@dataclass(frozen=True)
class FullFTParams:
    save_model: bool = False  # full checkpoints are large; off unless asked for


class FullFineTuning(Adapter):
    Params = FullFTParams

    def save(self, model: Any, params: Any, out_dir: Path) -> list[str]:
        if not params.save_model:
            return []
        model.save_pretrained(str(out_dir), safe_serialization=True)
        return sorted(p.name for p in out_dir.iterdir())


ADAPTER = FullFineTuning()
