"""LoRA: starts as a no-op, trains only adapters, saves/loads in PEFT's layout, merges exactly."""

import json

import pytest
import torch

from baichuan.errors import BaichuanError
from baichuan.model import lm_loss
from baichuan.train.lora import add_lora, load_adapter, lora_state, merge_lora, save_adapter
from test_model import small_model


def trained_adapter(arch="baichuan2-7b"):
    model = small_model(arch)
    names = add_lora(model, r=4, alpha=8, dropout=0.0)
    assert len(names) == 5 * model.cfg.num_layers
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 300, (2, 16))
    model.train()
    for _ in range(3):
        loss = lm_loss(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval(), ids


def test_new_adapter_changes_nothing():
    model = small_model("baichuan-7b")
    ids = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        before = model(ids)
        add_lora(model)
        assert torch.equal(model(ids), before)


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-13b"])
def test_merged_logits_equal_adapter_logits(arch):
    model, ids = trained_adapter(arch)
    with torch.no_grad():
        adapted = model(ids)
        base_names = set(small_model(arch).state_dict())
        merge_lora(model)
        merged = model(ids)
    assert set(model.state_dict()) == base_names  # released tensor names, nothing extra
    assert (adapted - merged).abs().max().item() < 1e-4
    assert not torch.equal(adapted, small_model(arch).eval()(ids))  # training did change the model


def test_adapter_save_load_round_trip_in_peft_layout(tmp_path):
    model, ids = trained_adapter()
    out = save_adapter(model, tmp_path / "adapter", base_model="some/base")
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 8
    from safetensors.torch import load_file
    keys = list(load_file(str(out / "adapter_model.safetensors")))
    assert all(k.startswith("base_model.model.model.layers.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    fresh = load_adapter(small_model("baichuan2-7b"), out).eval()
    with torch.no_grad():
        assert torch.equal(fresh(ids), model(ids))
    assert all(torch.equal(a, b) for a, b in zip(lora_state(fresh).values(), lora_state(model).values()))
    with pytest.raises(BaichuanError, match="not a LoRA adapter folder"):
        load_adapter(small_model("baichuan2-7b"), tmp_path)


def test_bad_targets():
    with pytest.raises(BaichuanError, match="LoRA targets"):
        add_lora(small_model("baichuan-7b"), targets=["q_proj"])
