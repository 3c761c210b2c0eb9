"""How well a selection serves a multimodal target (TAROT, Feng et al., arXiv 2412.00420,
Sec. 4: the model trained on the selection is evaluated on the target domains; the OT
distance between selection and target is the quantity TAROT minimises).

Measured on the held-out target (a disjoint draw of the same mixture as the target the
selector saw), in the arm's frozen encoder space (``needs_model``: the scale's
``score_with`` model):

- ``accuracy``: a multinomial logistic regression (scikit-learn, lbfgs, deterministic) on the
  selected candidates' standardised frozen embeddings and their joint (task, label) classes,
  on the held-out target; ``accuracy/<task>`` per mode. A mode whose task is absent from the
  selection cannot be predicted, so collapsing onto the dominant mode costs accuracy.
- ``ot_heldout``: the entropic OT cost (POT, log-domain Sinkhorn, uniform weights) between
  the selection and the held-out target on unit embeddings, d = sqrt(2 - 2 cos). This is a
  neutral space, not the gradient space the selectors work in, so no arm is scored by its
  own objective. ``ot_target_heldout`` (the target sample itself) is its floor.
- ``share/<task>`` (selection) against ``target_share/<task>``, and ``coverage_min`` =
  min over modes of min(1, share / target share): 1 when every mode is represented at
  least in its target proportion.
- ``ratio`` = selected / pool (OTM's estimated selection ratio; the budget for the others).
- ``accuracy_target_trained``: the same classifier trained on the target sample itself, a
  reference for what the target's own labels give.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from reclaim.io import read_jsonl
from reclaim.select._base import ModelContext, read_table


@dataclass(frozen=True)
class TargetMixtureParams:
    label_key: str = "joint_label"
    mode_key: str = "task"
    C: float = 1.0               # inverse L2 strength of the logistic regression
    max_iter: int = 1000
    reg: float = 0.05            # Sinkhorn epsilon for ot_heldout (distances lie in [0, 2])
    max_length: int = 128
    embed_batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.C, (int, float)) or self.C <= 0:
            raise ValueError(f"C must be > 0, got {self.C!r}")
        if not isinstance(self.max_iter, int) or self.max_iter < 10:
            raise ValueError(f"max_iter must be an integer >= 10, got {self.max_iter!r}")
        if not isinstance(self.reg, (int, float)) or self.reg <= 0:
            raise ValueError(f"reg must be > 0, got {self.reg!r}")
        for key in ("label_key", "mode_key"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ValueError(f"{key} must be a row key, got {getattr(self, key)!r}")


def fit_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, c: float, max_iter: int) -> np.ndarray:
    """Logistic regression on standardised features; a one-class training set predicts that class."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    if len(np.unique(ytr)) == 1:
        return np.full(len(xte), ytr[0])
    clf = LogisticRegression(C=c, max_iter=max_iter)
    clf.fit((xtr - mu) / sd, ytr)
    return clf.predict((xte - mu) / sd)


def unit_ot(a: np.ndarray, b: np.ndarray, reg: float) -> float:
    from reclaim.select._tarot import ot_distance, unit_rows

    cost = np.sqrt(np.clip(2.0 - 2.0 * unit_rows(a) @ unit_rows(b).T, 0.0, None))
    return ot_distance(cost, reg)


def mixture_metrics(xs: np.ndarray, ys: np.ndarray, modes_s: list[str], xt: np.ndarray, yt: np.ndarray,
                    xh: np.ndarray, yh: np.ndarray, modes_h: list[str], p: TargetMixtureParams) -> dict[str, Any]:
    """The metrics from features: selection (xs, ys, modes), target sample (xt, yt), held-out (xh, yh, modes)."""
    pred = fit_predict(xs, ys, xh, p.C, p.max_iter)
    out: dict[str, Any] = {"accuracy": float((pred == yh).mean())}
    mh = np.array(modes_h)
    tasks = sorted(set(modes_h))
    cover = []
    for t in tasks:
        m = mh == t
        out[f"accuracy/{t}"] = float((pred[m] == yh[m]).mean())
        share = sum(x == t for x in modes_s) / len(modes_s)
        tshare = float(m.mean())
        out[f"share/{t}"], out[f"target_share/{t}"] = share, tshare
        cover.append(min(1.0, share / tshare))
    out["coverage_min"] = float(min(cover))
    out["ot_heldout"] = unit_ot(xs, xh, p.reg)
    out["ot_target_heldout"] = unit_ot(xt, xh, p.reg)
    out["accuracy_target_trained"] = float((fit_predict(xt, yt, xh, p.C, p.max_iter) == yh).mean())
    return out


class TargetMixture:
    Params = TargetMixtureParams
    inputs = ("subset", "pool", "target", "heldout")
    needs_model = True  # frozen embeddings of the scale's score_with model

    def make_params(self, raw: dict[str, Any] | None) -> TargetMixtureParams:
        return TargetMixtureParams(**(raw or {}))

    def evaluate(self, inputs: dict[str, str], params: TargetMixtureParams,
                 model: ModelContext | None = None) -> dict[str, Any]:
        from reclaim.select import _frozen
        from reclaim.select._tarot import row_labels

        if model is None:
            raise ValueError("target_mixture embeds with the scale's score_with model; none was given")
        need = ("example_id", params.label_key, params.mode_key)
        pool = read_jsonl(inputs["pool"], need)
        target = read_jsonl(inputs["target"], need)
        heldout = read_jsonl(inputs["heldout"], need)
        kept = set(read_table(inputs["subset"], "weight"))
        unknown = kept - {r["example_id"] for r in pool}
        if unknown:
            raise ValueError(f"{inputs['subset']}: {len(unknown)} example ids are not in {inputs['pool']}")
        sel = sorted((r for r in pool if r["example_id"] in kept), key=lambda r: r["example_id"])
        ep = _frozen.EmbedParams(max_length=params.max_length, embed_batch_size=params.embed_batch_size)
        h = _frozen.embed(model, sel + target + heldout, ep, "target_mixture")
        ns, nt = len(sel), len(target)
        out = mixture_metrics(
            h[:ns], row_labels(sel, params.label_key, "selection"), [r[params.mode_key] for r in sel],
            h[ns:ns + nt], row_labels(target, params.label_key, "target"),
            h[ns + nt:], row_labels(heldout, params.label_key, "heldout"), [r[params.mode_key] for r in heldout],
            params)
        out.update(n_selected=ns, n_pool=len(pool), ratio=ns / len(pool), n_target=nt, n_heldout=len(heldout),
                   protocol={"classifier": "logistic regression on frozen embeddings", "model": model.identity.get("name"),
                             **asdict(params)})
        return out


EVALUATOR = TargetMixture()
