"""Block-by-block access to a transformer for calibration-based compression.

GPTQ, AWQ, Wanda, SparseGPT, FLAP and EoRA all process a model one block at a time: the
calibration inputs of block i are the outputs of block i-1 (already compressed, for the
sequential methods). The inputs of the first block are captured with a forward pre-hook that
stops the forward pass (the "catcher" of the GPTQ reference), together with the keyword
arguments the model passes its blocks (rotary position embeddings, masks), so any decoder or
encoder stack that transformers builds from a list of blocks is handled the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from reclaim.compress._torch import nn, no_grad, torch

# Where transformers keeps the block list, by architecture family.
BLOCK_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers",
               "bert.encoder.layer", "encoder.layer", "roberta.encoder.layer")


class _Stop(Exception):
    pass


def _attr(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    for path in BLOCK_PATHS:
        blocks = _attr(model, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks):
            return path, blocks
    raise ValueError(f"{type(model).__name__}: no block list found (looked for {', '.join(BLOCK_PATHS)})")


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}


def compressible_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear inside the blocks, by full name; embeddings and the (tied) LM head stay
    untouched, as in every paper here."""
    path, blocks = decoder_blocks(model)
    return {f"{path}.{i}.{name}": lin for i, block in enumerate(blocks) for name, lin in block_linears(block).items()}


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


@no_grad
def block_inputs(model: nn.Module, samples: list[torch.Tensor]
                 ) -> tuple[list[torch.Tensor], list[list[dict[str, Any]]]]:
    """Hidden states entering the first block per sample (1, T), and every block's keyword
    arguments per sample (``[block][sample]``). Blocks do not all get the same ones: Gemma-3
    alternates sliding-window and global layers, each with its own mask and rotary embedding
    (``layer_types``), so a block replayed with block 0's arguments would be a different
    function. Each sample runs the whole model once; blocks of one type share the same tensors."""
    _, blocks = decoder_blocks(model)
    hidden: list[torch.Tensor] = []
    kwargs: list[list[dict[str, Any]]] = [[] for _ in blocks]

    def catch(index: int, args: tuple, kw: dict[str, Any]) -> None:
        kw = dict(kw)
        h = args[0] if args else kw.pop("hidden_states")
        if index == 0:
            hidden.append(h.detach())
        kwargs[index].append({k: v for k, v in kw.items() if k not in ("past_key_values", "past_key_value", "use_cache")})
        if index == len(blocks) - 1:
            raise _Stop

    handles = [b.register_forward_pre_hook(lambda _m, args, kw, i=i: catch(i, args, kw), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        for ids in samples:
            try:
                model(input_ids=ids, use_cache=False)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return hidden, kwargs


@no_grad
def run_block(block: nn.Module, hidden: list[torch.Tensor], kwargs: list[dict[str, Any]]) -> list[torch.Tensor]:
    return [_first(block(h, **kw)) for h, kw in zip(hidden, kwargs, strict=True)]


@no_grad
def capture_linear_inputs(block: nn.Module, names: list[str], hidden: list[torch.Tensor],
                          kwargs: list[dict[str, Any]], fn: Callable[[str, torch.Tensor], None]) -> list[torch.Tensor]:
    """Run the block on every sample, calling ``fn(name, x)`` with each named Linear's input
    (2-D, tokens x features); returns the block outputs."""
    mods = block_linears(block)
    handles = [mods[n].register_forward_hook(lambda _m, inp, _out, n=n: fn(n, inp[0].reshape(-1, inp[0].shape[-1])))
               for n in names]
    try:
        return run_block(block, hidden, kwargs)
    finally:
        for h in handles:
            h.remove()


@no_grad
def linear_stages(block: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> list[list[str]]:
    """The block's Linears in call order, grouped by the input they share (q/k/v, then o, then
    gate/up, then down in a Llama block): GPTQ's "true sequential" order and AWQ's scale groups."""
    mods = block_linears(block)
    order: list[tuple[str, int]] = []
    keep: list[torch.Tensor] = []  # keep inputs alive so their storage is not reused
    def record(name: str, x: torch.Tensor) -> None:  # a forward hook returning non-None replaces the output
        order.append((name, x.data_ptr()))
        keep.append(x)

    handles = [m.register_forward_hook(lambda _m, inp, _out, n=n: record(n, inp[0])) for n, m in mods.items()]
    try:
        block(hidden, **kwargs)
    finally:
        for h in handles:
            h.remove()
    stages: list[list[str]] = []
    seen: dict[int, int] = {}
    for name, ptr in order:
        if ptr in seen:
            stages[seen[ptr]].append(name)
        else:
            seen[ptr] = len(stages)
            stages.append([name])
    return stages


def common_parent(block: nn.Module, names: list[str]) -> str:
    """The smallest module of ``block`` containing every named Linear ('' = the block)."""
    if len(names) == 1:
        return names[0]
    parts = [n.split(".") for n in names]
    prefix: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        prefix.append(level[0])
    return ".".join(prefix)


def submodule(block: nn.Module, name: str) -> nn.Module:
    return block.get_submodule(name) if name else block


def compress_sequentially(model: nn.Module, calibration: list[torch.Tensor], desc: str,
                          make_stat: Callable[[nn.Linear], Any],
                          update: Callable[[str, torch.Tensor, Any], tuple[torch.Tensor, dict[str, Any]]],
                          true_sequential: bool = True) -> dict[str, Any]:
    """The loop GPTQ, SparseGPT and Wanda share: block by block, each stage of Linears (all of
    the block's at once without ``true_sequential``) gathers a statistic of its calibration
    inputs (``make_stat(linear)``, an object with ``add(x)``), ``update(name, weight, stat)``
    returns the new weight and the layer's record, and the next block is calibrated on this
    block's compressed outputs. Returns the records by full layer name."""
    path, blocks = decoder_blocks(model)
    hidden, block_kwargs = block_inputs(model, calibration)
    per_layer: dict[str, Any] = {}
    for i, block in enumerate(tqdm(blocks, desc=desc)):
        kwargs = block_kwargs[i]
        lins = block_linears(block)
        stages = linear_stages(block, hidden[0], kwargs[0]) if true_sequential else [list(lins)]
        for stage in stages:
            stats = {n: make_stat(lins[n]) for n in stage}
            capture_linear_inputs(block, stage, hidden, kwargs, lambda n, x, stats=stats: stats[n].add(x))
            for n in stage:
                w = lins[n].weight
                w_hat, per_layer[f"{path}.{i}.{n}"] = update(n, w, stats[n])
                with torch.no_grad():
                    w.copy_(w_hat)
        hidden = run_block(block, hidden, kwargs)  # the next block sees the compressed outputs
    return per_layer
