"""Image classification tasks: Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv 1708.07747) and
CIFAR-10 (Krizhevsky 2009), the data papers' own setting (Data Diet, arXiv 2107.07075, Sec. 3:
CIFAR-10; TAROT and Data Shapley report image tasks too).

Sources, first found wins: a directory given in params (``data.fashion_mnist_dir``,
``data.cifar10_dir``; the env variables ``FASHION_MNIST_DIR`` / ``CIFAR10_DIR`` override
them, like ``GLUE_DIR``), then the task's default directory (Debian's
``dataset-fashion-mnist`` package installs the IDX files under
``/usr/share/datasets/fashion-mnist``), then the Hugging Face Hub (``datasets``, which
honours ``HF_HUB_OFFLINE=1``).

- Fashion-MNIST: the IDX files (``{train,t10k}-{images-idx3,labels-idx1}-ubyte``, gzipped
  or not). IDX (LeCun et al., the MNIST page): two zero bytes, a type byte (0x08 = unsigned
  byte), the number of dimensions, then each dimension as a big-endian uint32, then the data.
  Read here with the standard library; torchvision's reader would add a dependency for 20
  lines.
- CIFAR-10: the "python version" batches (``data_batch_1..5``, ``test_batch``: pickled dicts
  with ``data`` (N, 3072) uint8, channel-major, and ``labels``), read with an unpickler that
  only lets NumPy arrays through (a pickle can run code; these files come from outside).

The ``dev`` split of an image task is its test split (Fashion-MNIST ``t10k``, CIFAR-10
``test_batch``): the papers report test accuracy, and the workflow calls the evaluation split
``dev`` for every task. Each split becomes one canonical ``.npz``: ``pixels`` (N, C, H, W)
uint8, ``labels`` int64, ``example_ids`` (blake2b over task, split, the pixel bytes and the
label; reclaim.data.example_ids) and ``idx`` (the row in the source).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "dev")


@dataclass(frozen=True)
class ImageTask:
    name: str
    shape: tuple[int, int, int]             # (channels, height, width)
    label_names: tuple[str, ...]
    mean: tuple[float, ...]                 # per-channel mean / std of the train split, pixels in [0, 1]
    std: tuple[float, ...]
    env: str                                # the env variable naming a local directory
    config_key: str                         # data.<key> in params.yaml
    hub_id: str
    hub_splits: dict[str, str]
    hub_image_column: str
    default_dirs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("accuracy",)
    modality: str = "image"
    is_regression: bool = False
    files: dict[str, str] = field(default_factory=lambda: {s: s for s in SPLITS})

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


TASKS: dict[str, ImageTask] = {
    t.name: t
    for t in [
        # mean/std: measured on the 60k Debian IDX train images (x / 255)
        ImageTask("fashion_mnist", (1, 28, 28),
                  ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot"),
                  (0.2860,), (0.3530,), "FASHION_MNIST_DIR", "fashion_mnist_dir",
                  "zalando-datasets/fashion_mnist", {"train": "train", "dev": "test"}, "image",
                  default_dirs=("/usr/share/datasets/fashion-mnist",)),
        # mean/std: the per-channel statistics of the 50k CIFAR-10 train images (x / 255)
        ImageTask("cifar10", (3, 32, 32),
                  ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck"),
                  (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "CIFAR10_DIR", "cifar10_dir",
                  "uoft-cs/cifar10", {"train": "train", "dev": "test"}, "img"),
    ]
}


class MissingImageData(FileNotFoundError):
    """An image task's files are absent from the directory it was pointed at."""


def source_dir(cfg: dict[str, Any], task: str) -> str | None:
    """The local directory a task is read from (env, params, default), absolute; None: the Hub."""
    t = TASKS[task]
    given = os.environ.get(t.env) or cfg.get("data", {}).get(t.config_key)
    if given:
        return os.path.realpath(os.path.expanduser(given))
    return next((d for d in t.default_dirs if os.path.isdir(d)), None)


# --- IDX (Fashion-MNIST) -----------------------------------------------------------------------

_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "dev": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX file (gzipped or raw) of unsigned bytes as an array of its dimensions; a malformed
    header or a data size that does not match it is an error naming the file."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise ValueError(f"{path}: malformed IDX header: expected magic 0x0000 then type and rank bytes, "
                         f"got {raw[:4].hex() or 'an empty file'}")
    dtype, ndim = raw[2], raw[3]
    if dtype != 0x08:
        raise ValueError(f"{path}: malformed IDX header: data type 0x{dtype:02x} is not unsigned byte (0x08)")
    if not 1 <= ndim <= 4:
        raise ValueError(f"{path}: malformed IDX header: {ndim} dimensions (expected 1 to 4)")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: malformed IDX header: cut off inside the {ndim} dimension sizes")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    expected = int(np.prod(dims))
    if len(raw) - head != expected:
        raise ValueError(f"{path}: IDX header says {'x'.join(map(str, dims))} = {expected} bytes of data, "
                         f"the file has {len(raw) - head} (truncated?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise MissingImageData(f"{directory / stem}[.gz] not found")


def idx_files(directory: str | os.PathLike[str], split: str) -> tuple[Path, Path]:
    """(images, labels) IDX files of a Fashion-MNIST split in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingImageData(f"fashion_mnist: directory {directory} not found")
    images, labels = _IDX_FILES[split]
    return _find(directory, images), _find(directory, labels)


def read_fashion_mnist(directory: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    img_path, lab_path = idx_files(directory, split)
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise ValueError(f"{img_path}: expected 3 dimensions (n, 28, 28), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{lab_path}: {labels.shape} labels for {len(images)} images in {img_path}")
    return images[:, None, :, :], labels.astype(np.int64)


# --- CIFAR-10 python batches -------------------------------------------------------------------

_CIFAR_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "dev": ("test_batch",)}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays, lists, dicts and bytes only: any other global is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"),
                ("_codecs", "encode")}  # protocol-2 pickles written by Python 3 store bytes this way

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def cifar_files(directory: str | os.PathLike[str], split: str) -> list[Path]:
    """The batch files of a split, in ``directory`` or its ``cifar-10-batches-py`` subfolder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingImageData(f"cifar10: directory {directory} not found")
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    paths = [directory / name for name in _CIFAR_FILES[split]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingImageData(f"cifar10: {missing[0]} not found")
    return paths


def read_cifar10(directory: str | os.PathLike[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for path in cifar_files(directory, split):
        try:
            with open(path, "rb") as fh:
                batch = _ArrayUnpickler(fh, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"{path}: not a CIFAR-10 python batch (expected a dict with data and labels)")
        data = np.asarray(batch[b"data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: data is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
        lab = np.asarray(batch[b"labels"], dtype=np.int64)
        if lab.shape != (len(data),):
            raise ValueError(f"{path}: {lab.shape} labels for {len(data)} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return np.concatenate(images), np.concatenate(labels)


# --- Hub -------------------------------------------------------------------------------------


def read_hub(task: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """From the Hugging Face Hub (or its local cache; ``HF_HUB_OFFLINE=1`` is honoured)."""
    import datasets  # heavy import, only on this path

    t = TASKS[task]
    ds = datasets.load_dataset(t.hub_id, split=t.hub_splits[split])
    c, h, w = t.shape
    images = np.stack([np.asarray(ex[t.hub_image_column], dtype=np.uint8).reshape(h, w, c) for ex in ds])
    labels = np.asarray(ds["label"], dtype=np.int64)
    return images.transpose(0, 3, 1, 2), labels


_LOCAL_READERS = {"fashion_mnist": read_fashion_mnist, "cifar10": read_cifar10}
_LOCAL_FILES = {"fashion_mnist": idx_files, "cifar10": cifar_files}


def local_files(task: str, directory: str, split: str) -> list[Path]:
    """The source files a split is read from (the prepare rule's inputs); errors name the path."""
    return list(_LOCAL_FILES[task](directory, split))


def read_split(task: str, split: str, directory: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, C, H, W) uint8, labels) of one split, checked against the task."""
    t = TASKS[task]
    pixels, labels = (_LOCAL_READERS[task](directory, split) if directory else read_hub(task, split))
    where = directory or t.hub_id
    if pixels.shape[1:] != t.shape:
        raise ValueError(f"{task}/{split} from {where}: images are {pixels.shape[1:]}, expected {t.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= t.num_labels):
        raise ValueError(f"{task}/{split} from {where}: labels outside 0..{t.num_labels - 1}")
    if not len(labels):
        raise ValueError(f"{task}/{split} from {where}: no examples")
    return np.ascontiguousarray(pixels), labels


# --- canonical files ---------------------------------------------------------------------------


def example_ids(task: str, split: str, pixels: np.ndarray, labels: np.ndarray) -> list[str]:
    """Content ids: blake2b(task, split, blake2b(pixel bytes), label), duplicates salted."""
    from reclaim.data.example_ids import assign_ids

    rows = [{"pixels": hashlib.blake2b(np.ascontiguousarray(p).tobytes(), digest_size=16).hexdigest(),
             "label": int(y)} for p, y in zip(pixels, labels, strict=True)]
    return [r["example_id"] for r in assign_ids(rows, [task, split], ["pixels", "label"])]


def write_split(path: str | os.PathLike[str], task: str, split: str, pixels: np.ndarray,
                labels: np.ndarray) -> int:
    from reclaim.io import atomic_path

    ids = np.array(example_ids(task, split, pixels, labels))
    buf = io.BytesIO()
    np.savez(buf, pixels=pixels, labels=labels, example_ids=ids, idx=np.arange(len(labels), dtype=np.int64))
    with atomic_path(path, suffix=".npz") as tmp:
        tmp.write_bytes(buf.getvalue())
    return len(labels)


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Canonical rows of a prepared split: ``example_id, idx, label, pixels`` (a (C, H, W) view)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            pixels, labels, ids, idx = z["pixels"], z["labels"], z["example_ids"], z["idx"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a prepared image split ({exc})") from None
    return [{"example_id": str(e), "idx": int(i), "label": int(y), "pixels": p}
            for e, i, y, p in zip(ids, idx, labels, pixels, strict=True)]
