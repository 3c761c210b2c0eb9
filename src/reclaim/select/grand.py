"""GraNd: the gradient-norm score of Data Diet (Paul, Ganguli, Dziugaite, NeurIPS 2021, arXiv
2107.07075, Sec. 2): GraNd(x, y) = E_w ||grad_w loss(f_w(x), y)||_2 over independent runs,
at an early epoch or at initialisation. High = hard.

Here the parameters are those of a linear softmax head z = W h + b on the arm's frozen
features h (reclaim.select._frozen). For cross-entropy, dL/dz = p - e_y, so
dL/dW = (p - e_y) h^T and dL/db = p - e_y, and the per-example gradient norm has the closed
form ||(dL/dW, dL/db)||_2 = ||p - e_y||_2 * ||[h, 1]||_2: EL2N times the norm of the
head's input with a 1 for the bias. No per-example backward pass is needed (the unit tests
check it against autograd).

A framing that trains its networks from scratch (the image framing) returns the full
gradient norm over every parameter of the network instead (``Framing.train_for_scores``).

``epochs: 0`` is GraNd at initialisation, which Data Diet reports as already useful and
Kirsch (arXiv 2303.14753) finds no better than random (it tracks the input norm): keep it
as a negative control. Written from the paper's definition; no reference code is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from reclaim.select import _frozen
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class GrandParams(_frozen.HeadParams):
    pass


def grand_scores(h: np.ndarray, probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over runs of ||p - e_y|| * ||[h, 1]|| (probs: (runs, n, k), h: (n, d))."""
    input_norm = np.sqrt((h * h).sum(axis=1) + 1.0)
    return (_frozen.error_norm(probs, y) * input_norm).mean(axis=0)


class GrandSelector(Selector):
    Params = GrandParams
    orientation = "high = hard (mean per-example gradient norm of the head's loss over runs)"
    needs_labels = True
    needs_model = True
    seeded = False

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: GrandParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None:
            raise ValueError("grand scores with the arm's model; none was given")
        trained = _frozen.network_outputs(model, pool, params, "grand", grad_norms=True)
        if trained is not None:  # whole-network per-example gradients (images, from scratch)
            return trained[1].mean(axis=0).tolist()
        h, y, k = _frozen.head_inputs(model, pool, params, "grand")
        probs = _frozen.head_probs(h, y, k, params, "grand")
        return grand_scores(h, probs, y).tolist()


SELECTOR = GrandSelector()
