"""rsLoRA (Kalajdzievski, arXiv 2312.03732): LoRA with the rank-stabilised scale alpha/sqrt(r),
PEFT's ``use_rslora``."""

from reclaim.adapters._lora import LoraAdapter


class RsLoraAdapter(LoraAdapter):
    use_rslora = True


ADAPTER = RsLoraAdapter()
