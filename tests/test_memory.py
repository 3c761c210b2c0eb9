"""The memory probe and the memory-efficient training strategies (reclaim.memory,
reclaim.optim): exact byte accounting on tiny models, LISA's state, the zeroth-order
estimator, and the config refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from reclaim import optim
from reclaim.memory import LiveTensorTracker, ProbeError, inference_peak, probe_steps
from reclaim.optim._base import StepContext
from reclaim.testing import _build_model, build_tokenizer


def tiny_bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = _build_model("bert", build_tokenizer("bert"))
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def batch_of(model: nn.Module, b: int = 8, t: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, model.config.vocab_size, (b, t), generator=g),
            "attention_mask": torch.ones(b, t, dtype=torch.long),
            "labels": torch.randint(0, 2, (b,), generator=g)}


def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, torch.Tensor]:
    loss = model(**batch).loss
    return loss, loss


def run_probe(name: str, raw: dict | None = None, model: nn.Module | None = None, lr: float = 1e-3):
    from reclaim.adapters import get as get_adapter

    model = model or tiny_bert()
    batch = batch_of(model)
    adapter = get_adapter("full_ft")
    aparams = adapter.make_params({})
    model = adapter.apply(model, aparams, None)  # type: ignore[arg-type]
    strategy = optim.get(name).fresh()
    params = strategy.make_params(raw)
    opt = strategy.build_optimizer(model, params, adapter, aparams, lr, 0.0)
    ctx = StepContext(loss_fn, 0.0, seed=0)

    def step(i: int) -> None:
        strategy.on_step_begin(model, opt, params, i, 0)
        strategy.step(model, batch, opt, params, i, ctx)
        opt.zero_grad(set_to_none=True)

    res = probe_steps(model, opt, batch, step, lambda: strategy.extra_state(opt), stride=strategy.probe_stride(params),
                      equal_peaks=strategy.fixed_trainable,
                      holds_grads=strategy.first_order)
    return res, model, batch, opt, strategy


def test_full_ft_adamw_steady_is_analytic_and_peak_matches_an_independent_count() -> None:
    res, model, batch, opt, _ = run_probe("adamw")
    params = list(model.parameters())
    p_bytes = sum(p.numel() * 4 for p in params)
    # params + grads + AdamW's two moments (fp32) + one 4-byte step counter per tensor
    assert res.param_bytes == p_bytes and res.grad_bytes == p_bytes
    assert res.opt_state_bytes == 2 * p_bytes + 4 * len(params)
    assert res.steady_bytes == 4 * p_bytes + 4 * len(params) + res.buffer_bytes + res.batch_bytes
    assert res.peaks[0] == res.peaks[1] and res.peak_bytes > res.steady_bytes
    # independent count: torch's own MemTracker (full FT only; it refuses frozen parameters)
    from torch.distributed._tools.mem_tracker import MemTracker

    def step() -> None:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    mt = MemTracker()
    mt.track_external(model, opt)
    with mt:
        step()
    theirs = mt.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    # MemTracker does not count the batch, which is not a module or optimizer tensor
    assert abs(res.peak_bytes - res.batch_bytes - theirs) / theirs < 0.01


def test_probe_gives_byte_identical_peaks_twice() -> None:
    a = run_probe("adamw")[0].as_dict()
    b = run_probe("adamw")[0].as_dict()
    assert a == b


def test_tracker_counts_views_once_and_frees() -> None:
    with LiveTensorTracker() as tr:
        x = torch.empty(1024)  # 4 KiB
        y = x.view(32, 32)
        x.add_(1)
        assert tr.cur == 4096
        del x, y
        assert tr.cur == 0
    assert tr.peak == 4096


def test_lisa_trains_gamma_blocks_and_its_state_does_not_grow() -> None:
    res, model, _, opt, strategy = run_probe("lisa", {"gamma": 1, "interval": 3})
    blocks = model.bert.encoder.layer
    active = [i for i, b in enumerate(blocks) if all(p.requires_grad for p in b.parameters())]
    assert len(active) == 1 and active == strategy.active
    assert all(p.requires_grad for p in model.bert.embeddings.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    # optimizer state only for what is trainable now: embeddings, head, the active block
    held = {id(p) for p in opt.state}
    for i, b in enumerate(blocks):
        assert all((id(p) in held) == (i in active) for p in b.parameters())
    assert res.peak_bytes == max(res.peaks)  # peaks depend on which block trains; resident memory does not
    assert len(strategy.history) == 3  # warm-up + two probe intervals


def test_lisa_keeping_frozen_blocks_state_is_caught_by_the_probe() -> None:
    # LMFlow's callback keeps the state of every block ever trained: memory grows per switch
    with pytest.raises(ProbeError, match="grows"):
        run_probe("lisa", {"gamma": 1, "interval": 2, "drop_state": False}, model=_deep_bert())
    res = run_probe("lisa", {"gamma": 1, "interval": 2}, model=_deep_bert())[0]  # the fix: state dropped
    assert res.resident_bytes > 0


def _deep_bert() -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=6, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))


def test_lisa_blocks_are_a_function_of_seed_and_interval() -> None:
    from reclaim.optim.lisa import sample_blocks

    assert sample_blocks(6, 2, 0, 3) == sample_blocks(6, 2, 0, 3)
    draws = {tuple(sample_blocks(6, 2, 0, k)) for k in range(20)}
    assert len(draws) > 5 and all(len(d) == 2 and len(set(d)) == 2 for d in draws)


class _MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor, labels: torch.Tensor):  # noqa: ANN201
        class Out:
            pass

        o = Out()
        o.loss = nn.functional.cross_entropy(self.net(x), labels)
        return o


def test_zo_estimate_points_along_the_backprop_gradient() -> None:
    from reclaim.optim._zo import zo_gradient_estimate

    model = _MLP()
    g = torch.Generator().manual_seed(1)
    batch = {"x": torch.randn(16, 6, generator=g), "labels": torch.randint(0, 2, (16,), generator=g)}
    model(**batch).loss.backward()
    true = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    ctx = StepContext(loss_fn, 0.0, 0)
    n = 3000
    est = torch.zeros_like(true)
    for s in range(n):
        est += torch.cat([t.flatten() for t in zo_gradient_estimate(model, batch, ctx, seed=s, eps=1e-3)])
    est /= n
    cos = float(torch.dot(est, true) / (est.norm() * true.norm()))
    assert cos > 0.9, cos
    # the perturbations are undone: the parameters are where they started (to rounding)
    model2 = _MLP()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_zo_memory_is_inference_plus_one_direction_and_zo_adam_adds_two_copies() -> None:
    sgd, model, batch, _, _ = run_probe("zo_sgd", {"eps": 1e-3})
    inf = inference_peak(model, batch, lambda: model(**batch).loss)
    largest = max(p.numel() * 4 for p in model.parameters())
    assert sgd.grad_bytes == 0  # no backward: no gradient buffers
    # two forward passes and one regenerated direction tensor at a time
    assert inf <= sgd.peak_bytes <= inf + largest
    assert sgd.opt_state_bytes == 0
    adam = run_probe("zo_adam", {"eps": 1e-3})[0]
    p_bytes = sgd.param_bytes
    assert abs((adam.peak_bytes - sgd.peak_bytes) - 2 * p_bytes) <= 0.01 * 2 * p_bytes


def test_zo_step_changes_the_parameters_and_is_seeded() -> None:
    a = run_probe("zo_sgd", {"eps": 1e-3}, lr=1e-2)[1]
    b = run_probe("zo_sgd", {"eps": 1e-3}, lr=1e-2)[1]
    fresh = tiny_bert()
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert any(not torch.allclose(x, y) for x, y in zip(a.parameters(), fresh.parameters(), strict=True))


@pytest.mark.parametrize("name,raw,message", [
    ("zo_sgd", {"eps": 0.0}, "eps must be > 0"),
    ("zo_adam", {"eps": -1e-3}, "eps must be > 0"),
    ("lisa", {"gamma": 0}, "gamma must be >= 1"),
    ("lisa", {"interval": 0}, "interval must be >= 1"),
])
def test_strategy_params_refused(name: str, raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optim.get(name).make_params(raw)


def _cfg_with(tiny_models, method: dict) -> dict:
    from reclaim.config import REPO_ROOT, load_yaml

    cfg = load_yaml(REPO_ROOT / "params.yaml")
    cfg = json.loads(json.dumps(cfg))
    cfg["models"]["tiny-bert"] = {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}
    cfg["methods"]["lisa_g2"] = method
    cfg["claims"]["lisa_glue"]["scales"]["smoke"]["models"] = ["tiny-bert"]
    return cfg


@pytest.mark.parametrize("method,key,message", [
    ({"adapter": "full_ft", "optimizer": {"name": "lisa", "params": {"gamma": 3}}},
     "claims.lisa_glue.arms.lisa_g2 (scale smoke, model 'tiny-bert')", "gamma 3 is larger than the model's 2"),
    ({"adapter": "full_ft", "optimizer": {"name": "zo_sgd", "params": {"eps": 0}}},
     "methods.lisa_g2.optimizer.params", "eps must be > 0"),
    ({"adapter": "full_ft", "optimizer": {"name": "adamw_16bit"}},
     "methods.lisa_g2.optimizer.name", "unknown optimizer 'adamw_16bit'"),
    ({"adapter": "lst", "params": {"reduction_factor": 5}},
     "claims.lisa_glue.arms.lisa_g2 (scale smoke, model 'tiny-bert'): methods.lisa_g2.params",
     "LST reduction_factor 5 does not divide the hidden size 32"),
])
def test_config_refuses_bad_strategies_naming_the_key(tiny_models, method, key, message) -> None:
    from reclaim.config import ConfigError, validate

    with pytest.raises(ConfigError) as err:
        validate(_cfg_with(tiny_models, method), "params.yaml")
    assert key in str(err.value) and message in str(err.value)


def test_paper_scale_accounting_counts_llama2_7b() -> None:
    from reclaim.claims._memory import LLAMA2_7B

    # 6.74 B parameters (Touvron et al., arXiv 2307.09288)
    assert math.isclose(LLAMA2_7B.total_params() / 1e9, 6.74, abs_tol=0.01)
    # LoRA r8 on q and v: 8 * (4096 + 4096) * 2 per block
    assert LLAMA2_7B.lora_params(8, ["q_proj", "v_proj"]) == 32 * 2 * 8 * 8192


def test_zo_in_place_updates_equal_torch_optimizers_on_the_same_gradient() -> None:
    """The chunked in-place SGD and AdamW updates are torch's SGD / AdamW applied to g z."""
    from reclaim.optim._zo import ZerothOrder, adamw_update, directions

    torch.manual_seed(0)
    p = torch.randn(10, 7)
    for opt_cls, kw in ((torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.01}),
                        (torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1})):
        ours, ref = p.clone().requires_grad_(), p.clone().requires_grad_()
        o_ours, o_ref = opt_cls([ours], **kw), opt_cls([ref], **kw)
        for step in range(3):
            g = 0.37 * (step + 1)
            z = torch.cat([z for _, z in directions(ref, 11 + step, 0, chunk=16)]).view_as(ref)
            ref.grad = g * z
            o_ref.step()
            with torch.no_grad():
                if opt_cls is torch.optim.SGD:
                    ZerothOrder().update(ours, 0, g, 11 + step, 16, o_ours.param_groups[0], o_ours)
                else:
                    adamw_update(ours, 0, g, 11 + step, 16, o_ours.param_groups[0], o_ours.state[ours])
        assert torch.allclose(ours, ref, atol=1e-6), opt_cls.__name__
