"""Image classification with a CNN trained from scratch (no pretrained weights anywhere).

Architectures (``models.<name>.from_scratch.arch`` in params.yaml; reclaim.models resolves
such a model to kind ``scratch``: nothing is downloaded, the weights are a seeded init):

- ``cnn_small``: two 3x3 conv + ReLU + 2x2 max-pool blocks (16, 32 channels), a 64-unit
  hidden layer and the linear classifier; no batch norm. For smoke runs on CPU.
- ``resnet9``: the DAWNBench CIFAR-10 ResNet of Page ("How to train your ResNet", myrtle.ai
  blog, 2018; DAWNBench, Coleman et al. 2017): prep conv 64, [conv 128, pool, residual(2 x
  conv 128)], [conv 256, pool], [conv 512, pool, residual(2 x conv 512)], global max pool,
  linear classifier scaled by 0.125; every conv is 3x3 + batch norm + ReLU.
- ``resnet18``: He et al. (arXiv 1512.03385) ResNet-18 in the CIFAR form Data Diet trains
  (arXiv 2107.07075, Sec. 3): a 3x3 stem without max-pool, BasicBlocks [2, 2, 2, 2] at 64,
  128, 256, 512 channels, global average pool, linear classifier.

Written here: a few dozen lines of torch.nn, so no model zoo is needed.

Inputs: pixels / 255, normalised per channel by the task's train-split mean and std. No
augmentation (Data Diet's CIFAR-10 recipe uses crops and flips; not built yet).

Data Diet's scores (``train_for_scores``): the papers score with the network being trained
(arXiv 2107.07075, Sec. 2: EL2N and GraNd a few epochs into training, averaged over
independent runs). A randomly initialised CNN's features mean nothing for EL2N, so this framing
does what the paper does: for each run it trains the architecture from a seeded init for
``epochs`` epochs of SGD with momentum and weight decay on the pool, then takes the softmax
outputs (EL2N) and, when asked, the per-example norm of the gradient of the loss over every
parameter (GraNd; batch norm in eval mode). ``features`` (the penultimate
activations) serve the label-free prototype score; for a from-scratch model they are those of
the seeded init (no self-supervised image encoder is available offline).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from reclaim.framings._base import Framing, ScoringOutputs


def _conv_bn(c_in: int, c_out: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def build(arch: str, shape: tuple[int, int, int], num_classes: int) -> Any:
    """The network for ``arch``; weights drawn from torch's global generator (seed it first)."""
    import torch
    from torch import nn

    in_channels, height, width = shape

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.body = nn.Sequential(_conv_bn(c, c), _conv_bn(c, c))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x)

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.short = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.short(x))

    class Net(nn.Module):
        """``body`` maps images to the penultimate features, ``classifier`` to logits."""

        def __init__(self, body: nn.Module, dim: int, scale: float = 1.0, bias: bool = True) -> None:
            super().__init__()
            self.body = body
            self.classifier = nn.Linear(dim, num_classes, bias=bias)
            self.scale = scale

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.body(x)) * self.scale

    if arch == "cnn_small":
        body = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(32 * (height // 4) * (width // 4), 64), nn.ReLU())
        net = Net(body, 64)
    elif arch == "resnet9":
        body = nn.Sequential(_conv_bn(in_channels, 64),
                             _conv_bn(64, 128), nn.MaxPool2d(2), Residual(128),
                             _conv_bn(128, 256), nn.MaxPool2d(2),
                             _conv_bn(256, 512), nn.MaxPool2d(2), Residual(512),
                             nn.AdaptiveMaxPool2d(1), nn.Flatten())
        net = Net(body, 512, scale=0.125, bias=False)
    elif arch == "resnet18":
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        c = 64
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c, width, stride), BasicBlock(width, width, 1)]
            c = width
        body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        net = Net(body, 512)
    else:
        raise ValueError(f"unknown image architecture {arch!r} (known: {', '.join(ARCHS)})")
    return net


ARCHS = ("cnn_small", "resnet9", "resnet18")


class ImageClassification(Framing):
    name = "image_cls"
    modality = "image"
    from_scratch = True  # models.<name>.from_scratch: {arch}; no weights are loaded

    def load(self, model, task):  # type: ignore[no-untyped-def]
        """A freshly initialised network (the caller seeds torch first); no tokenizer."""
        if model.kind != "scratch":
            raise ValueError(f"model {model.name!r}: the image_cls framing builds its network from scratch; "
                             f"give models.{model.name}.from_scratch: {{arch: ...}} (got a {model.kind} model)")
        return build(model.location.split(":", 1)[1], task.shape, task.num_labels), _Normalizer(task)

    def head_modules(self, model):  # type: ignore[no-untyped-def]
        return ["classifier"]

    def encode(self, tokenizer, task, rows, max_length):  # type: ignore[no-untyped-def]
        return [{"pixels": r["pixels"], "label": int(r["label"])} for r in rows]

    def collate(self, tokenizer, items):  # type: ignore[no-untyped-def]
        import torch

        pixels = torch.from_numpy(np.stack([it["pixels"] for it in items]))
        return {"pixels": tokenizer(pixels), "labels": torch.tensor([it["label"] for it in items], dtype=torch.long)}

    def loss(self, model, batch):  # type: ignore[no-untyped-def]
        import torch.nn.functional as F

        return F.cross_entropy(model(batch["pixels"]).float(), batch["labels"])

    def example_losses(self, model, batch):  # type: ignore[no-untyped-def]
        import torch
        import torch.nn.functional as F

        losses = F.cross_entropy(model(batch["pixels"]).float(), batch["labels"], reduction="none")
        return losses, torch.ones_like(losses)

    def predict(self, model, batch):  # type: ignore[no-untyped-def]
        return model(batch["pixels"]).argmax(dim=-1)

    def features(self, model, batch):  # type: ignore[no-untyped-def]
        return model.features(batch["pixels"])

    def train_for_scores(self, model, task, rows, p, desc, grad_norms):  # type: ignore[no-untyped-def]
        """Data Diet's protocol (see the module docstring): per run r, a network from the seeded
        init ``(p.seed, r)`` trained ``p.epochs`` epochs of SGD on ``rows`` (in their given,
        canonical order, shuffled by a generator seeded the same way), then its softmax outputs
        and, with ``grad_norms``, the per-example gradient norms over all parameters."""
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        device = "cuda" if torch.cuda.is_available() else "cpu"
        norm = _Normalizer(task)
        x = norm(torch.from_numpy(np.stack([r["pixels"] for r in rows]))).to(device)
        y = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long).to(device)
        n, bs, eb = len(rows), p.batch_size, p.embed_batch_size
        probs, norms = [], []
        for run in tqdm(range(p.runs), desc=f"{desc}: {p.runs} networks x {p.epochs} epochs", mininterval=2.0):
            run_seed = int(np.random.SeedSequence([p.seed, run, 0x1A6E]).generate_state(1)[0])
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run_seed)
                net, _ = self.load(model, task)
            net.to(device)
            gen = torch.Generator().manual_seed(run_seed)
            opt = torch.optim.SGD(net.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
            net.train()
            for _ in range(p.epochs):
                order = torch.randperm(n, generator=gen).to(device)
                for s in range(0, n, bs):
                    idx = order[s:s + bs]
                    loss = F.cross_entropy(net(x[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            net.eval()
            with torch.no_grad():
                logits = torch.cat([net(x[s:s + eb]) for s in range(0, n, eb)])
            pr = torch.softmax(logits.double(), dim=-1).cpu().numpy()
            probs.append(pr)
            print(f"{desc}: run {run} network accuracy on the pool after {p.epochs} epochs: "
                  f"{100 * float((pr.argmax(1) == y.cpu().numpy()).mean()):.1f}%")
            if grad_norms:
                norms.append(per_example_grad_norms(net, x, y))
        return ScoringOutputs(np.stack(probs), np.stack(norms) if grad_norms else None)


def per_example_grad_norms(net: Any, x: Any, y: Any) -> np.ndarray:
    """||grad_theta CE(f_theta(x_i), y_i)||_2 over every parameter, per example: one plain
    backward pass per example (eval mode, so batch norm uses its running statistics and each
    example's gradient is its own). As fast as torch.func's vmap(grad) on CPU for these
    networks (measured) and nothing but autograd."""
    import torch
    import torch.nn.functional as F

    params = [p for p in net.parameters() if p.requires_grad]
    out = np.empty(len(y))
    for i in range(len(y)):
        grads = torch.autograd.grad(F.cross_entropy(net(x[i:i + 1]), y[i:i + 1]), params)
        out[i] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
    return out


class _Normalizer:
    """uint8 (N, C, H, W) -> float32, x / 255 standardised by the task's per-channel mean and std;
    stands where text framings keep their tokenizer."""

    def __init__(self, task: Any) -> None:
        self.mean = np.asarray(task.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(task.std, dtype=np.float32).reshape(1, -1, 1, 1)

    def __call__(self, pixels: Any) -> Any:
        import torch

        x = pixels.float() / 255.0
        return (x - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)


FRAMING = ImageClassification()
