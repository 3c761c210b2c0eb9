"""PiSSA (Meng et al., arXiv 2404.02948, sec. 3): A and B from the top-r singular triplets of
W (B = U_r S_r^1/2, A = S_r^1/2 V_r^T), the base keeps the residual W - sBA. PEFT implements
it faithfully (``init_lora_weights="pissa"``, or ``pissa_niter_k`` for the fast SVD)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.adapters._lora import LoraParams, ResidualLoraAdapter


@dataclass(frozen=True)
class PissaParams(LoraParams):
    svd_niter: int | None = None  # None: exact SVD; k: randomised SVD with k subspace iterations


class PissaAdapter(ResidualLoraAdapter):
    Params = PissaParams

    def init_lora_weights(self, params: Any) -> bool | str:
        return "pissa" if params.svd_niter is None else f"pissa_niter_{params.svd_niter}"

    def apply(self, model, params, ctx):  # type: ignore[no-untyped-def]
        model = super().apply(model, params, ctx)
        self.record_initial(model)
        return model


ADAPTER = PissaAdapter()
