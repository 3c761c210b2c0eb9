"""LoRA-GA as PEFT implements it (``init_lora_weights="lora_ga"``, PEFT >= 0.19), kept beside
the paper's formulation (``lora_ga``) so the table shows both: PEFT takes A = V[:, :r]^T,
B = U[:, r:2r] diag(S[r:2r]) and applies the stable factor m^(1/4)/sqrt(gamma) to B only.

PEFT computes the SVD itself (``torch.svd_lowrank(grad, q=4r, niter=4)`` inside
``LoraLayer.loraga_init``), and like the paper's version it pairs v_1..v_r with u_(r+1)..u_2r,
so the backend's sign choice and the global RNG's test matrix would change the init. While
PEFT initialises the layers, ``torch.svd_lowrank`` is therefore routed to
:func:`reclaim.linalg.svd_lowrank_signed` (same algorithm and arguments; float64, signs by the
module's convention, test matrix seeded with the run's seed); the rest is PEFT's code.
The shared params' ``svd_niter`` and ``exact_svd`` do not apply: PEFT fixes q = 4r, niter = 4."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from reclaim.adapters._lora import ResidualLoraAdapter, linear_targets
from reclaim.adapters.lora_ga import LoraGAParams
from reclaim.linalg import svd_lowrank_signed


@contextlib.contextmanager
def signed_svd_lowrank(seed: int) -> Iterator[None]:
    """Within the block, ``torch.svd_lowrank(A, q, niter)`` returns reclaim.linalg's seeded,
    sign-normalised randomised SVD (U, S, V as torch does), computed in float64 and returned
    in A's dtype. Other callers (``M`` given) get torch's own."""
    import torch

    original = torch.svd_lowrank

    def svd_lowrank(A: torch.Tensor, q: int | None = 6, niter: int | None = 2,
                    M: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if M is not None:
            return original(A, q=q, niter=niter, M=M)
        q = 6 if q is None else q
        niter = 2 if niter is None else niter
        U, S, Vh = svd_lowrank_signed(A, q, niter=niter, seed=seed, dtype=torch.float64)
        return U.to(A.dtype), S.to(A.dtype), Vh.mT.to(A.dtype)

    torch.svd_lowrank = svd_lowrank  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.svd_lowrank = original


class PeftLoraGAAdapter(ResidualLoraAdapter):
    Params = LoraGAParams
    use_rslora = True

    def init_lora_weights(self, params: Any) -> bool | str:
        return "lora_ga"

    def apply(self, model, params, ctx):  # type: ignore[no-untyped-def]
        from peft import get_peft_model
        from peft.tuners.lora.config import LoraGAConfig
        from peft.tuners.lora.loraga import preprocess_loraga

        config = self.lora_config(
            model, params, ctx,
            lora_ga_config=LoraGAConfig(direction="ArB2r", scale="stable", stable_gamma=int(params.gamma)),
        )
        config.target_modules = set(linear_targets(model, params.target_modules, ctx.head_modules))

        def train_step() -> None:
            # PEFT divides the accumulated gradient by the number of backward calls
            for batch in ctx.train_batches(params.grad_examples, params.grad_batch_size):
                ctx.loss_fn(model, batch).backward()

        was_training = model.training
        model.eval()
        preprocess_loraga(model, config, train_step)
        model.train(was_training)
        with signed_svd_lowrank(ctx.seed):
            model = get_peft_model(model, config)
        self.record_initial(model)
        return model


ADAPTER = PeftLoraGAAdapter()
