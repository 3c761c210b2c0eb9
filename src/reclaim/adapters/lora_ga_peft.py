"""LoRA-GA as PEFT implements it (``init_lora_weights="lora_ga"``, PEFT >= 0.19), kept beside
the paper's formulation (``lora_ga``) so the table shows both: PEFT takes A = V[:, :r]^T,
B = U[:, r:2r] diag(S[r:2r]) and applies the stable factor m^(1/4)/sqrt(gamma) to B only."""

from __future__ import annotations

from typing import Any

from reclaim.adapters._lora import ResidualLoraAdapter, linear_targets
from reclaim.adapters.lora_ga import LoraGAParams


class PeftLoraGAAdapter(ResidualLoraAdapter):
    Params = LoraGAParams
    use_rslora = True

    def init_lora_weights(self, params: Any) -> bool | str:
        return "lora_ga"

    def apply(self, model, params, ctx):  # type: ignore[no-untyped-def]
        from peft import get_peft_model
        from peft.tuners.lora.config import LoraGAConfig
        from peft.tuners.lora.loraga import preprocess_loraga

        config = self.lora_config(
            model, params, ctx,
            lora_ga_config=LoraGAConfig(direction="ArB2r", scale="stable", stable_gamma=int(params.gamma)),
        )
        config.target_modules = set(linear_targets(model, params.target_modules, ctx.head_modules))

        def train_step() -> None:
            # PEFT divides the accumulated gradient by the number of backward calls
            for batch in ctx.train_batches(params.grad_examples, params.grad_batch_size):
                ctx.loss_fn(model, batch).backward()

        was_training = model.training
        model.eval()
        preprocess_loraga(model, config, train_step)
        model.train(was_training)
        model = get_peft_model(model, config)
        self.record_initial(model)
        return model


ADAPTER = PeftLoraGAAdapter()
