"""Ladder Side-Tuning (LST; Sung, Cho, Bansal, NeurIPS 2022, arXiv 2206.06522, Sec. 3) for a
BERT-style encoder classifier.

The pretrained backbone is frozen and run under ``torch.no_grad()``: autograd records none of
its operations, so none of its activations are kept for a backward pass, which is where LST's
memory saving comes from (backprop through the backbone is what LoRA and adapters still pay).
A small side network of width d/r (reduction factor r) learns the task from the backbone's
hidden states, fed to it through "ladder" connections (Sec. 3.1):

  h_0 = Down_0(a_0)                                   a_0: the embedding output
  for each retained backbone layer i (all by default):
      h <- mu_i * h + (1 - mu_i) * Down_i(a_i)        a_i: backbone layer i's output (detached)
      h <- SideBlock_i(h)
  mu_i = sigmoid(alpha_i / T), T = 0.1, alpha_i learnable (0 at init, so mu_i = 0.5)

Down_i is a linear map d -> d/r. Side blocks are post-LN transformer layers of width d/r with
the backbone's heads (head dim / r) and FFN width / r. Layer dropping (Sec. 3.2, "we drop
layers of the side network") keeps the side blocks, and ladders, of the listed layers only.
The side network's hidden dropout defaults to BERT's 0.1; its attention-probability dropout
to 0: with it, scaled_dot_product_attention takes the math path, which keeps every
(batch, heads, T, T) probability tensor for backward (measured at MiniLM's shape, batch
32 x 64: +108 MiB, 159 -> 267 MiB, against full fine-tuning's 713 MiB).

Initialisation (Sec. 3.2). The paper initialises each side block from its backbone layer by
structured pruning with Fisher information; here the pruning scores are the L2 norms of the
weights (a documented simplification: no gradient pass needed). One set of d/r residual dims
is kept for the whole side network (the stream is shared across layers), per layer the side
heads with the largest norms and, within each, the head dims with the largest norms (the
same dims for query, key, value and the output projection's columns), and the FFN units with
the largest norms. ``init: random`` keeps the fresh random init (the ablation).

Prediction. The side output is mean-pooled over real tokens and up-projected to width d by a
dense + tanh layer (the role BERT's pooler plays), then fed to the classifier head the framing
created, which stays trainable; a head that takes the whole sequence (RoBERTa's) gets the
up-projected sequence. The wrapped model returns ``.loss`` (with labels) and ``.logits`` like
transformers' ``SequenceClassifierOutput``, so the framing's loss and predict work unchanged.

What is trained: the side network (downsamplers, gates, side blocks, up-projection) and the
head; the optimizer holds exactly these, so the trainer's checkpoint (which saves what the
optimizer holds, by name) resumes exactly. ``save`` writes them (``lst_side.safetensors``)
and ``adapter_config.json`` (params, widths, head name): ``load`` rebuilds the model from the
backbone checkpoint plus these two files.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reclaim.adapters._base import Adapter, AdapterContext, check_positive

if TYPE_CHECKING:
    import torch
    from torch import nn

INITS = ("prune", "random")
WEIGHTS_FILE = "lst_side.safetensors"
CONFIG_FILE = "adapter_config.json"


@dataclass(frozen=True)
class LstParams:
    reduction_factor: int = 8            # r: side width d / r
    gate_temperature: float = 0.1        # T in mu_i = sigmoid(alpha_i / T)
    init: str = "prune"                  # "prune": L2-norm structured pruning of the backbone; "random"
    layers: tuple[int, ...] | None = None  # backbone layers (0-based) that get a side block; None: all
    side_heads: int | None = None        # None: the backbone's head count (each head d_head / r wide)
    dropout: float = 0.1                 # side network hidden dropout (the backbone keeps its own)
    attention_dropout: float = 0.0       # side attention-probability dropout (see the module docstring)

    def __post_init__(self) -> None:
        r = self.reduction_factor
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise ValueError(f"reduction_factor must be an integer >= 1, got {r!r}")
        check_positive("gate_temperature", self.gate_temperature)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.layers is not None:
            layers = tuple(self.layers)
            if not layers or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in layers):
                raise ValueError(f"layers must be a non-empty list of layer indices >= 0, got {self.layers!r}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"layers must not repeat a layer, got {list(layers)}")
            object.__setattr__(self, "layers", tuple(sorted(layers)))
        if self.side_heads is not None and (not isinstance(self.side_heads, int) or self.side_heads < 1):
            raise ValueError(f"side_heads must be an integer >= 1, got {self.side_heads!r}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class SideShape:
    """Widths of the backbone and of its side network, checked to fit together."""

    hidden: int
    heads: int
    head_dim: int
    intermediate: int
    n_layers: int
    side_width: int
    side_heads: int
    side_head_dim: int
    side_intermediate: int
    layers: tuple[int, ...]
    act: str
    eps: float


def side_shape(config: Any, params: LstParams) -> SideShape:
    """The side network's widths for a backbone ``config``; a ValueError names the width
    (and layer) that the reduction factor or head count does not fit."""
    d, r = int(config.hidden_size), params.reduction_factor
    heads, ff, n = int(config.num_attention_heads), int(config.intermediate_size), int(config.num_hidden_layers)
    if d % r:
        raise ValueError(f"LST reduction_factor {r} does not divide the hidden size {d} "
                         f"(side width would be {d / r:g}); pick a divisor of {d}")
    if ff % r:
        raise ValueError(f"LST reduction_factor {r} does not divide the FFN width {ff} (intermediate_size)")
    layers = params.layers if params.layers is not None else tuple(range(n))
    bad = [i for i in layers if i >= n]
    if bad:
        raise ValueError(f"LST layers: layer {bad[0]} does not exist (the backbone has {n} layers, 0..{n - 1})")
    ds = d // r
    sh = params.side_heads or heads
    if sh > heads or ds % sh:
        raise ValueError(f"LST side width {ds} (hidden {d} / reduction_factor {r}) does not split into "
                         f"{sh} side heads" + (f" (the backbone has {heads})" if sh > heads else ""))
    hd = d // heads
    if params.init == "prune" and ds // sh > hd:
        raise ValueError(f"LST init prune: side head dim {ds // sh} (side width {ds} / {sh} heads) exceeds the "
                         f"backbone's head dim {hd}; use more side_heads or init random")
    return SideShape(hidden=d, heads=heads, head_dim=hd, intermediate=ff, n_layers=n, side_width=ds,
                     side_heads=sh, side_head_dim=ds // sh, side_intermediate=ff // r, layers=tuple(layers),
                     act=str(getattr(config, "hidden_act", "gelu")),
                     eps=float(getattr(config, "layer_norm_eps", 1e-12)))


def _modules() -> tuple[Any, Any]:
    """The side network's module classes, defined on first use (torch stays unimported at
    config-validation time)."""
    global _SIDE
    if _SIDE is None:
        _SIDE = _define()
    return _SIDE


_SIDE: tuple[Any, Any] | None = None


def _define() -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers.activations import get_activation

    class SideBlock(nn.Module):
        """A post-LN transformer layer (BERT's layout) of the side width."""

        def __init__(self, s: SideShape, dropout: float, attention_dropout: float) -> None:
            super().__init__()
            self.attention_dropout = attention_dropout
            w, f = s.side_width, s.side_intermediate
            self.heads, self.head_dim = s.side_heads, s.side_head_dim
            self.query, self.key, self.value, self.attn_out = (nn.Linear(w, w) for _ in range(4))
            self.ln_attn = nn.LayerNorm(w, eps=s.eps)
            self.ffn_in, self.ffn_out = nn.Linear(w, f), nn.Linear(f, w)
            self.ln_ffn = nn.LayerNorm(w, eps=s.eps)
            self.act = get_activation(s.act)
            self.drop = nn.Dropout(dropout)

        def forward(self, h: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
            b, t, w = h.shape

            def split(x: torch.Tensor) -> torch.Tensor:
                return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

            a = F.scaled_dot_product_attention(split(self.query(h)), split(self.key(h)), split(self.value(h)),
                                               attn_mask=key_mask,
                                               dropout_p=self.attention_dropout if self.training else 0.0)
            h = self.ln_attn(h + self.drop(self.attn_out(a.transpose(1, 2).reshape(b, t, w))))
            return self.ln_ffn(h + self.drop(self.ffn_out(self.act(self.ffn_in(h)))))

    class LadderSideNetwork(nn.Module):
        """Downsamplers, gates and side blocks; ``forward`` takes the backbone's hidden states."""

        def __init__(self, s: SideShape, params: LstParams) -> None:
            super().__init__()
            self.shape, self.temperature = s, params.gate_temperature
            # Down_0 for the embedding output, then one per retained layer
            self.down = nn.ModuleList(nn.Linear(s.hidden, s.side_width) for _ in range(len(s.layers) + 1))
            self.gate_alpha = nn.Parameter(torch.zeros(len(s.layers)))
            self.blocks = nn.ModuleList(SideBlock(s, params.dropout, params.attention_dropout) for _ in s.layers)
            self.up = nn.Linear(s.side_width, s.hidden)
            self.drop = nn.Dropout(params.dropout)

        def gates(self) -> torch.Tensor:
            """mu_i = sigmoid(alpha_i / T), in (0, 1)."""
            return torch.sigmoid(self.gate_alpha / self.temperature)

        def forward(self, hidden_states: tuple[torch.Tensor, ...], attention_mask: torch.Tensor) -> torch.Tensor:
            key_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = attend
            mu = self.gates()
            h = self.down[0](hidden_states[0])
            for j, (layer, block) in enumerate(zip(self.shape.layers, self.blocks, strict=True)):
                h = mu[j] * h + (1 - mu[j]) * self.down[j + 1](hidden_states[layer + 1])
                h = block(h, key_mask)
            return h

    class LadderSideModel(nn.Module):
        """The frozen backbone (its head trainable) with a side network beside it."""

        def __init__(self, model: nn.Module, side: nn.Module, head: str) -> None:
            super().__init__()
            self.model, self.side, self.head = model, side, head

        @property
        def config(self) -> Any:
            return self.model.config

        def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                    **kwargs: Any) -> Any:
            from transformers.modeling_outputs import SequenceClassifierOutput

            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            with torch.no_grad():  # no graph through the backbone: none of its activations kept
                hidden = self.model.base_model(**inputs, output_hidden_states=True).hidden_states
            h = self.side(hidden, attention_mask)
            head = getattr(self.model, self.head)
            if isinstance(head, nn.Linear):
                mask = attention_mask.unsqueeze(-1).to(h.dtype)
                pooled = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
                logits = head(self.side.drop(torch.tanh(self.side.up(pooled))))
            else:  # a head that pools the sequence itself (RoBERTa's takes token 0)
                logits = head(self.side.up(h))
            loss = None
            if labels is not None:
                if logits.shape[-1] == 1:
                    loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
                else:
                    loss = F.cross_entropy(logits.float(), labels)
            return SequenceClassifierOutput(loss=loss, logits=logits)

    return LadderSideNetwork, LadderSideModel


# --- L2-norm structured pruning (the side blocks' init) -------------------------------------

def keep_largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, in ascending index order (the backbone's order)."""
    import torch

    return torch.sort(torch.topk(scores, k).indices).values


def _parts(layer: nn.Module, where: str) -> dict[str, nn.Module]:
    """A BERT-layout layer's Linears and LayerNorms (BERT, RoBERTa, ELECTRA, MiniLM names)."""
    names = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "ln_attn": "attention.output.LayerNorm",
             "ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ln_ffn": "output.LayerNorm"}
    out = {}
    for key, name in names.items():
        try:
            out[key] = layer.get_submodule(name)
        except AttributeError:
            raise ValueError(f"LST init prune: {where} has no {name} (a BERT-style layer is needed); "
                             "use init random for this backbone") from None
    return out


def residual_keep(layers: list[dict[str, nn.Module]], k: int) -> torch.Tensor:
    """The ``k`` residual-stream dims with the largest weight norms summed over ``layers``:
    the columns reading the stream (query, key, value, FFN in) and the rows writing it
    (attention output, FFN out)."""
    score = 0
    for p in layers:
        for name in ("query", "key", "value", "ffn_in"):
            score = score + p[name].weight.detach().pow(2).sum(dim=0)
        for name in ("attn_out", "ffn_out"):
            score = score + p[name].weight.detach().pow(2).sum(dim=1)
    return keep_largest(score, k)  # type: ignore[arg-type]


def attention_keep(p: dict[str, nn.Module], heads: int, side_heads: int, side_head_dim: int) -> torch.Tensor:
    """Attention dims to keep: the ``side_heads`` heads with the largest weight norms, and in
    each the ``side_head_dim`` dims with the largest norms (query/key/value rows plus the
    output projection's column), as indices into the backbone's attention width."""
    import torch

    w = p["query"].weight.detach()
    score = (w.pow(2).sum(dim=1) + p["key"].weight.detach().pow(2).sum(dim=1)
             + p["value"].weight.detach().pow(2).sum(dim=1) + p["attn_out"].weight.detach().pow(2).sum(dim=0))
    per_head = score.view(heads, -1)
    hd = per_head.shape[1]
    kept = keep_largest(per_head.sum(dim=1), side_heads)
    return torch.cat([h * hd + keep_largest(per_head[h], side_head_dim) for h in kept.tolist()])


def ffn_keep(p: dict[str, nn.Module], k: int) -> torch.Tensor:
    """The ``k`` FFN units with the largest norms (FFN-in row plus FFN-out column)."""
    return keep_largest(p["ffn_in"].weight.detach().pow(2).sum(dim=1)
                        + p["ffn_out"].weight.detach().pow(2).sum(dim=0), k)


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    base = model.base_model
    try:
        return list(base.get_submodule("encoder.layer"))
    except AttributeError:
        raise ValueError(f"LST init prune: {type(base).__name__} has no encoder.layer list (a BERT-style "
                         "encoder is needed); use init random for this backbone") from None


def prune_init(side: nn.Module, model: nn.Module, s: SideShape) -> dict[str, Any]:
    """Copy each retained backbone layer's weights, cut to the kept dims, into its side block;
    returns the kept indices (residual dims; per layer attention dims and FFN units)."""
    import torch

    layers = encoder_layers(model)
    parts = [_parts(layers[i], f"layer {i}") for i in s.layers]
    res = residual_keep(parts, s.side_width)
    kept: dict[str, Any] = {"residual": res.tolist(), "attention": {}, "ffn": {}}
    with torch.no_grad():
        for i, p, block in zip(s.layers, parts, side.blocks, strict=True):
            att = attention_keep(p, s.heads, s.side_heads, s.side_head_dim)
            ffn = ffn_keep(p, s.side_intermediate)
            kept["attention"][i], kept["ffn"][i] = att.tolist(), ffn.tolist()
            cuts = {"query": (att, res), "key": (att, res), "value": (att, res), "attn_out": (res, att),
                    "ffn_in": (ffn, res), "ffn_out": (res, ffn)}
            for name, (rows, cols) in cuts.items():
                src, dst = p[name], getattr(block, name)
                dst.weight.copy_(src.weight[rows][:, cols])
                dst.bias.copy_(src.bias[rows])
            for name in ("ln_attn", "ln_ffn"):
                getattr(block, name).weight.copy_(p[name].weight[res])
                getattr(block, name).bias.copy_(p[name].bias[res])
    return kept


# --- the adapter ------------------------------------------------------------------------------

def build(model: nn.Module, params: LstParams, head: str) -> nn.Module:
    """Freeze ``model`` except its head ``head``, and wrap it with a freshly initialised side
    network (pruned from the backbone or random, as ``params.init`` says)."""
    side_cls, wrapper_cls = _modules()
    s = side_shape(model.config, params)
    if not hasattr(model, head):
        raise ValueError(f"LST: the model has no head module {head!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in getattr(model, head).parameters():
        p.requires_grad_(True)
    ref = next(model.parameters())
    side = side_cls(s, params)
    if params.init == "prune":
        side.prune_record = prune_init(side, model, s)
    side.to(device=ref.device, dtype=ref.dtype)
    return wrapper_cls(model, side, head)


class LadderSideTuning(Adapter):
    def check(self, params: LstParams, shape: dict[str, Any], where: str) -> None:
        """The widths the reduction factor must divide and the layers that must exist, from the
        model's config or GGUF header (the side heads are checked in the job, on the config)."""
        d, ff, n = shape.get("hidden"), shape.get("mlp"), shape.get("blocks")
        r = params.reduction_factor
        if d and d % r:
            raise ValueError(f"{where}: LST reduction_factor {r} does not divide the hidden size {d}; "
                             f"pick a divisor of {d}")
        if ff and ff % r:
            raise ValueError(f"{where}: LST reduction_factor {r} does not divide the FFN width {ff}")
        bad = [i for i in (params.layers or ()) if n and i >= n]
        if bad:
            raise ValueError(f"{where}: LST layers: layer {bad[0]} does not exist (the model has {n} blocks)")

    Params = LstParams

    def apply(self, model: nn.Module, params: LstParams, ctx: AdapterContext) -> nn.Module:
        heads = list(ctx.head_modules)
        if len(heads) != 1:
            raise ValueError(f"LST needs exactly one classifier head module to feed, the framing names {heads}")
        return build(model, params, heads[0])

    def save(self, model: nn.Module, params: LstParams, out_dir: Path) -> list[str]:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(out_dir / WEIGHTS_FILE))
        s = model.side.shape
        cfg = {"method": "lst", "paper": "Sung, Cho, Bansal, arXiv 2206.06522", "params": asdict(params),
               "head": model.head, "side_width": s.side_width, "side_heads": s.side_heads,
               "side_intermediate": s.side_intermediate, "layers": list(s.layers),
               "backbone": getattr(model.config, "_name_or_path", "") or model.config.model_type,
               "trainable_params": sum(v.numel() for v in state.values())}
        (out_dir / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, default=list))
        return sorted(p.name for p in out_dir.iterdir())


def load(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """The trained LST model from its backbone ``model`` (as the framing loads it) and the
    directory ``save`` wrote."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    cfg = json.loads((adapter_dir / CONFIG_FILE).read_text())
    params = ADAPTER.make_params(cfg["params"])
    wrapped = build(model, LstParams(**{**asdict(params), "init": "random"}), cfg["head"])
    state = load_file(str(adapter_dir / WEIGHTS_FILE))
    own = {n: p for n, p in wrapped.named_parameters() if p.requires_grad}
    if set(state) != set(own):
        diff = sorted(set(state) ^ set(own))
        raise ValueError(f"{adapter_dir / WEIGHTS_FILE}: parameters do not match the model ({diff[0]!r})")
    import torch

    with torch.no_grad():
        for n, p in own.items():
            p.copy_(state[n])
    return wrapped


ADAPTER = LadderSideTuning()
