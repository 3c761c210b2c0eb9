"""Gradient-projection strategies (reclaim.optim: galore, fira, frugal) and 8-bit AdamW: the
update math against AdamW where it must agree, the projector bytes the memory probe counts,
checkpoint round trips, and the config's rank refusal."""

from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn

from reclaim import optim
from reclaim.memory import probe_steps
from reclaim.optim._base import StepContext
from reclaim.testing import _build_model, build_tokenizer


class Blocks(nn.Module):
    """One 'transformer block' holding a Linear (the projected weight) and a bias outside."""

    def __init__(self, n_in: int = 4, n_out: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([nn.Sequential(nn.Linear(n_in, n_out, bias=False))])
        self.bias = nn.Parameter(torch.randn(n_out))

    @property
    def weight(self) -> nn.Parameter:
        return self.layers[0][0].weight


def quadratic_loss(net: Blocks, c: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum(W * C) + |W - T|^2 / 2 + |b|^2: gradient C + (W - T), which is C at W = T."""
    return (net.weight * c).sum() + 0.5 * ((net.weight - target) ** 2).sum() + (net.bias ** 2).sum()


def run_steps(opt: torch.optim.Optimizer, net: Blocks, c: torch.Tensor, target: torch.Tensor, n: int) -> None:
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        quadratic_loss(net, c, target).backward()
        opt.step()


def build(name: str, net: nn.Module, raw: dict, lr: float = 1e-2, wd: float = 0.0) -> torch.optim.Optimizer:
    strategy = optim.get(name).fresh()
    return strategy.build_optimizer(net, strategy.make_params(raw), None, None, lr, wd)


def test_galore_at_full_rank_with_an_identity_projector_matches_adamw() -> None:
    """rank = the layer's width and scale 1: the projector is the first gradient's right
    singular vectors. That gradient is diagonal, so the projector is the identity up to signs
    and order, under which Adam's elementwise update is unchanged: GaLore is AdamW, step for
    step (the gradients after the first are not diagonal; the projector stays, T = 1000)."""
    net, ref = Blocks(), Blocks()
    target = net.weight.detach().clone()
    c = torch.zeros(6, 4)
    c[:4, :4] = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    galore = build("galore", net, {"rank": 4, "update_proj_gap": 1000, "scale": 1.0, "eps": 1e-12})
    adamw = torch.optim.AdamW(ref.parameters(), lr=1e-2, eps=1e-12, weight_decay=0.0)
    run_steps(galore, net, c, target, 1)
    proj = galore.state[net.weight]["projector"].ortho_matrix
    assert torch.allclose(proj.abs(), torch.eye(4), atol=1e-6)  # a signed identity
    run_steps(adamw, ref, c, target, 1)
    run_steps(galore, net, c, target, 5)
    run_steps(adamw, ref, c, target, 5)
    assert not torch.allclose(net.weight, target)
    assert torch.allclose(net.weight, ref.weight, atol=1e-6, rtol=1e-5)
    assert torch.allclose(net.bias, ref.bias, atol=1e-6, rtol=1e-5)


def test_galore_full_rank_projection_is_lossless_and_low_rank_is_not() -> None:
    g = torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    from galore_torch.galore_projector import GaLoreProjector

    full, low = GaLoreProjector(5, scale=1.0), GaLoreProjector(2, scale=1.0)
    assert torch.allclose(full.project_back(full.project(g, 0)), g, atol=1e-5)
    assert not torch.allclose(low.project_back(low.project(g, 0)), g, atol=1e-2)


def test_frugal_all_columns_is_adamw_and_rank_zero_is_sign_sgd() -> None:
    c = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    net, ref = Blocks(), Blocks()
    target = net.weight.detach().clone() + 0.3
    frugal = build("frugal", net, {"rank": 4, "proj_type": "columns", "update_gap": 1000})
    adamw = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.0)
    run_steps(frugal, net, c, target, 4)
    run_steps(adamw, ref, c, target, 4)
    assert torch.allclose(net.weight, ref.weight, atol=1e-6) and torch.allclose(net.bias, ref.bias, atol=1e-6)
    # rank 0: the projected weight moves by -lr * inactive_lr_scale * sign(gradient)
    net = Blocks()
    w0 = net.weight.detach().clone()
    frugal = build("frugal", net, {"rank": 0, "inactive_lr_scale": 0.1})
    quadratic_loss(net, c, target).backward()
    grad = net.weight.grad.clone()
    frugal.step()
    assert torch.allclose(net.weight, w0 - 1e-2 * 0.1 * grad.sign())


def test_frugal_resets_adam_state_when_the_subspace_changes() -> None:
    net = Blocks()
    c = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    frugal = build("frugal", net, {"rank": 2, "proj_type": "columns", "update_gap": 3})
    run_steps(frugal, net, c, net.weight.detach().clone(), 3)
    state = frugal.state[net.weight]
    assert state["adam_step"] == 3 and state["exp_avg"].shape == (6, 2)
    run_steps(frugal, net, c, net.weight.detach().clone(), 1)  # step 3: a new subspace, fresh moments
    assert state["adam_step"] == 1


def _tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    model = _build_model("bert", build_tokenizer("bert"))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def _probe(name: str, raw: dict | None = None):
    model = _tiny_bert()
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": torch.randint(5, model.config.vocab_size, (4, 16), generator=g),
             "attention_mask": torch.ones(4, 16, dtype=torch.long), "labels": torch.randint(0, 2, (4,), generator=g)}
    from reclaim.adapters import get as get_adapter

    adapter = get_adapter("full_ft")  # the adamw strategy builds the adapter's own optimizer
    strategy = optim.get(name).fresh()
    params = strategy.make_params(raw)
    opt = strategy.build_optimizer(model, params, adapter, adapter.make_params({}), 1e-3, 0.0)

    def loss_fn(m: nn.Module, b: dict, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss = m(**b).loss
        return loss, loss

    ctx = StepContext(loss_fn, 0.0, 0)

    def step(i: int) -> None:
        strategy.step(model, batch, opt, params, i, ctx)
        opt.zero_grad(set_to_none=True)

    res = probe_steps(model, opt, batch, step, lambda: strategy.extra_state(opt))
    return res, model, opt, strategy, params


def _projected(model: nn.Module) -> list[nn.Parameter]:
    from reclaim.optim._lowrank import projected_weights

    return projected_weights(model)


def test_galore_projectors_are_counted_as_extra_state_at_their_own_size() -> None:
    res, model, opt, strategy, params = _probe("galore", {"rank": 8})
    projected = _projected(model)
    # tiny-bert: 2 blocks x (q, k, v, attention output, intermediate, output) Linear weights
    assert len(projected) == 12
    want = sum(8 * min(p.shape) * 4 for p in projected)  # r x (smaller side), fp32
    assert res.extra_state_bytes == want
    mats = strategy.extra_state(opt)
    assert len(mats) == 12 and all(t.untyped_storage().nbytes() == t.numel() * 4 for t in mats)
    # the walk of optimizer.state does not see them: moments only, r-wide for projected weights
    for p in projected:
        assert opt.state[p]["exp_avg"].numel() == 8 * max(p.shape)
    acc = strategy.paper_accounting(model, opt, params)
    assert acc["state_bytes"] == 2 * (2 * sum(8 * max(p.shape) for p in projected) + want // 4)
    assert acc["weight_bytes"] == 2 * sum(p.numel() for p in model.parameters())
    fira = _probe("fira", {"rank": 8})[0]
    # Fira: GaLore's state plus one scalar (the limiter's last norm) per projected matrix
    assert fira.extra_state_bytes == want and fira.opt_state_bytes == res.opt_state_bytes + 12 * 4


@pytest.mark.parametrize("proj_type", ["svd", "columns"])
def test_frugal_state_is_at_most_galores_at_equal_rank(proj_type: str) -> None:
    galore = _probe("galore", {"rank": 8})[0]
    frugal = _probe("frugal", {"rank": 8, "proj_type": proj_type})[0]
    assert frugal.extra_state_bytes == 0  # its projector is a tensor of optimizer.state
    assert frugal.opt_state_bytes <= galore.opt_state_bytes + galore.extra_state_bytes
    if proj_type == "svd":  # same moments, same projector
        assert frugal.opt_state_bytes == galore.opt_state_bytes + galore.extra_state_bytes
    adamw = _probe("adamw")[0]
    assert frugal.opt_state_bytes < adamw.opt_state_bytes


def test_adamw8bit_steps_on_cpu_with_uint8_moments() -> None:
    # tiny-bert's tensors are all under bitsandbytes' default 4096-element floor for 8-bit state
    res, model, opt, _, _ = _probe("adamw8bit", {"min_8bit_size": 256})
    adamw = _probe("adamw")[0]
    emb = model.bert.embeddings.word_embeddings.weight
    assert emb.numel() >= 256
    assert opt.state[emb]["state1"].dtype == torch.uint8 and opt.state[emb]["state2"].dtype == torch.uint8
    assert not torch.equal(emb, _tiny_bert().bert.embeddings.word_embeddings.weight)
    assert res.opt_state_bytes < 0.5 * adamw.opt_state_bytes


@pytest.mark.parametrize("name,raw", [
    ("galore", {"rank": 2, "update_proj_gap": 3, "scale": 0.5}),
    ("fira", {"rank": 2, "update_proj_gap": 3}),
    ("frugal", {"rank": 2, "update_gap": 3, "proj_type": "columns"}),
    ("frugal", {"rank": 2, "update_gap": 3}),
])
def test_optimizer_state_round_trips_through_a_weights_only_checkpoint(name: str, raw: dict) -> None:
    """What reclaim.checkpoint does (torch.save, then torch.load(weights_only=True)): the
    projectors survive, and the continued run equals the uninterrupted one across a refresh."""
    c = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    net = Blocks()
    target = net.weight.detach().clone() + 0.2
    opt = build(name, net, raw)
    run_steps(opt, net, c, target, 4)
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "weights": {k: v.clone() for k, v in net.state_dict().items()}}, buf)
    run_steps(opt, net, c, target, 4)  # crosses the refresh at step 6
    buf.seek(0)
    blob = torch.load(buf, weights_only=True)
    net2 = Blocks()
    net2.load_state_dict(blob["weights"])
    opt2 = build(name, net2, raw)
    opt2.load_state_dict(blob["optimizer"])
    run_steps(opt2, net2, c, target, 4)
    assert torch.equal(net.weight, net2.weight) and torch.equal(net.bias, net2.bias)


@pytest.mark.parametrize("name,raw,message", [
    ("galore", {"rank": 0}, "rank must be >= 1"),
    ("galore", {"update_proj_gap": 0}, "update_proj_gap must be >= 1"),
    ("galore", {"proj_type": "diagonal"}, "proj_type must be one of"),
    ("fira", {"alpha": 0}, "alpha must be > 0"),
    ("frugal", {"rank": -1}, "rank must be >= 0"),
    ("frugal", {"inactive_lr_scale": -0.1}, "inactive_lr_scale must be >= 0"),
    ("adamw8bit", {"min_8bit_size": 0}, "min_8bit_size must be >= 1"),
])
def test_projection_params_refused(name: str, raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optim.get(name).make_params(raw)


@pytest.mark.parametrize("method", ["galore_r8", "fira_r8", "frugal_r8"])
def test_config_refuses_a_rank_wider_than_the_model(tiny_models, method: str) -> None:
    from reclaim.config import REPO_ROOT, ConfigError, load_yaml, validate

    cfg = json.loads(json.dumps(load_yaml(REPO_ROOT / "params.yaml")))
    cfg["models"]["tiny-bert"] = {"framing": "encoder_cls", "local_dir": str(tiny_models["bert"])}
    cfg["methods"][method]["optimizer"]["params"]["rank"] = 33  # tiny-bert: hidden 32, MLP 64
    cfg["claims"]["galore_memory"]["scales"]["smoke"]["models"] = ["tiny-bert"]
    with pytest.raises(ConfigError) as err:
        validate(cfg, "params.yaml")
    msg = str(err.value)
    assert f"claims.galore_memory.arms.{method} (scale smoke, model 'tiny-bert')" in msg
    assert f"methods.{method}.optimizer.params" in msg and "rank 33 is larger than the model's hidden width 32" in msg


def test_a_rank_wider_than_a_layer_is_refused_in_the_job_naming_it() -> None:
    with pytest.raises(ValueError, match=r"rank 5 is larger than layers\.0\.0\.weight \(6 x 4, width 4\)"):
        build("galore", Blocks(), {"rank": 5})
