"""DoRA (Liu et al., arXiv 2402.09353): weight-decomposed LoRA, magnitude vector plus a LoRA
direction update; PEFT's ``use_dora``."""

from reclaim.adapters._lora import LoraAdapter


class DoraAdapter(LoraAdapter):
    use_dora = True


ADAPTER = DoraAdapter()
