"""Chunked cross-entropy (the CPU form of Cut Cross-Entropy, Wijmans et al., arXiv 2411.09009)
as a loss override: the step is the default AdamW step, but the framing's loss is computed
from the hidden states and the LM head's weight over vocabulary chunks (reclaim.optim.
_linear_ce), so the B x T x V logits never exist.

Why a strategy rather than a loss registry of its own: a method already names its strategy
(``optimizer: {name, params}``), and that entry is validated, hashed into the job id and
lists its module among the job's code inputs; a second per-method registry would repeat all
of that for one loss. The cost is that it does not stack with another strategy (LISA plus
chunked CE would need a wrapper strategy). The strategy's only hook is ``loss_framing``:
the loop (reclaim.train) and the memory probe (reclaim.probe) optimise the loss of the
framing it returns, so the probe of a chunked-CE method measures the chunked loss.

Only framings with an LM head (``head_inputs``: ``causal_lm``) accept it. Its label-word loss
is a full-vocabulary cross-entropy over every position (targets -100 except the label word),
so the override removes the same N x V logits there; the ignored rows are dropped before the
chunk loop. Per-example losses (loss reweighting, ``weight_mode: loss``) come from the same
chunked per-token losses, so reweighted jobs never materialise the logits either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reclaim.optim._base import Strategy
from reclaim.optim._linear_ce import DEFAULT_CHUNK, check_chunk

if TYPE_CHECKING:
    import torch
    from torch import nn

    from reclaim.framings._base import Framing


@dataclass(frozen=True)
class Params:
    chunk: int = DEFAULT_CHUNK  # vocabulary entries per block: one N x chunk tile is the loss's residual

    def __post_init__(self) -> None:
        check_chunk(self.chunk)


class ChunkedLossFraming:
    """The framing with ``loss`` and ``example_losses`` replaced by the chunked loss over its
    ``head_inputs``; everything else (load, encode, collate, predict) is the framing's own."""

    def __init__(self, framing: Framing, chunk: int) -> None:
        self.framing = framing
        self.chunk = chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.framing, name)

    def _token_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from reclaim.optim._linear_ce import chunked_token_losses

        hidden, weight, targets = self.framing.head_inputs(model, batch)
        return chunked_token_losses(hidden.float(), weight.float(), targets, self.chunk), targets

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses, targets = self._token_losses(model, batch)
        return losses.sum() / (targets != -100).sum()

    def example_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        losses, targets = self._token_losses(model, batch)
        rows = batch[next(k for k in ("gold_input_ids", "input_ids") if k in batch)].shape[0]
        per_row = losses.view(rows, -1)
        counts = (targets.view(rows, -1) != -100).sum(dim=1)
        return per_row.sum(dim=1) / counts.clamp(min=1), counts


class ChunkedCE(Strategy):
    Params = Params

    def loss_framing(self, framing: Framing, params: Params) -> Framing:
        from reclaim.framings._base import Framing as Base

        if type(framing).head_inputs is Base.head_inputs:  # refused before the model is loaded
            raise ValueError(f"chunked_ce: framing {framing.name!r} exposes no LM head (head_inputs); "
                             "the chunked loss needs hidden states and a classifier weight (causal_lm)")
        return ChunkedLossFraming(framing, params.chunk)  # type: ignore[return-value]


STRATEGY = ChunkedCE()
