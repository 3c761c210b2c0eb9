"""Low-rank compensation of an earlier compress step's error, shared by ``svd_comp`` and
``eora`` (Liu et al., arXiv 2410.21271, Sec. 3; ZeroQuant-V2, arXiv 2303.08302, Sec. 5 "LoRC").

Runs as a compress step after another compress step: with W the weights that step compressed
(``original``) and W_c its output (the model being rewritten), each block Linear gets rank-r
factors B (out x r), A (r x in) with W_c + BA ~ W. The subclass says how (``factors``: plain
SVD of dW = W - W_c, or EoRA's eigenspace projection, which needs calibration inputs).

Outputs: the model directory holds the dense W_c + BA (what the perplexity evaluator scores),
and ``model/adapter/`` the same factors in PEFT's LoRA layout (``adapter_model.safetensors``,
``adapter_config.json``; rank r, alpha = r so PEFT's scaling alpha/r is 1, target modules the
block Linears by full name), so ``PeftModel.from_pretrained(compressed_base, adapter_dir)``
computes W_c x + B(Ax): the deployed form, and the start of LoRA fine-tuning from these factors.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclaim.compress._base import Compressor, weight_error
from reclaim.compress._blocks import (
    block_inputs,
    block_linears,
    capture_linear_inputs,
    compressible_linears,
    decoder_blocks,
    linear_stages,
    run_block,
)
from reclaim.compress._torch import no_grad, torch

ADAPTER_DIR = "adapter"


@dataclass(frozen=True)
class LowRankParams:
    rank: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank!r}")


class SecondMoment:
    """Running ``C = (1/N) sum x x^T`` over calibration tokens, in float64 (EoRA eigendecomposes
    it, and rounding in C turns into error along its smallest eigenvalues)."""

    def __init__(self, width: int) -> None:
        self.c = torch.zeros(width, width, dtype=torch.float64)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).double()
        m = x.shape[0]
        self.c *= self.n / (self.n + m)
        self.n += m
        self.c += x.t() @ x / self.n


@contextmanager
def lapack_threads(n: int, limit: int = 1024):  # type: ignore[no-untyped-def]
    """One torch thread for decompositions of matrices up to ``limit`` wide. Measured on the
    shared 2-core machine at load ~8: a 576^2 float64 eigh takes 0.5 s on one thread and 3-11 s
    on two (threads spinning on busy cores); wider matrices keep the job's threads."""
    before = torch.get_num_threads()
    if n <= limit:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def top_svd(a: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-``rank`` singular triplets of ``a`` (float64), exactly, from the eigendecomposition
    of the Gram matrix of its short side (a^T a or a a^T; reclaim.linalg.eigh_signed), with the
    other side's vectors as a v / s: one eigh of min(out, in)^2 instead of a full SVD, which is
    what keeps 210 layers x several ranks within the CPU budget. Signs by reclaim.linalg's
    convention. Singular values below sqrt(eps) * s_max are where the Gram route loses
    precision; their vectors get zero weight (s set to 0), which only matters at ranks beyond
    the matrix's numerical rank."""
    from reclaim.linalg import eigh_signed, fix_svd_signs

    x = a.double()
    tall = x.shape[0] >= x.shape[1]
    with lapack_threads(min(x.shape)):
        lam, vecs = eigh_signed(x.t() @ x if tall else x @ x.t(), dtype=torch.float64)
    lam, vecs = lam.flip(0)[:rank].clamp(min=0), vecs.flip(1)[:, :rank]
    s = lam.sqrt()
    keep = s > s.max().clamp(min=1e-300) * torch.finfo(torch.float64).eps ** 0.5
    inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
    s = torch.where(keep, s, torch.zeros_like(s))
    if tall:  # vecs = V: U = a V / s
        u, vh = (x @ vecs) * inv, vecs.t()
    else:  # vecs = U: V^T = (U^T a) / s
        u, vh = vecs, (vecs.t() @ x) * inv[:, None]
    return fix_svd_signs(u, s, vh)


def expected_error(dw: torch.Tensor, b: torch.Tensor, a: torch.Tensor, c: torch.Tensor) -> float:
    """E_x ||(dW - BA) x||^2 = tr((dW - BA) C (dW - BA)^T) for inputs with second moment C."""
    r = dw.double() - b.double() @ a.double()
    return float((r @ c.double() * r).sum())


def output_errors(w: torch.Tensor, wc: torch.Tensor, new: torch.Tensor, h: torch.Tensor) -> dict[str, float]:
    """reclaim.compress._base.output_error of the base (``wc``) and of the compensated weights,
    sharing the denominator tr(W H W^T): these float64 products are a fifth of an EoRA job."""
    wd, hd = w.double(), h.double()
    den = ((wd @ hd) * wd).sum().clamp(min=1e-30)

    def rel(w_hat: torch.Tensor) -> float:
        d = wd - w_hat.double()
        return float(((d @ hd) * d).sum() / den)

    return {"base_output_error": rel(wc), "output_error": rel(new)}


class LowRankCompensator(Compressor):
    Params = LowRankParams
    quantizes = False
    needs_original = True
    width_hint = "a layer's rank is at most min(out, in): pick a smaller rank"

    def factors(self, dw: torch.Tensor, cov: torch.Tensor | None, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, A) in float64 for dW = W - W_c (out x in), ``cov`` its input second moment."""
        raise NotImplementedError

    def widths_ok(self, params: Any, widths: dict[str, int]) -> list[str]:
        """The rank fits every known layer width (a layer's rank is at most min(out, in)); the job
        checks every layer's own shape, by name, too (grouped-query k/v projections are narrower)."""
        return [f"rank {params.rank} exceeds the {name} width {w}" for name, w in widths.items() if params.rank > w]

    @no_grad
    def compress(self, model: torch.nn.Module, calibration: list[torch.Tensor] | None, params: LowRankParams,
                 seed: int, original: torch.nn.Module | None = None, base: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
        if original is None:
            raise ValueError(f"{type(self).__name__}: needs the model the earlier compress step compressed")
        orig, comp = compressible_linears(original), compressible_linears(model)
        if set(orig) != set(comp):
            raise ValueError("low-rank compensation: the compressed model's block Linears differ from the original's")
        for name, lin in comp.items():
            if tuple(lin.weight.shape) != tuple(orig[name].weight.shape):
                raise ValueError(f"low-rank compensation: layer {name!r} changed shape "
                                 f"{tuple(orig[name].weight.shape)} -> {tuple(lin.weight.shape)}")
            if params.rank > min(lin.weight.shape):
                raise ValueError(f"rank {params.rank} exceeds layer {name!r}'s smaller dimension "
                                 f"{min(lin.weight.shape)} (shape {tuple(lin.weight.shape)})")
        base_layers = ((base or {}).get("record") or {}).get("layers", {})
        per_layer: dict[str, Any] = {}
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def compensate(name: str, lin: torch.nn.Linear, cov: torch.Tensor | None) -> None:
            w, wc = orig[name].weight, lin.weight
            dw = w.double() - wc.double()
            b, a = self.factors(dw, cov, params.rank)
            new = (wc.double() + b @ a).to(wc.dtype)
            out, inp = wc.shape
            rec: dict[str, Any] = {"rank": params.rank, "base_weight_error": weight_error(w, wc),
                                   "weight_error": weight_error(w, new)}
            if cov is not None:
                rec.update(output_errors(w, wc, new, cov))
            prior = base_layers.get(name, {}).get("stored_bits")
            if prior is not None:  # the base's storage plus the fp16 factors, per original weight
                rec["stored_bits"] = prior + 16 * params.rank * (out + inp) / (out * inp)
            if base_layers.get(name, {}).get("sparsity") is not None:
                rec["base_sparsity"] = base_layers[name]["sparsity"]
            per_layer[name] = rec
            factors[name] = (a.float().contiguous(), b.float().contiguous())
            wc.copy_(new)

        if self.needs_calibration:
            # sequential (EoRA Sec. 3): block i's inputs come from the already compensated blocks
            path, blocks = decoder_blocks(model)
            hidden, block_kwargs = block_inputs(model, calibration or [])
            for i, block in enumerate(blocks):
                kwargs = block_kwargs[i]
                lins = block_linears(block)
                # q/k/v (gate/up) see one input: one C accumulated, one object (the eigh is shared)
                stages = linear_stages(block, hidden[0], kwargs[0]) if hidden else [[n] for n in lins]
                acc = {}
                for stage in stages:
                    moment = SecondMoment(lins[stage[0]].in_features)
                    acc.update(dict.fromkeys(stage, moment))
                firsts = [stage[0] for stage in stages]
                capture_linear_inputs(block, firsts, hidden, kwargs, lambda n, x, acc=acc: acc[n].add(x))
                for n, lin in lins.items():
                    compensate(f"{path}.{i}.{n}", lin, acc[n].c)
                hidden = run_block(block, hidden, kwargs)
        else:
            for name, lin in comp.items():
                compensate(name, lin, None)
        return {"layers": per_layer, "rank": params.rank,
                "adapter": {"dir": f"model/{ADAPTER_DIR}", "layout": "peft lora", "r": params.rank,
                            "lora_alpha": params.rank, "target_modules": len(factors)},
                "_outputs": {"rank": params.rank, "factors": factors,
                             "causal_lm": type(model).__name__.endswith("ForCausalLM")}}

    def write_outputs(self, model_dir: Any, outputs: Any) -> None:
        write_peft_adapter(Path(model_dir) / ADAPTER_DIR, outputs["factors"], outputs["rank"], outputs["causal_lm"])


def write_peft_adapter(out: Path, factors: dict[str, tuple[torch.Tensor, torch.Tensor]], rank: int,
                       causal_lm: bool = True) -> None:
    """PEFT's LoRA layout: ``base_model.model.<module>.lora_A.weight`` (r x in) and ``lora_B``
    (out x r), with a config whose alpha equals r (scaling 1)."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, (a, b) in factors.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = a
        tensors[f"base_model.model.{name}.lora_B.weight"] = b
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    LoraConfig(r=rank, lora_alpha=rank, target_modules=sorted(factors), lora_dropout=0.0, bias="none",
               task_type="CAUSAL_LM" if causal_lm else None).save_pretrained(str(out))
