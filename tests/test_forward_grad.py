"""The forward-gradient strategy (reclaim.optim.forward_grad; ZO-Bench arXiv 2402.11592,
Sec. 3; Baydin et al. arXiv 2202.08587): its jvp is autograd's directional derivative on the
tiny transformers, its estimate points along the backprop gradient, its step is seeded and
backward-free, and the memory probe measures it below first-order full fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reclaim import optim
from reclaim.memory import inference_peak, probe_steps
from reclaim.optim._base import StepContext
from reclaim.optim.forward_grad import directional_derivative, forward_gradient_estimate, tangent
from reclaim.testing import _build_model, build_tokenizer


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    loss = model(**batch).loss
    return loss, loss


def tiny_bert() -> nn.Module:
    """tests/test_memory.py's probe model: the tiny BERT without dropout."""
    torch.manual_seed(0)
    model = _build_model("bert", build_tokenizer("bert"))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def _setup(name: str, lr: float):
    """tests/test_memory.py's ``run_probe`` setup: full_ft on the tiny BERT, batch 8 x 32;
    returns (model, batch, strategy, params, optimizer, one training step)."""
    from reclaim.adapters import get as get_adapter

    model = tiny_bert()
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, model.config.vocab_size, (8, 32), generator=g),
             "attention_mask": torch.ones(8, 32, dtype=torch.long),
             "labels": torch.randint(0, 2, (8,), generator=g)}
    adapter = get_adapter("full_ft")
    aparams = adapter.make_params({})
    model = adapter.apply(model, aparams, None)  # type: ignore[arg-type]
    strategy = optim.get(name).fresh()
    params = strategy.make_params(None)
    opt = strategy.build_optimizer(model, params, adapter, aparams, lr, 0.0)
    ctx = StepContext(loss_fn, 0.0, seed=0)

    def step(i: int) -> None:
        strategy.on_step_begin(model, opt, params, i, 0)
        strategy.step(model, batch, opt, params, i, ctx)
        opt.zero_grad(set_to_none=True)

    return model, batch, strategy, params, opt, step


def run_probe(name: str, lr: float = 1e-2):
    """(probe result, model, batch): a warm-up step and two probed steps (steps 0, 1, 2)."""
    model, batch, strategy, params, opt, step = _setup(name, lr)
    res = probe_steps(model, opt, batch, step, lambda: strategy.extra_state(opt),
                      stride=strategy.probe_stride(params), equal_peaks=strategy.fixed_trainable,
                      holds_grads=strategy.first_order)
    return res, model, batch


@pytest.fixture(scope="module")
def probed():
    return run_probe("forward_grad")


class _MLP(nn.Module):
    """26 parameters: the estimate's variance grows with their number."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor):  # noqa: ANN201
        class Out:
            pass

        o = Out()
        o.loss = nn.functional.cross_entropy(self.net(x), labels)
        return o


def _tiny(kind: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = _build_model(kind, build_tokenizer(kind)).eval()  # no dropout: one function for both ADs
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, model.config.vocab_size, (4, 16), generator=g)
    mask = torch.ones(4, 16, dtype=torch.long)
    mask[0, 10:] = 0  # padding: the masked attention path
    labels = torch.randint(0, 2, (4,), generator=g) if kind == "bert" else ids.clone()
    return model, {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_jvp_directional_derivative_equals_autograds(kind: str) -> None:
    model, batch = _tiny(kind)
    assert model.config._attn_implementation == "sdpa"  # whose fused CPU kernel has no jvp rule
    ctx = StepContext(loss_fn, 0.0, 0)
    d, loss = directional_derivative(model, batch, ctx, 0, seed=5, chunk=1000)
    assert model.config._attn_implementation == "sdpa"  # restored after the step
    trainable = [p for p in model.parameters() if p.requires_grad]
    ref_loss = model(**batch).loss
    ref_loss.backward()
    ref = sum(float((p.grad * tangent(p, 5, i, 1000)).sum()) for i, p in enumerate(trainable))
    assert float(loss) == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    assert float(d) == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_estimate_mean_points_along_the_backprop_gradient() -> None:
    model = _MLP()
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(16, 3, generator=g), "labels": torch.randint(0, 2, (16,), generator=g)}
    model(**batch).loss.backward()
    true = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    ctx = StepContext(loss_fn, 0.0, 0)
    # each draw is exact (no finite-difference bias); its variance is the small-eps two-point
    # estimate's, (d + 1) |grad|^2 per draw, so cos ~ 1 / sqrt(1 + d / n) ~ 0.94 here
    n = 200
    est = torch.zeros_like(true)
    for s in range(n):
        est += torch.cat([t.flatten() for t in forward_gradient_estimate(model, batch, ctx, seed=s)])
    est /= n
    cos = float(torch.dot(est, true) / (est.norm() * true.norm()))
    assert cos > 0.9, cos


def test_step_changes_the_parameters_is_seeded_and_holds_no_grad(probed) -> None:
    a = probed[1]  # three steps under the memory probe
    b, _, _, _, _, step = _setup("forward_grad", 1e-2)
    for i in range(3):  # the same three steps, untracked
        step(i)
    fresh = tiny_bert()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert any(not torch.allclose(x, y) for x, y in zip(a.parameters(), fresh.parameters(), strict=True))
    assert all(p.grad is None for p in a.parameters())
    assert a.config._attn_implementation == fresh.config._attn_implementation == "sdpa"


def test_memory_is_below_first_order_full_ft(probed) -> None:
    fg, model, batch = probed
    assert fg.grad_bytes == 0 and fg.opt_state_bytes == 0
    inf = inference_peak(model, batch, lambda: model(**batch).loss)
    # at least the tangents (one z per trainable tensor) on top of a forward pass
    assert fg.peak_bytes >= inf + fg.param_bytes
    full = run_probe("adamw")[0]
    assert fg.peak_bytes < full.peak_bytes, (fg.peak_bytes, full.peak_bytes)


def test_params_refused() -> None:
    with pytest.raises(ValueError, match="chunk must be >= 0"):
        optim.get("forward_grad").make_params({"chunk": -1})
    with pytest.raises(ValueError):
        optim.get("forward_grad").make_params({"eps": 1e-3})  # no finite difference, no eps
