"""HF directories in and out: released layouts, exact round trips, streaming, clear errors."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from baichuan.checkpoint import SAFE_INDEX, load_pretrained, save_pretrained
from baichuan.config import from_hf_dict, load_config, preset
from baichuan.errors import BaichuanError
from baichuan.model import build
from conftest import assets

SMALL = dict(vocab_size=300, hidden_size=64, intermediate_size=160, num_layers=2, num_heads=4, max_len=128)


def tiny(arch="baichuan-7b", **kw):
    torch.manual_seed(0)
    return build(preset(arch, **{**SMALL, **kw})).eval()


def write_released_bin_dir(model, path, arch_name, length_key="max_position_embeddings", shards=2, inv_freq=True):
    """A directory laid out like a Baichuan release: config.json + pytorch_model-*.bin + index."""
    path.mkdir(parents=True)
    cfg = model.cfg
    d = {"architectures": [arch_name], "model_type": "baichuan", "vocab_size": cfg.vocab_size,
         "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
         "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads, length_key: cfg.max_len,
         "rms_norm_eps": 1e-6, "hidden_act": "silu", "torch_dtype": "bfloat16"}
    (path / "config.json").write_text(json.dumps(d))
    state = dict(model.state_dict())
    if inv_freq:
        for i in range(cfg.num_layers):
            state[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(cfg.head_dim // 2)
    names = list(state)
    per = -(-len(names) // shards)
    weight_map = {}
    for s in range(shards):
        fname = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
        part = {n: state[n].clone() for n in names[s * per:(s + 1) * per]}
        torch.save(part, path / fname)
        weight_map.update({n: fname for n in part})
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return path



def fail_second_shard(monkeypatch) -> None:
    """The second safetensors file written from now on fails as a full disk would."""
    import safetensors.torch
    calls = {"n": 0}
    real = safetensors.torch.save_file

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*a, **kw)
    monkeypatch.setattr(safetensors.torch, "save_file", flaky)

def test_released_configs_map_to_the_right_architecture():
    c13 = load_config(assets("baichuan-13b-chat"))
    assert (c13.position, c13.norm_head, c13.max_len, c13.vocab_size) == ("alibi", False, 4096, 64000)
    assert c13.num_params() == 13_264_901_120
    c2 = load_config(assets("baichuan2"))
    assert (c2.position, c2.norm_head, c2.vocab_size, c2.num_heads) == ("alibi", True, 125696, 40)
    assert c2.num_params() == 13_896_668_160
    # Baichuan-7B: capital-C class name, max_position_embeddings
    c7 = from_hf_dict({"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan", "vocab_size": 64000,
                       "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                       "num_attention_heads": 32, "max_position_embeddings": 4096})
    assert (c7.position, c7.norm_head, c7.rope_fp32) == ("rope", False, False)
    # Baichuan2-7B: BaichuanForCausalLM, hidden 4096, both length keys
    c27 = from_hf_dict({"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "vocab_size": 125696,
                        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                        "num_attention_heads": 32, "max_position_embeddings": 4096, "model_max_length": 4096})
    assert (c27.position, c27.norm_head, c27.rope_fp32) == ("rope", True, True)
    assert c27.num_params() == 7_505_973_248


@pytest.mark.parametrize("arch", ["baichuan-7b", "baichuan2-7b", "baichuan-13b", "baichuan2-13b"])
def test_save_load_is_exact(tmp_path, arch):
    model = tiny(arch)
    model.train()  # NormHead weights stay raw in training mode, so the round trip sees raw rows
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}
    out = save_pretrained(model, tmp_path / "m", max_shard_bytes=60_000)
    index = json.loads((out / SAFE_INDEX).read_text())
    assert len(set(index["weight_map"].values())) > 1  # really sharded
    assert "W_pack" in "".join(index["weight_map"])
    loaded = load_pretrained(out)
    assert loaded.cfg == model.cfg
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ref_state[k]), k
    ids = torch.randint(0, 300, (2, 9))
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_save_writes_released_config_fields_and_generation_config(tmp_path):
    out = save_pretrained(tiny("baichuan2-13b"), tmp_path / "m")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["BaichuanForCausalLM"] and cfg["model_type"] == "baichuan"
    assert cfg["model_max_length"] == 128 and cfg["num_hidden_layers"] == 2
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["user_token_id"] == 195 and gen["assistant_token_id"] == 196 and gen["eos_token_id"] == 2
    # a RoPE model without NormHead is written with the Baichuan-7B class name (loaders infer RoPE from it)
    out7 = save_pretrained(tiny("baichuan-7b"), tmp_path / "m7")
    assert json.loads((out7 / "config.json").read_text())["architectures"] == ["BaiChuanForCausalLM"]


@pytest.mark.parametrize("arch_name,length_key", [("BaiChuanForCausalLM", "max_position_embeddings"),
                                                   ("BaichuanForCausalLM", "model_max_length")])
def test_loads_released_bin_layout(tmp_path, arch_name, length_key):
    arch = "baichuan-7b" if arch_name == "BaiChuanForCausalLM" else "baichuan-13b"
    model = tiny(arch)
    d = write_released_bin_dir(model, tmp_path / "rel", arch_name, length_key)
    loaded = load_pretrained(d)
    assert loaded.cfg.position == ("rope" if arch == "baichuan-7b" else "alibi")
    ids = torch.randint(0, 300, (1, 7))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_loads_legacy_non_zip_bin_files(tmp_path):
    """Old torch.save files cannot be memory-mapped; they are read whole, weights-only."""
    model = tiny()
    d = tmp_path / "legacy"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BaiChuanForCausalLM"], "model_type": "baichuan",
                                                 "vocab_size": 300, "hidden_size": 64, "intermediate_size": 160,
                                                 "num_hidden_layers": 2, "num_attention_heads": 4,
                                                 "max_position_embeddings": 128}))
    torch.save(model.state_dict(), d / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    ids = torch.randint(0, 300, (1, 7))
    with torch.no_grad():
        assert torch.equal(load_pretrained(d)(ids), model(ids))


def test_loads_into_bfloat16(tmp_path):
    model = tiny()
    d = save_pretrained(model, tmp_path / "m")
    loaded = load_pretrained(d, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    assert torch.equal(loaded.model.norm.weight, model.model.norm.weight.bfloat16())


def test_overwrite_replaces_a_model_dir_but_refuses_other_dirs(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    save_pretrained(tiny("baichuan-13b"), d)
    assert load_config(d).position == "alibi"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    other = tmp_path / "notes"
    other.mkdir()
    (other / "important.txt").write_text("x")
    with pytest.raises(BaichuanError, match="refusing"):
        save_pretrained(tiny(), other)


def test_crash_mid_write_leaves_old_directory_intact(tmp_path, monkeypatch):
    d = save_pretrained(tiny(), tmp_path / "m")
    before = sorted(p.name for p in d.iterdir())
    fail_second_shard(monkeypatch)
    with pytest.raises(OSError):
        save_pretrained(tiny("baichuan-13b"), d, max_shard_bytes=60_000)
    assert sorted(p.name for p in d.iterdir()) == before
    assert load_config(d).position == "rope"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # a writer killed outright (SIGKILL) leaves its temporary folder: the next write removes it,
    # but not one whose writer is still running
    dead, running = tmp_path / f".m.partial-{2 ** 22 + 12345}", tmp_path / f".m.partial-{os.getppid()}"
    for p in (dead, running):
        p.mkdir()
    save_pretrained(tiny(), d)
    assert not dead.exists() and running.exists()


# ----------------------------------------------------------------------------- errors

def test_missing_config(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(BaichuanError, match="config.json: not found"):
        load_pretrained(tmp_path / "x")


def test_unknown_architecture(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match=r"config.json: unknown architecture 'GPT2LMHeadModel'"):
        load_pretrained(d)


def test_missing_config_field(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    del cfg["hidden_size"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match="missing field 'hidden_size'"):
        load_pretrained(d)


def test_missing_shard(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m", max_shard_bytes=60_000)
    second = sorted(d.glob("model-*.safetensors"))[1]
    second.unlink()
    with pytest.raises(BaichuanError, match=f"{second.name}: shard listed"):
        load_pretrained(d)


def test_truncated_safetensors_shard(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m", max_shard_bytes=60_000)
    f = sorted(d.glob("model-*.safetensors"))[0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BaichuanError, match=f"{f.name}: corrupt or truncated"):
        load_pretrained(d)


def test_truncated_bin_shard(tmp_path):
    d = write_released_bin_dir(tiny(), tmp_path / "rel", "BaiChuanForCausalLM")
    f = d / "pytorch_model-00002-of-00002.bin"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(BaichuanError, match="pytorch_model-00002-of-00002.bin"):
        load_pretrained(d)


BLOCK_TRANSFORMERS = """
import sys
class NoTransformers:  # as if transformers were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "transformers":
            raise ModuleNotFoundError("No module named 'transformers'")
sys.meta_path.insert(0, NoTransformers())
"""


def test_released_dir_loads_without_transformers_or_its_python_files(tmp_path, small_tokenizer):
    """A released directory (pytorch_model-*.bin, remote code that must not run) loads, tokenizes
    and generates here with transformers absent: our loaders never import a directory's Python."""
    model = tiny("baichuan-13b", vocab_size=small_tokenizer.vocab_size)
    d = write_released_bin_dir(model, tmp_path / "rel", "BaichuanForCausalLM", "model_max_length")
    small_tokenizer.save(d)
    for name in ("configuration_baichuan.py", "modeling_baichuan.py", "tokenization_baichuan.py"):
        (d / name).write_text("raise RuntimeError('the released remote code was imported')\n")
    ids = torch.tensor([[5, 17, 99, 42]])
    with torch.no_grad():
        torch.save(model(ids), tmp_path / "expected.pt")
    script = BLOCK_TRANSFORMERS + textwrap.dedent(f"""
        import torch
        from baichuan.checkpoint import load_pretrained
        from baichuan.cli import main
        loaded = load_pretrained({str(d)!r})
        with torch.no_grad():
            got = loaded(torch.tensor({ids.tolist()}))
        assert torch.equal(got, torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True))
        main(["generate", {str(d)!r}, "春眠不觉晓", "--max-new-tokens", "4"])
        assert not any(m.split(".")[0] == "transformers" for m in sys.modules)
        print("loaded without transformers")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loaded without transformers" in r.stdout


def test_pickled_code_is_refused(tmp_path):
    d = write_released_bin_dir(tiny(), tmp_path / "rel", "BaiChuanForCausalLM")
    torch.save({"evil": subprocess.Popen}, d / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(BaichuanError, match="weights-only"):
        load_pretrained(d)


def test_shape_mismatch_names_the_tensor(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 128
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match=r"tensor 'model\.layers\.0\.mlp\.\w+_proj\.weight' has shape \[\d+, \d+\], but config.json implies"):
        load_pretrained(d)


def test_missing_tensor(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match="tensors missing"):
        load_pretrained(d)


def test_quantized_release_is_refused_clearly(tmp_path):
    d = save_pretrained(tiny(), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["quantization_config"] = {"load_in_4bit": True}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaichuanError, match="quantization_config"):
        load_pretrained(d)


def test_loading_streams_one_shard_at_a_time(tmp_path):
    """Peak RSS while loading stays near model + one shard, far below two copies of the model."""
    torch.manual_seed(0)
    cfg = preset("baichuan-7b", vocab_size=32000, hidden_size=768, intermediate_size=2048, num_layers=8,
                 num_heads=12, max_len=256)
    model = build(cfg)
    model_bytes = sum(p.numel() * 4 for p in model.parameters())
    save_pretrained(model, tmp_path / "m", max_shard_bytes=model_bytes // 8)
    del model
    script = textwrap.dedent(f"""
        from baichuan.checkpoint import load_pretrained
        from baichuan.config import preset
        from baichuan.model import build
        build(preset("tiny"))  # warm up imports and the allocator
        def status(key):
            return int(open("/proc/self/status").read().split(key + ":")[1].split()[0]) * 1024
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
        base = status("VmRSS")
        m = load_pretrained({str(tmp_path / 'm')!r})
        print(base, status("VmHWM"))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    base, peak = map(int, out.stdout.split())
    growth = peak - base
    print(f"load grew RSS by {growth / 1e6:.0f} MB for a {model_bytes / 1e6:.0f} MB model")
    assert growth < 1.5 * model_bytes, (growth / 1e6, model_bytes / 1e6)


def test_exported_files_have_the_umask_mode(tiny_model_dir):
    """safetensors creates its files private (0600); an export must be readable by whoever the
    umask allows (a server's account, a team), like every other file it writes."""
    import os
    mask = os.umask(0)
    os.umask(mask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in tiny_model_dir.iterdir() if f.is_file()}
    assert any(n.endswith(".safetensors") for n in modes) and "tokenizer.model" in modes
    assert all(mode == 0o666 & ~mask for mode in modes.values()), modes
