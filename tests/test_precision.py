"""The engine's bf16 on a CPU: frozen linear weights cast once (same arithmetic as autocast), math attention."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tpv.engine.precision import autocast, frozen_linears_in_bf16

CPU = torch.device("cpu")


def _frozen(tiny: Any) -> Any:
    model, _tok = tiny("llama", seed=0)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_frozen_linears_are_cast_for_the_block_and_restored(tiny: Any) -> None:
    """Inside: frozen Linear weights in bf16, the tied LM head and the norms untouched; after: the same fp32 tensors."""
    model = _frozen(tiny)
    before = {name: (p, p.detach().clone()) for name, p in model.named_parameters()}
    with frozen_linears_in_bf16(model, CPU, "bf16") as cast:
        dtypes = {name: p.dtype for name, p in model.named_parameters()}
        assert cast == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) - 1  # all but the tied head
        assert dtypes["model.layers.0.self_attn.q_proj.weight"] == torch.bfloat16
        assert dtypes["model.embed_tokens.weight"] == torch.float32  # shared with lm_head: never cast
        assert dtypes["model.norm.weight"] == torch.float32
    for name, p in model.named_parameters():
        assert p is before[name][0] and p.dtype == torch.float32 and torch.equal(p, before[name][1]), name


def test_restored_after_an_error_and_left_alone_elsewhere(tiny: Any) -> None:
    """An exception inside the block still restores fp32; fp32 runs and trainable weights are never cast."""
    model = _frozen(tiny)
    with pytest.raises(RuntimeError, match="boom"), frozen_linears_in_bf16(model, CPU, "bf16"):
        raise RuntimeError("boom")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with frozen_linears_in_bf16(model, CPU, "fp32") as cast:
        assert cast == 0 and {p.dtype for p in model.parameters()} == {torch.float32}
    q = model.model.layers[0].self_attn.q_proj.weight
    q.requires_grad_(True)
    with frozen_linears_in_bf16(model, CPU, "bf16"):
        assert q.dtype == torch.float32


def test_cast_once_computes_what_autocast_computes(tiny: Any) -> None:
    """Logits and input gradients under bf16 autocast are bit-identical with the weights cast once or per use."""
    model = _frozen(tiny)
    ids = torch.tensor([[5, 9, 3, 7, 2, 11]])

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)  # (1, 6, hidden)
        with autocast(CPU, "bf16"):
            logits = model(inputs_embeds=embeds).logits  # (1, 6, vocab)
        logits.float().logsumexp(-1).sum().backward()
        assert embeds.grad is not None
        return logits.detach(), embeds.grad

    per_use = run()
    with frozen_linears_in_bf16(model, CPU, "bf16"):
        once = run()
    assert torch.equal(per_use[0], once[0]) and torch.equal(per_use[1], once[1])


def test_autocast_picks_math_attention_only_where_gradients_flow() -> None:
    """On a CPU in bf16 the fused attention is off while training, on while scoring; fp32 changes nothing."""
    flash = torch.backends.cuda.flash_sdp_enabled
    assert flash()
    with autocast(CPU, "bf16"):
        assert torch.is_autocast_enabled("cpu") and not flash()
    with torch.no_grad(), autocast(CPU, "bf16"):
        assert flash()
    with autocast(CPU, "fp32"):
        assert not torch.is_autocast_enabled("cpu") and flash()
    assert flash()
