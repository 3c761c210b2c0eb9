"""What the gradient-projection strategies share (GaLore, Fira, FRUGAL): which parameters
are projected, the rank check against the model's widths, the projector state that the
libraries keep as Python objects, and the paper-style memory accounting.

Projected parameters are the 2-D weights of the ``nn.Linear`` layers inside the transformer
blocks (GaLore's ``run_glue.py`` targets the attention and MLP linears); everything else
(embeddings, LayerNorms, biases, pooler, classification head) stays on plain AdamW in a
second parameter group, as in the papers' fine-tuning scripts.

galore-torch and fira keep each matrix's projector in ``optimizer.state[p]["projector"]``,
an object holding the ``ortho_matrix`` tensor. The memory tracker's walk of
``optimizer.state`` does not see it (``projector_tensors`` hands it to the probe), and
``torch.load(weights_only=True)`` refuses it, so ``ProjectorStateDict`` stores its matrix in
the optimizer's state dict as a tensor and rebuilds the object on load: a resumed run projects with the same matrix as an uninterrupted one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

PROJECTOR_KEY = "projector"
SAVED_KEY = "projector_matrix"  # the projector's matrix in a saved state dict


def projected_weights(model: nn.Module) -> list[torch.nn.Parameter]:
    """Trainable 2-D weights of the Linear layers inside the model's transformer blocks."""
    from torch import nn

    from reclaim.optim.lisa import transformer_blocks

    _, blocks = transformer_blocks(model)
    seen: set[int] = set()
    out = []
    for block in blocks:
        for mod in block.modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, nn.Linear) and w is not None and w.requires_grad and w.dim() == 2 \
                    and id(w) not in seen:
                seen.add(id(w))
                out.append(w)
    return out


def param_groups(model: nn.Module, rank: int, low_rank: dict[str, Any]) -> list[dict[str, Any]]:
    """[plain AdamW group, projected group carrying ``rank`` and ``low_rank``'s keys]; refuses
    a rank larger than a projected matrix, naming the layer."""
    projected = projected_weights(model)
    if not projected:
        raise ValueError(f"{type(model).__name__}: no trainable Linear weights in its transformer blocks to project")
    names = {id(p): n for n, p in model.named_parameters()}
    for p in projected:
        if rank > min(p.shape):
            raise ValueError(f"rank {rank} is larger than {names.get(id(p), '?')} "
                             f"({p.shape[0]} x {p.shape[1]}, width {min(p.shape)})")
    ids = {id(p) for p in projected}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [{"params": rest}, {"params": projected, "rank": rank, **low_rank}]


def check_rank(rank: int, widths: dict[str, Any], where: str, method: str) -> None:
    """A rank no projected matrix can hold (larger than the model's narrowest block width)."""
    known = {k: int(v) for k, v in widths.items() if k != "blocks" and v}
    if not known:
        return
    order = [k for k in ("hidden", "attention output", "mlp") if k in known] + sorted(set(known) - {
        "hidden", "attention output", "mlp"})
    key = min(order, key=lambda k: known[k])  # the first of the narrowest, hidden on a tie
    if rank > known[key]:
        raise ValueError(f"{where}: {method} rank {rank} is larger than the model's {key} width {known[key]}")


def projector_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The projection matrices galore-torch / fira keep outside the tensor leaves of the state."""
    import torch

    out = []
    for state in optimizer.state.values():
        proj = state.get(PROJECTOR_KEY)
        mat = getattr(proj, "ortho_matrix", None)
        if isinstance(mat, torch.Tensor):
            out.append(mat)
        elif isinstance(mat, (list, tuple)):  # proj_type "full": two factors
            out.extend(m for m in mat if isinstance(m, torch.Tensor))
    return out


class ProjectorStateDict:
    """Mixin for an optimizer whose state holds projector objects: its state dict holds each
    projector's matrix as a tensor (``SAVED_KEY``) instead, and loading rebuilds the object
    from the parameter group's settings (rank, gap, scale, type) and that matrix. Only tensors
    and numbers go in: torch's ``load_state_dict`` walks every iterable it finds, strings
    included."""

    def make_projector(self, group: dict[str, Any]) -> Any:
        raise NotImplementedError

    def step(self, closure: Any = None) -> Any:
        """The library's step, then each new projector compacted to its own r-wide storage:
        on fp32 weights galore-torch and fira keep a *view* of the full SVD factor (U or Vᵀ,
        min(m, n) wide), which holds the whole factor alive. Same values, so the update is
        unchanged; without this the probe would charge the method a full-width factor per
        matrix that the papers' (bf16, copied) projectors do not hold."""
        import torch

        out = super().step(closure)  # type: ignore[misc]
        for state in self.state.values():  # type: ignore[attr-defined]
            t = getattr(state.get(PROJECTOR_KEY), "ortho_matrix", None)
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > t.numel() * t.element_size():
                state[PROJECTOR_KEY].ortho_matrix = t.clone(memory_format=torch.contiguous_format)
        return out

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()  # type: ignore[misc]
        state = {}
        for k, v in sd["state"].items():
            proj = v.get(PROJECTOR_KEY)
            if proj is not None:
                v = {kk: vv for kk, vv in v.items() if kk != PROJECTOR_KEY}
                v[SAVED_KEY] = proj.ortho_matrix
            state[k] = v
        return {**sd, "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]
        for group in self.param_groups:  # type: ignore[attr-defined]
            for p in group["params"]:
                state = self.state.get(p)  # type: ignore[attr-defined]
                if state and SAVED_KEY in state:
                    proj = self.make_projector(group)
                    proj.ortho_matrix = state.pop(SAVED_KEY)
                    state[PROJECTOR_KEY] = proj


def paper_accounting(model: nn.Module, optimizer: torch.optim.Optimizer,
                     extra: list[torch.Tensor]) -> dict[str, Any]:
    """GaLore Tables 2/4 style: BF16 weights + BF16 optimizer states of the projected matrices
    only (their low-rank moments and projectors); the full AdamW states of the parameters
    left unprojected (embeddings, norms, head) are not in it, which is what the papers'
    GLUE figures can hold (notes 4.2, accounting caveat). Integer index tensors keep their
    own size; step counters are left out."""
    import torch

    projected = [p for g in optimizer.param_groups if "rank" in g for p in g["params"]]
    state_bytes = 0
    for p in projected:
        for key, t in optimizer.state.get(p, {}).items():
            if isinstance(t, torch.Tensor) and key != "step":
                state_bytes += t.numel() * (2 if t.is_floating_point() else t.element_size())
    ids = {id(p) for p in projected}
    state_bytes += sum(t.numel() * 2 for t in extra if t.is_floating_point())
    n_total = sum(p.numel() for p in model.parameters())
    unprojected = sum(p.numel() for g in optimizer.param_groups for p in g["params"] if id(p) not in ids)
    return {"definition": "bf16 weights + bf16 optimizer states (moments + projectors) of the projected matrices; "
                          "states of unprojected parameters excluded",
            "dtype": "bfloat16", "weight_bytes": 2 * n_total, "state_bytes": state_bytes,
            "total_bytes": 2 * n_total + state_bytes, "projected_params": sum(p.numel() for p in projected),
            "projected_matrices": len(projected), "unprojected_trainable_params": unprojected}
