"""Ladder Side-Tuning (reclaim.adapters.lst) on tiny-bert: the backbone gets no gradient and
keeps no activations, the gates stay in (0, 1), the pruned init keeps the largest-norm rows,
the output fits the framing, a saved model reloads to the same predictions, and widths that
do not fit are refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reclaim.adapters import get as get_adapter
from reclaim.adapters import lst
from reclaim.adapters._base import AdapterContext
from reclaim.memory import probe_steps
from reclaim.testing import _build_model, build_tokenizer


def tiny_bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = _build_model("bert", build_tokenizer("bert"))
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


def batch_of(model: nn.Module, b: int = 8, t: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[0, t // 2:] = 0  # one padded row: pooling and the side attention must mask it
    return {"input_ids": torch.randint(5, model.config.vocab_size, (b, t), generator=g),
            "attention_mask": mask, "labels": torch.randint(0, 2, (b,), generator=g)}


CTX = AdapterContext(loss_fn=None, train_batches=None, total_steps=4, head_modules=["classifier"], seed=0)  # type: ignore[arg-type]


def lst_model(raw: dict | None = None, seed: int = 0) -> nn.Module:
    ad = get_adapter("lst")
    return ad.apply(tiny_bert(seed), ad.make_params({"dropout": 0.0, **(raw or {})}), CTX)


def test_backbone_gets_no_gradient_and_is_off_the_graph() -> None:
    model = lst_model()
    backbone = {id(p) for n, p in model.model.named_parameters() if not n.startswith("classifier.")}
    out = model(**batch_of(model))
    # every leaf autograd reaches from the loss: only side network and head parameters
    leaves, stack, seen = set(), [out.loss.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            leaves.add(id(fn.variable))
        stack.extend(f for f, _ in fn.next_functions)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert leaves == trainable and not leaves & backbone
    out.loss.backward()
    assert all(p.grad is None for n, p in model.model.named_parameters() if not n.startswith("classifier."))
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def _probe(model: nn.Module, adapter: str) -> int:
    ad = get_adapter(adapter)
    opt = ad.optimizer(model, None, 1e-3, 0.0)
    batch = batch_of(model, b=16, t=64)
    model.train()

    def step(i: int) -> None:
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return probe_steps(model, opt, batch, step).peak_bytes


def test_step_memory_is_far_below_full_fine_tuning() -> None:
    full = tiny_bert()
    ft = _probe(get_adapter("full_ft").apply(full, None, CTX), "full_ft")
    side = _probe(lst_model(), "lst")
    # frozen backbone: no gradients or AdamW moments for it and no saved activations
    assert side < 0.5 * ft


def test_gates_are_in_the_open_unit_interval() -> None:
    model = lst_model()
    mu = model.side.gates()
    assert mu.shape == (2,) and torch.allclose(mu, torch.full((2,), 0.5))
    with torch.no_grad():
        model.side.gate_alpha.copy_(torch.tensor([-1.0, 1.0]))
    mu = model.side.gates()  # sigmoid(alpha / 0.1) = sigmoid(-+10): near 0 and 1, strictly inside
    assert bool(((mu > 0) & (mu < 1)).all()) and mu[0] < 1e-4 and mu[1] > 1 - 1e-4
    assert torch.allclose(mu, torch.sigmoid(torch.tensor([-10.0, 10.0])))


def test_pruned_init_keeps_the_largest_norm_rows() -> None:
    model = tiny_bert()
    layer = model.bert.encoder.layer[0]
    heads = 2  # tiny-bert: hidden 32, 2 heads of 16, FFN 64
    with torch.no_grad():
        for p in layer.parameters():
            p.mul_(0.01)
        # residual dims 3, 7, 20, 30 read by large query columns; FFN units 5, 9, ... large rows
        for j in (3, 7, 20, 30):
            layer.attention.self.query.weight[:, j] = 1.0
        for u in (5, 9, 40, 41, 50, 60, 61, 63):
            layer.intermediate.dense.weight[u] = 1.0
        # head 1 is the large one; within it dims 2 and 11 (absolute 18, 27)
        layer.attention.self.value.weight[16:] += 0.5
        layer.attention.self.value.weight[[18, 27]] = 3.0
    parts = lst._parts(layer, "layer 0")
    assert lst.residual_keep([parts], 4).tolist() == [3, 7, 20, 30]
    assert lst.ffn_keep(parts, 8).tolist() == [5, 9, 40, 41, 50, 60, 61, 63]
    assert lst.attention_keep(parts, heads, 1, 2).tolist() == [18, 27]
    # the side block holds exactly those rows and columns
    ad = get_adapter("lst")
    wrapped = ad.apply(model, ad.make_params({"layers": [0], "side_heads": 1}), CTX)
    rec, block = wrapped.side.prune_record, wrapped.side.blocks[0]
    res, att, ffn = rec["residual"], rec["attention"][0], rec["ffn"][0]
    assert res == [3, 7, 20, 30] and len(att) == 4 and {18, 27} <= set(att) <= set(range(16, 32))
    assert torch.equal(block.query.weight, layer.attention.self.query.weight[att][:, res])
    assert torch.equal(block.ffn_in.weight, layer.intermediate.dense.weight[ffn][:, res])
    assert torch.equal(block.ffn_out.weight, layer.output.dense.weight[res][:, ffn])
    assert torch.equal(block.ln_ffn.weight, layer.output.LayerNorm.weight[res])


def test_random_init_differs_from_pruned_and_outputs_fit_the_framing() -> None:
    from reclaim.framings import get as get_framing

    pruned, rand = lst_model(), lst_model({"init": "random"})
    assert not torch.equal(pruned.side.blocks[0].query.weight, rand.side.blocks[0].query.weight)
    framing = get_framing("encoder_cls")
    batch = batch_of(pruned)
    assert pruned(**{k: v for k, v in batch.items() if k != "labels"}).logits.shape == (8, 2)
    assert framing.predict(pruned, batch).shape == (8,)
    assert framing.loss(pruned, batch).ndim == 0


def test_regression_head_gets_one_output() -> None:
    from transformers import BertForSequenceClassification

    config = tiny_bert().config
    config.num_labels, config.problem_type = 1, "regression"
    torch.manual_seed(0)
    ad = get_adapter("lst")
    model = ad.apply(BertForSequenceClassification(config), ad.make_params({}), CTX)
    batch = {**batch_of(model), "labels": torch.linspace(0, 5, 8)}
    out = model(**batch)
    assert out.logits.shape == (8, 1) and out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_save_and_reload_reproduce_predictions(tmp_path) -> None:
    model = lst_model({"layers": [1]})
    batch = batch_of(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):  # move the side network and head away from their init
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    files = get_adapter("lst").save(model, model_params := get_adapter("lst").make_params(
        {"dropout": 0.0, "layers": [1]}), tmp_path)
    assert files == ["adapter_config.json", "lst_side.safetensors"] and model_params.layers == (1,)
    again = lst.load(tiny_bert(), tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
        assert not torch.equal(lst_model({"layers": [1]}).eval()(**batch).logits, again(**batch).logits)


@pytest.mark.parametrize("raw,message", [
    ({"reduction_factor": 5}, "reduction_factor 5 does not divide the hidden size 32"),
    ({"reduction_factor": 4, "side_heads": 3}, "side width 8 (hidden 32 / reduction_factor 4) does not split into 3"),
    ({"layers": [0, 2]}, "layer 2 does not exist (the backbone has 2 layers"),
    ({"reduction_factor": 1, "side_heads": 1}, "side head dim 32 (side width 32 / 1 heads) exceeds the backbone's"),
])
def test_widths_that_do_not_fit_are_refused_by_name(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lst_model(raw)


@pytest.mark.parametrize("raw,message", [
    ({"reduction_factor": 0}, "reduction_factor must be an integer >= 1"),
    ({"gate_temperature": 0.0}, "gate_temperature must be > 0"),
    ({"init": "fisher"}, "init must be one of prune, random"),
    ({"layers": []}, "layers must be a non-empty list"),
    ({"dropout": 1.0}, "dropout must be in"),
])
def test_params_refused(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_adapter("lst").make_params(raw)
