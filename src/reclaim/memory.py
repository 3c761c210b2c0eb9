"""Training-step memory, measured so that the same step gives the same number twice.

torch's CPU build has no allocator statistics, ``tracemalloc`` does not see tensor storage,
peak RSS moves by a few percent between identical runs, and torch's private ``MemTracker``
refuses models with frozen parameters (every adapter, LISA, LST, zeroth-order). So the probe
counts live tensor storage itself: a ``TorchDispatchMode`` sees every tensor an operator
returns; each storage is counted once (views and in-place results share it) and uncounted by a
finaliser when it is freed. Parameters, buffers, gradients, optimizer state and the batch,
which exist before the step, are registered by walking them (``track``).

Protocol (``probe_steps``): one warm-up step creates the optimizer state (and GaLore-style
projectors), then two probe steps run under the tracker; their peaks must be equal, which
catches state that grows from step to step (LISA's optimizer state kept for frozen blocks).
On CUDA ``torch.cuda.max_memory_allocated`` is read around the same steps as a cross-check.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


def _tensor_leaves(obj: Any) -> Iterable[torch.Tensor]:
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensor_leaves(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensor_leaves(v)


class LiveTensorTracker:
    """Current and peak bytes of live tensor storage on one device type."""

    def __init__(self, device_type: str = "cpu") -> None:
        self.device_type = device_type
        self.live: dict[int, int] = {}   # storage id -> bytes
        self.cur = 0
        self.peak = 0
        self._mode: Any = None

    def add(self, t: torch.Tensor) -> None:
        if t.device.type != self.device_type or t.is_meta:
            return
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse or wrapper tensors own no plain storage
            return
        key = st._cdata
        if key in self.live:
            return
        n = st.nbytes()
        self.live[key] = n
        self.cur += n
        self.peak = max(self.peak, self.cur)
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        n = self.live.pop(key, None)
        if n is not None:
            self.cur -= n

    def track(self, *objs: Any) -> None:
        """Register what exists before the step: modules (parameters, buffers, gradients),
        optimizers (every tensor of their state), and any tensors or containers of them."""
        import torch

        for obj in objs:
            if isinstance(obj, torch.nn.Module):
                for p in obj.parameters():
                    self.add(p)
                    if p.grad is not None:
                        self.add(p.grad)
                for b in obj.buffers():
                    self.add(b)
            elif isinstance(obj, torch.optim.Optimizer):
                for state in obj.state.values():
                    for t in _tensor_leaves(state):
                        self.add(t)
            else:
                for t in _tensor_leaves(obj):
                    self.add(t)

    def reset_peak(self) -> None:
        self.peak = self.cur

    def __enter__(self) -> LiveTensorTracker:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        tracker = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                out = func(*args, **(kwargs or {}))
                for t in tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        tracker.add(t)
                return out

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
        self._mode = None


def tensor_bytes(objs: Iterable[Any]) -> int:
    """Bytes of the distinct storages among ``objs`` (tensors or containers of them)."""
    seen: dict[int, int] = {}
    for obj in objs:
        for t in _tensor_leaves(obj):
            st = t.untyped_storage()
            seen[st._cdata] = st.nbytes()
    return sum(seen.values())


@dataclass
class ProbeResult:
    peak_bytes: int                 # live tensor storage at the step's high-water mark
    peaks: list[int]                # each probe step's peak (all equal unless the trained set varies)
    resident_bytes: int             # live bytes between steps (equal before every probe step)
    steady_bytes: int               # params + buffers + grads + optimizer state + extra + batch
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int                 # gradients of the trainable parameters, as the step holds them
    opt_state_bytes: int
    extra_state_bytes: int          # state held outside optimizer.state (projectors)
    batch_bytes: int
    trainable_params: int
    total_params: int
    cuda: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ProbeError(RuntimeError):
    pass


def probe_steps(model: nn.Module, optimizer: Any, batch: dict[str, Any], step: Callable[[int], None],
                extra_state: Callable[[], list[Any]] = list, n_probe: int = 2, stride: int = 1,
                equal_peaks: bool = True, holds_grads: bool = True) -> ProbeResult:
    """Run ``step(i)`` (a whole training step: forward, backward, optimizer update, zero_grad)
    once as warm-up (i = 0) and ``n_probe`` times under the tracker. A strategy that switches
    what it trains every K = ``stride`` steps (K >= 2) is probed on the second step of
    intervals 1, 2, ...: the first step of each (i = K, 2K, ...) runs untracked-for-peak, so
    that every probe step starts with its interval's optimizer state in place, and state kept
    from earlier intervals shows up as growth.

    Raises ProbeError when the bytes resident at the start of the probe steps differ (state
    that grows), or, with ``equal_peaks``, when their peaks differ. A strategy that trains
    different blocks in different intervals (LISA) has peaks that depend on where in the
    network the trained blocks sit (their gradients appear earlier or later in backward), so
    it reports the largest peak and every peak instead."""
    import torch

    device_type = next(model.parameters()).device.type
    step(0)
    gc.collect()
    trainable = [p for p in model.parameters() if p.requires_grad]
    param_bytes = tensor_bytes(model.parameters())
    buffer_bytes = tensor_bytes(model.buffers())
    # the gradients a backward step holds at its end, before zero_grad: one per trainable
    # parameter (none for a zeroth-order step, ``holds_grads`` False)
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable) if holds_grads else 0
    opt_state_bytes = tensor_bytes(list(optimizer.state.values())) if optimizer is not None else 0
    extra = extra_state()
    extra_bytes = tensor_bytes(extra)
    batch_bytes = tensor_bytes(batch.values())

    tracker = LiveTensorTracker(device_type)
    cuda: dict[str, int] = {}
    peaks: list[int] = []
    resident: list[int] = []
    if device_type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda["allocated_before"] = int(torch.cuda.memory_allocated())
    with tracker:
        tracker.track(model, optimizer, batch, extra)
        for i in range(1, n_probe + 1):
            if stride > 1:
                step(i * stride)  # the interval's first step: allocates its state
            gc.collect()
            resident.append(tracker.cur)
            tracker.reset_peak()
            step(i * stride + (1 if stride > 1 else 0))
            peaks.append(tracker.peak)
    if device_type == "cuda":
        torch.cuda.synchronize()
        cuda["max_allocated"] = int(torch.cuda.max_memory_allocated())
        cuda["max_reserved"] = int(torch.cuda.max_memory_reserved())
        cuda["peak_minus_before"] = cuda["max_allocated"] - cuda["allocated_before"]
    if len(set(resident)) != 1:
        raise ProbeError(f"memory grows from step to step: {resident} bytes resident before the probe steps")
    if equal_peaks and len(set(peaks)) != 1:
        raise ProbeError(f"the probe steps' peaks differ ({peaks} bytes) with equal resident memory")
    return ProbeResult(
        peak_bytes=max(peaks), peaks=peaks, resident_bytes=resident[0],
        steady_bytes=param_bytes + buffer_bytes + grad_bytes + opt_state_bytes + extra_bytes + batch_bytes,
        param_bytes=param_bytes, buffer_bytes=buffer_bytes, grad_bytes=grad_bytes,
        opt_state_bytes=opt_state_bytes, extra_state_bytes=extra_bytes, batch_bytes=batch_bytes,
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in model.parameters()), cuda=cuda)


def inference_peak(model: nn.Module, batch: dict[str, Any], forward: Callable[[], Any]) -> int:
    """Peak live bytes of one forward pass under ``no_grad`` (parameters, buffers and batch
    included): the reference zeroth-order memory is compared to."""
    import torch

    gc.collect()
    tracker = LiveTensorTracker(next(model.parameters()).device.type)
    with torch.no_grad(), tracker:
        tracker.track(model, batch)
        tracker.reset_peak()
        forward()
    return tracker.peak
