"""The ``build_pool`` rule's command: build a pool (reclaim.data.pools) from prepared
GLUE splits and WikiText-2 raw (a local directory, or the Hub)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reclaim.io import read_jsonl, write_jsonl
from reclaim.stage_tracking import tracked


def build_pool(a: argparse.Namespace) -> int:
    from reclaim.data import pools

    spec = json.loads(a.spec)
    builder = pools.get(spec["builder"])
    params = builder.Params(**spec["params"])
    glue = dict(item.split("=", 1) for item in a.glue)
    with tracked(a, "build_pool", spec["name"], spec) as m:
        rows = {ref: read_jsonl(glue[ref], ("example_id",)) for ref in glue}
        wiki = {split: _wikitext(split, a.wikitext_dir, a.hub_wikitext) for split in builder.wikitext_splits(params)}
        built = builder.build(params, rows, wiki)
        out = Path(a.out_dir)
        for name in ("heldout", "target", "pool"):  # pool.jsonl, the rule's first output, last
            write_jsonl(out / f"{name}.jsonl", built.get(name, []))
        m.update({f"n_{k}": len(v) for k, v in built.items()})
    by_source: dict[str, int] = {}
    for r in built["pool"]:
        key = str(r.get("source", "?"))
        by_source[key] = by_source.get(key, 0) + 1
    sizes = ", ".join(f"{k} {len(v)}" for k, v in built.items() if k != "pool")
    print(f"pool {spec['name']}: {len(built['pool'])} rows ({json.dumps(by_source, sort_keys=True)})"
          f"{'; ' + sizes if sizes else ''} -> {a.out_dir}")
    return 0


def _wikitext(split: str, directory: str, hub: str) -> str:
    from reclaim.data.pools.text_pool import wikitext_text

    if directory:
        path = Path(directory) / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"wikitext: {path} not found (data.wikitext_dir / WIKITEXT_DIR)")
        return wikitext_text(path)
    import datasets  # the Hub path (honours HF_HUB_OFFLINE=1)

    ds = datasets.load_dataset(hub, "wikitext-2-raw-v1", split={"valid": "validation", "test": "test"}[split])
    return "\n".join(ln for ln in ds["text"] if not ln.strip().startswith("="))


