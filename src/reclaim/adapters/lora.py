"""LoRA (Hu et al., arXiv 2106.09685) through PEFT: B = 0, A Kaiming-uniform, s = alpha/r."""

from reclaim.adapters._lora import LoraAdapter

ADAPTER = LoraAdapter()
