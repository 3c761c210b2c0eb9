"""The LoRA-GA and PiSSA initialisations do what their papers' math says."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reclaim import adapters
from reclaim.adapters._base import AdapterContext
from reclaim.adapters._lora import lora_layers, weight_matrix


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 24)
        self.fc2 = nn.Linear(24, 20)
        self.head = nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))


def _loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(model(batch["x"]), batch["labels"])


def _data(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 12, generator=g), "labels": torch.randint(0, 3, (n,), generator=g)}


def _ctx(data: dict[str, torch.Tensor]) -> AdapterContext:
    def batches(n: int, bs: int):
        for i in range(0, n, bs):
            yield {k: v[i:i + bs] for k, v in data.items()}

    return AdapterContext(loss_fn=_loss, train_batches=batches, total_steps=10, head_modules=["head"], seed=0)


def _base() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _apply(name: str, **params):  # type: ignore[no-untyped-def]
    data = _data()
    base = _base()
    adapter = adapters.get(name)
    p = adapter.make_params(params)
    model = adapter.apply(copy.deepcopy(base), p, _ctx(data))
    return base, model, adapter, p, data


@pytest.mark.parametrize("name", ["lora_ga", "lora_ga_peft", "pissa"])
def test_output_unchanged_at_step_zero(name: str) -> None:
    extra = {"grad_examples": 8, "grad_batch_size": 2} if "ga" in name else {}
    base, model, *_ , data = _apply(name, r=2, alpha=4, **extra)
    with torch.no_grad():
        torch.testing.assert_close(model(data["x"]), base(data["x"]), atol=1e-5, rtol=1e-5)


def test_lora_ga_factors_shapes_and_stable_scale() -> None:
    r, gamma = 2, 16.0
    base, model, *_ = _apply("lora_ga", r=r, alpha=4, gamma=gamma, exact_svd=True)
    layers = lora_layers(model)
    assert set(layers) == {"fc1", "fc2"}  # the head is trained fully, not adapted
    for name, layer in layers.items():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        m, n = getattr(base, name).weight.shape
        assert a.shape == (r, n) and b.shape == (m, r)
        factor = m**0.25 / gamma**0.5
        # rows of A0 and columns of B0 are orthonormal singular vectors times the stable factor
        torch.testing.assert_close(a @ a.T, factor**2 * torch.eye(r), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(b.T @ b, factor**2 * torch.eye(r), atol=1e-5, rtol=1e-4)
        assert layer.scaling["default"] == pytest.approx(4 / r**0.5)  # rsLoRA: alpha / sqrt(r)


def _one_sgd_step(lr: float):  # type: ignore[no-untyped-def]
    r = 2
    base, model, _, _, data = _apply("lora_ga", r=r, alpha=4, gamma=16, grad_examples=8,
                                     grad_batch_size=8, exact_svd=True)
    # full-model gradient G on the same examples (the step-0 function is unchanged)
    ref = copy.deepcopy(base)
    _loss(ref, data).backward()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    layer = lora_layers(model)["fc1"]
    s = layer.scaling["default"]
    a0 = layer.lora_A["default"].weight.detach().clone()
    b0 = layer.lora_B["default"].weight.detach().clone()
    _loss(model, data).backward()
    opt.step()
    a1, b1 = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    delta = s * (b1.double() @ a1.double() - b0.double() @ a0.double())
    g = ref.fc1.weight.grad.double()
    a0, b0 = a0.double(), b0.double()
    predicted = -lr * s**2 * (b0 @ b0.T @ g + g @ a0.T @ a0)
    return r, g, delta, predicted


def test_lora_ga_first_sgd_step_is_the_best_rank_2r_step() -> None:
    r, g, delta, predicted = _one_sgd_step(1e-2)
    err_big = ((delta - predicted).norm() / predicted.norm()).item()
    _, _, delta_small, predicted_small = _one_sgd_step(1e-3)
    err_small = ((delta_small - predicted_small).norm() / predicted_small.norm()).item()
    assert err_big < 0.05
    assert err_small < err_big / 5  # the remainder is O(lr): equal to first order in lr
    u, sv, vh = torch.linalg.svd(g)
    pu, pv = u[:, :2 * r] @ u[:, :2 * r].T, vh[:2 * r].T @ vh[:2 * r]
    assert (pu @ predicted @ pv - predicted).norm() / predicted.norm() < 1e-6
    assert (pu @ delta_small @ pv - delta_small).norm() / delta_small.norm() < 1e-2
    g2r = u[:, :2 * r] @ torch.diag(sv[:2 * r]) @ vh[:2 * r]
    cos = F.cosine_similarity(predicted.flatten(), -g2r.flatten(), dim=0)
    assert cos > 0.9999  # the first step is the best rank-2r approximation of -G, up to scale


def test_plain_lora_first_step_is_not_aligned_with_the_gradient() -> None:
    """Control for the test above: with B = 0, LoRA's first step only moves B."""
    base, model, *_ , data = _apply("lora", r=2, alpha=4)
    layer = lora_layers(model)["fc1"]
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0


def test_pissa_base_keeps_the_residual() -> None:
    r = 3
    base, model, *_ = _apply("pissa", r=r, alpha=3)
    layer = lora_layers(model)["fc2"]
    w = base.fc2.weight.detach()
    s = layer.scaling["default"]
    a, b = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
    residual = weight_matrix(layer).detach()
    torch.testing.assert_close(residual, w - s * b @ a, atol=1e-5, rtol=1e-5)
    # the adapter holds the principal part: the residual's spectrum is W's tail
    tail = torch.linalg.svdvals(w)[r:]
    torch.testing.assert_close(torch.linalg.svdvals(residual)[: len(tail)], tail, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["lora_ga", "lora_ga_peft", "pissa", "lora"])
def test_saved_adapter_reproduces_finetuned_model_on_original_base(name: str, tmp_path) -> None:
    from peft import PeftModel

    extra = {"grad_examples": 8, "grad_batch_size": 4} if "ga" in name else {}
    base, model, adapter, params, data = _apply(name, r=2, alpha=4, **extra)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        _loss(model, data).backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    with torch.no_grad():
        tuned = model(data["x"])
    adapter.save(model, params, tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(_base(), str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(data["x"]), tuned, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(tuned, base(data["x"]))  # training did change the function


def test_rank_must_fit_the_layer() -> None:
    with pytest.raises(ValueError, match="2r <= min"):
        _apply("lora_ga", r=8, alpha=4)  # fc1 is 24x12: 2r = 16 > 12


def _init_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter factors and the residual base weights the init wrote."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()
            if "lora_" in k or k.endswith("base_layer.weight")}


@pytest.mark.parametrize(("name", "exact"), [("lora_ga", True), ("lora_ga", False), ("lora_ga_peft", False)])
def test_lora_ga_init_does_not_depend_on_the_backends_signs(name: str, exact: bool,
                                                            request: pytest.FixtureRequest) -> None:
    """Issue 7: the same gradients give the same A0, B0 and residual W whatever signs the
    SVD/QR backend picks (``backend_flips``); without reclaim.linalg all three cases fail."""
    extra = {"exact_svd": exact} if name == "lora_ga" else {}
    _, model, *_ = _apply(name, r=2, alpha=4, grad_examples=8, grad_batch_size=4, **extra)
    reference = _init_state(model)
    request.getfixturevalue("backend_flips")
    _, flipped, *_ = _apply(name, r=2, alpha=4, grad_examples=8, grad_batch_size=4, **extra)
    state = _init_state(flipped)
    assert state.keys() == reference.keys() and any("lora_B" in k for k in state)
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, atol=1e-6, rtol=1e-5, msg=key)
