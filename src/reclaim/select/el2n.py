"""EL2N: the error L2-norm score of Data Diet (Paul, Ganguli, Dziugaite, NeurIPS 2021, arXiv
2107.07075, Sec. 2): EL2N(x, y) = E_w ||softmax(f_w(x)) - e_y||_2, the expectation over
independent training runs taken at an early epoch. High = hard (far from its label early in
training); Data Diet keeps the high scores (``subset: top``), Sorscher et al. (arXiv
2206.14486) the low ones when data is scarce (``subset: bottom``).

Here f_w is a linear softmax head on the arm's frozen encoder features, trained for
``epochs`` epochs from ``runs`` seeded initialisations (reclaim.select._frozen says why and
how); the score is the mean over runs. A framing that trains its networks from scratch (the
image framing) trains the whole network instead, as the paper does
(``Framing.train_for_scores``). For one-hot labels EL2N lies in [0, sqrt(2)].
Written from the paper's definition; no reference code is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reclaim.select import _frozen
from reclaim.select._base import ModelContext, Selector


@dataclass(frozen=True)
class El2nParams(_frozen.HeadParams):
    pass


class El2nSelector(Selector):
    Params = El2nParams
    orientation = "high = hard (mean ||softmax - onehot(y)||_2 over runs)"
    needs_labels = True
    needs_model = True
    seeded = False  # the runs' seeds are params: one scoring job serves every training seed

    def score(self, pool: list[dict[str, Any]], target: list[dict[str, Any]] | None, params: El2nParams,
              seed: int, model: ModelContext | None = None) -> list[float]:
        if model is None:
            raise ValueError("el2n scores with the arm's model; none was given")
        trained = _frozen.network_outputs(model, pool, params, "el2n")
        if trained is not None:  # the framing trains its own networks (images, from scratch)
            probs, _, y = trained
        else:
            h, y, k = _frozen.head_inputs(model, pool, params, "el2n")
            probs = _frozen.head_probs(h, y, k, params, "el2n")
        return _frozen.error_norm(probs, y).mean(axis=0).tolist()


SELECTOR = El2nSelector()
