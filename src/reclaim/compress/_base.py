"""What every compression method shares: its params, the calibration spec, and the record.

A method module defines ``COMPRESSOR``, an object with ``Params`` (a frozen dataclass that
validates itself), ``needs_calibration`` and ``compress(model, calibration, params, seed) ->
dict`` that rewrites the model's block Linears in place (fake quantization / masks: dense
weights that reproduce the compressed function) and returns what it did per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.compress._quant import QuantSpec
from reclaim.compress._torch import torch


@dataclass(frozen=True)
class Calibration:
    """Calibration data: ``n_samples`` random windows of ``seqlen`` tokens from a WikiText-2
    split (never the test split the perplexity is measured on), drawn with the job's seed; or,
    with ``source: task``, ``n_samples`` training examples of the arm's task (a fine-tuned
    classifier's calibration sentences), truncated to ``seqlen`` tokens."""

    n_samples: int = 8
    seqlen: int = 512
    split: str = "valid"
    source: str = "wikitext"   # or "task": n_samples training examples of the arm's task, seqlen = max length

    def __post_init__(self) -> None:
        if self.source not in ("wikitext", "task"):
            raise ValueError(f"calibration.source: unknown {self.source!r} (wikitext, task)")
        if self.split == "test":
            raise ValueError("calibration.split: 'test' is the evaluation split; calibrate on 'valid'")
        if self.split not in ("valid", "train"):
            raise ValueError(f"calibration.split: unknown {self.split!r} (valid, train)")
        for key in ("n_samples", "seqlen"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"calibration.{key} must be an integer >= 1, got {v!r}")


@dataclass(frozen=True)
class QuantParams:
    """The shared quantizer's settings (reclaim.compress._quant.QuantSpec)."""

    bits: int = 4
    group_size: int | None = 128
    sym: bool = False
    axis: str = "group"

    def __post_init__(self) -> None:
        self.quant  # validates bits, axis and group size  # noqa: B018

    @property
    def quant(self) -> QuantSpec:
        return QuantSpec(bits=self.bits, group_size=self.group_size if self.axis == "group" else None,
                         sym=self.sym, axis=self.axis)


class Compressor:
    Params: type = QuantParams
    needs_calibration = True
    quantizes = True  # False: pruning / low-rank methods (no group-size check)
    # True: compensates the error of the compress step before it (low-rank methods); the job
    # loads the model that step compressed as well and calls
    # ``compress(model, calibration, params, seed, original=..., base=<that step's compress.json>)``
    needs_original = False

    def write_outputs(self, model_dir: Any, outputs: Any) -> None:
        """Extra files written into the model directory (e.g. a PEFT adapter), from what
        ``compress`` returned under the record's ``_outputs`` key (never part of compress.json)."""

    def make_params(self, raw: dict[str, Any] | None) -> Any:
        from reclaim.registry import make_params

        return make_params(self.Params, raw)

    def widths_ok(self, params: Any, widths: dict[str, int]) -> list[str]:
        """Problems with the subject's layer widths (name -> input width), before any job."""
        spec = getattr(params, "quant", None)
        if spec is None or spec.axis != "group":
            return []
        return [f"group_size {spec.group_size} does not divide the {name} width {w}"
                for name, w in widths.items() if w % spec.group_size]

    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: Any,
                 seed: int) -> dict[str, Any]:
        raise NotImplementedError


def weight_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """Relative squared weight error ||W - W_hat||^2 / ||W||^2."""
    return float(((w.double() - w_hat.double()) ** 2).sum() / (w.double() ** 2).sum().clamp(min=1e-30))


def output_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """Relative output error on the calibration inputs, from their second moment H = X^T X:
    tr(dW H dW^T) / tr(W H W^T)."""
    d = (w.double() - w_hat.double())
    num = (d @ h.double() * d).sum()
    den = (w.double() @ h.double() * w.double()).sum()
    return float(num / den.clamp(min=1e-30))
