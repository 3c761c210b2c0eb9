"""Framing interface and the shared padding collate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from reclaim.data.glue import GlueTask
    from reclaim.models import ResolvedModel


@dataclass(frozen=True)
class ScoringOutputs:
    """What a framing that trains its own scoring networks returns (``train_for_scores``):
    softmax outputs (runs, n, k) and, when asked, per-example gradient norms (runs, n)."""

    probs: np.ndarray
    grad_norms: np.ndarray | None = None


class Framing:
    name: str = ""
    modality: str = "text"  # the kind of task it poses: a task's modality must match (config check)
    from_scratch: bool = False  # True: builds its network from a seeded init (models.<name>.from_scratch)

    def load(self, model: ResolvedModel, task: GlueTask) -> tuple[nn.Module, Any]:
        """Return (model, tokenizer)."""
        raise NotImplementedError

    def head_modules(self, model: nn.Module) -> list[str]:
        """Freshly initialised modules that adapters must keep fully trainable."""
        return []

    def encode(self, tokenizer: Any, task: GlueTask, rows: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
        raise NotImplementedError

    def collate(self, tokenizer: Any, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def example_losses(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(l_i, n_i) per example: its loss averaged over its n_i loss terms (target tokens, or 1
        for a classification head), such that sum_i n_i * l_i / sum_i n_i is ``loss``. Per-example
        loss reweighting (reclaim.reweight) needs them; ``loss`` itself stays as it is."""
        raise NotImplementedError

    def head_inputs(self, model: nn.Module, batch: dict[str, torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hidden states before the LM head (N, D), the head's weight (V, D), targets (N,),
        already shifted, -100 ignored) such that ``loss`` is the mean cross-entropy of
        hidden @ weight.T against targets: what a loss override (reclaim.optim.chunked_ce)
        computes the loss from without materialising the logits."""
        raise NotImplementedError(f"framing {self.name!r} exposes no LM head (head_inputs); a loss "
                                  "override such as chunked_ce needs one")

    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def features(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, dim) frozen embeddings of the inputs, labels unseen: what model-based
        selectors (EL2N, GraNd, prototypes; reclaim.select._frozen) score with. A framing
        (text or image) supports those selectors by defining it."""
        raise NotImplementedError(f"framing {self.name!r} defines no features(); model-based "
                                  "selectors need it")

    def train_for_scores(self, model: ResolvedModel, task: Any, rows: list[dict[str, Any]], params: Any,
                         desc: str, grad_norms: bool) -> ScoringOutputs | None:
        """Data Diet's scoring networks: ``params.runs`` networks trained ``params.epochs`` epochs
        on ``rows`` (reclaim.select._frozen.HeadParams), their outputs on ``rows``. None (the
        default): the framing's model is a pretrained encoder, and the selectors train a linear
        head on its frozen ``features`` instead (reclaim.select._frozen)."""
        return None


def require_classification(framing: Framing, task: GlueTask) -> None:
    """Label-word framings score one word per class; a regression task has none, so it is
    refused before any model is loaded rather than failing later with an index error."""
    if task.is_regression:
        raise ValueError(f"task {task.name!r} is a regression task; the {framing.name!r} framing "
                         f"scores label words and supports classification tasks only "
                         f"(use the encoder_cls framing)")


def pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    import torch

    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: mean cross-entropy over its target tokens and their count (targets == -100 are
    ignored), the per-example form of ``F.cross_entropy(..., ignore_index=-100)``."""
    import torch.nn.functional as F

    per_token = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")
    counts = (targets != -100).sum(dim=-1)
    return per_token.sum(dim=-1) / counts.clamp(min=1), counts


def lm_head_inputs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden state (B, T, D), output-embedding weight (V, D)) of a causal LM: the body's
    output, final norm included, and the plain Linear the logits come from (tied embeddings
    are fine). A PEFT model is unwrapped to the model it injected layers into. Refused when
    the logits are more than hidden @ W.T: a head with a bias or adapter layers, soft-capping."""
    from torch import nn as tnn

    net = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = net.get_output_embeddings()
    if type(head) is not tnn.Linear or head.bias is not None:
        raise ValueError(f"{type(net).__name__}: the LM head is {type(head).__name__}"
                         f"{' with a bias' if getattr(head, 'bias', None) is not None else ''}, not a plain "
                         "bias-free Linear; the loss cannot be computed from hidden @ W.T")
    if getattr(net.config, "final_logit_softcapping", None):
        raise ValueError(f"{type(net).__name__} soft-caps its logits; hidden @ W.T is not its logits")
    out = net.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state, head.weight


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum of log p(target token) per row; targets == -100 are ignored."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    mask = targets != -100
    gathered = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (gathered * mask).sum(dim=-1)
