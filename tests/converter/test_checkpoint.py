"""Reading the vision half of a checkpoint: version detection, weight formats, LLM weights left unread, sizes."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import safetensors
import torch
from safetensors.torch import load_file, save_file

from converter import family
from converter.checkpoint import load_vision_checkpoint
from converter.checkpoint_layout import VISION_PREFIXES, expected_shapes, vision_spec
from converter.synthetic import synthetic_config
from edge.errors import InputError
from tests.conftest import VERSIONS

LLM_TENSOR = "llm.model.embed_tokens.weight"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(path: Path, **changes: Any) -> Dict[str, Any]:
    config = json.loads((path / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))
    return config


@pytest.mark.parametrize("version", VERSIONS)
def test_version_detected_from_config(make_checkpoint: Callable[..., Path], version: str) -> None:
    """Each synthetic version is detected as itself, with that version's Q and the tiny D."""
    ck = load_vision_checkpoint(make_checkpoint(version))
    assert ck.version == version
    assert ck.spec.query_num == family.facts_for(version).query_num
    assert ck.spec.embed_dim == 256 and ck.spec.width == 64 and ck.spec.layers == 2


def test_version_from_query_num_and_hidden_size(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """Without model_type and version, query_num 96 means 2.5; (64, D) tells 2.6 from 4.0."""
    ck_dir = _copy(make_checkpoint("2.5"), tmp_path / "ck")
    _edit_config(ck_dir, model_type=None, version=None)
    assert load_vision_checkpoint(ck_dir).version == "2.5"
    assert family.detect_version({"query_num": 64, "hidden_size": 2560}) == "4.0"
    assert family.detect_version({"query_num": 64, "hidden_size": 3584}) == "2.6"


def test_model_version_override_wins(make_checkpoint: Callable[..., Path]) -> None:
    """model_version= (the CLI's --model-version) beats what config.json says."""
    path = make_checkpoint("4.0")
    ck = load_vision_checkpoint(path, model_version="4.5")
    assert ck.version == "4.5"
    assert ck.facts.llm_family == "qwen3"
    assert load_vision_checkpoint(path).version == "4.0"


def test_undetectable_version_asks_for_model_version(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """No model_type/version and an unknown (query_num, hidden_size) pair: the message names --model-version."""
    ck_dir = _copy(make_checkpoint("2.6"), tmp_path / "ck")
    _edit_config(ck_dir, model_type=None, version=None)  # tiny hidden_size 256 matches no version
    with pytest.raises(InputError, match="--model-version"):
        load_vision_checkpoint(ck_dir)
    ck = load_vision_checkpoint(ck_dir, model_version="2.6")  # the override makes it loadable
    assert ck.version == "2.6"


def test_foreign_model_type_refused(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """model_type "llama" is not a MiniCPM-V checkpoint: the error names it."""
    ck_dir = _copy(make_checkpoint("2.6"), tmp_path / "ck")
    _edit_config(ck_dir, model_type="llama")
    with pytest.raises(InputError, match="'llama'"):
        load_vision_checkpoint(ck_dir)


def test_unsupported_version_refused(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """Version 2.0 (timm VPM) is refused, by override and from config.json alike."""
    path = make_checkpoint("2.6")
    with pytest.raises(InputError, match=r"'2\.0' \(MiniCPM-V 2\.0 .*not supported"):
        load_vision_checkpoint(path, model_version="2.0")
    ck_dir = _copy(path, tmp_path / "ck")
    _edit_config(ck_dir, version=2.0)
    with pytest.raises(InputError, match=r"'2\.0' \(MiniCPM-V 2\.0 .*not supported"):
        load_vision_checkpoint(ck_dir)
    _edit_config(ck_dir, version=4)  # an integer version field means x.0
    assert load_vision_checkpoint(ck_dir).version == "4.0"


def test_weight_formats_load_identically(make_checkpoint: Callable[..., Path]) -> None:
    """One safetensors file, 3 shards + index and a .bin hold the same tensors and give the same sha256."""
    single = load_vision_checkpoint(make_checkpoint("2.6", dtype=torch.float32, seed=3))
    sharded_dir = make_checkpoint("2.6", dtype=torch.float32, seed=3, shards=3)
    assert len(list(sharded_dir.glob("model-*-of-00003.safetensors"))) == 3
    assert (sharded_dir / "model.safetensors.index.json").is_file()
    sharded = load_vision_checkpoint(sharded_dir)
    binary_dir = make_checkpoint("2.6", dtype=torch.float32, seed=3, weight_format="bin")
    assert (binary_dir / "pytorch_model.bin").is_file()
    binary = load_vision_checkpoint(binary_dir)
    for other in (sharded, binary):
        assert sorted(other.tensors) == sorted(single.tensors)
        for name, tensor in single.tensors.items():
            assert other.tensors[name].dtype == torch.float32
            assert torch.equal(other.tensors[name], tensor), name
        assert other.weights_sha256 == single.weights_sha256
    different_seed = load_vision_checkpoint(make_checkpoint("2.6", dtype=torch.float32, seed=4))
    assert different_seed.weights_sha256 != single.weights_sha256


def _with_llm_tensor(src: Path, dst: Path, weight_format: str) -> Path:
    """A copy of `src` whose weight file also holds a [1000, 256] LLM embedding."""
    shutil.copytree(src, dst)
    tensors = dict(load_file(str(dst / "model.safetensors")))
    tensors[LLM_TENSOR] = torch.randn(1000, 256)
    (dst / "model.safetensors").unlink()
    if weight_format == "bin":
        torch.save(tensors, str(dst / "pytorch_model.bin"))
    else:
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("weight_format", ["safetensors", "bin"])
def test_llm_tensors_not_returned(make_checkpoint: Callable[..., Path], tmp_path: Path, weight_format: str) -> None:
    """Only vpm./resampler. tensors come back, whatever else the weight file holds."""
    ck_dir = _with_llm_tensor(make_checkpoint("2.6"), tmp_path / "ck", weight_format)
    ck = load_vision_checkpoint(ck_dir)
    assert ck.tensors and all(name.startswith(VISION_PREFIXES) for name in ck.tensors)
    assert LLM_TENSOR not in ck.tensors
    assert set(ck.tensors) == set(expected_shapes(ck.spec))


def test_llm_tensors_never_read_from_safetensors(make_checkpoint: Callable[..., Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """safe_open handles are asked for vision tensors only: the LLM tensor's bytes are never read."""
    ck_dir = _with_llm_tensor(make_checkpoint("2.6"), tmp_path / "ck", "safetensors")
    requested: List[str] = []
    real_safe_open = safetensors.safe_open

    class RecordingHandle:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = real_safe_open(*args, **kwargs)

        def __enter__(self) -> RecordingHandle:
            self._handle = self._inner.__enter__()
            return self

        def __exit__(self, *exc: Any) -> Any:
            return self._inner.__exit__(*exc)

        def keys(self) -> List[str]:
            return list(self._handle.keys())

        def get_tensor(self, name: str) -> torch.Tensor:
            requested.append(name)
            return self._handle.get_tensor(name)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._handle, name)

    # converter.checkpoint._read_file does `from safetensors import safe_open` at call time.
    monkeypatch.setattr(safetensors, "safe_open", RecordingHandle)
    ck = load_vision_checkpoint(ck_dir)
    assert sorted(requested) == sorted(ck.tensors)
    assert not [name for name in requested if name.startswith("llm.")]


def test_drop_vision_last_layer(make_checkpoint: Callable[..., Path], tmp_path: Path) -> None:
    """drop_vision_last_layer: one layer fewer than num_hidden_layers; the extra layer's tensors are ignored."""
    ck_dir = _copy(make_checkpoint("2.6"), tmp_path / "ck")
    config = _edit_config(ck_dir, drop_vision_last_layer=True)
    assert config["vision_config"]["num_hidden_layers"] == 2
    assert "vpm.encoder.layers.1.mlp.fc2.bias" in load_file(str(ck_dir / "model.safetensors"))
    ck = load_vision_checkpoint(ck_dir)
    assert ck.spec.layers == 1
    assert not [name for name in ck.tensors if name.startswith("vpm.encoder.layers.1.")]
    assert "vpm.encoder.layers.0.mlp.fc2.bias" in ck.tensors


def test_small_spec_has_real_widths() -> None:
    """The small config has SigLIP's real widths and the version's LLM hidden size as D."""
    for version, d in (("2.6", 3584), ("2.5", 4096), ("4.0", 2560)):
        spec = vision_spec(synthetic_config(version, "small"), version)
        shapes = expected_shapes(spec)
        assert (spec.width, spec.mlp, spec.heads, spec.layers) == (1152, 4304, 16, 2)
        assert shapes["vpm.encoder.layers.0.mlp.fc1.weight"] == (4304, 1152)
        assert shapes["vpm.encoder.layers.1.mlp.fc2.weight"] == (1152, 4304)
        assert shapes["resampler.attn.in_proj_weight"] == (3 * d, d)
        assert shapes["resampler.kv_proj.weight"] == (d, 1152)
        assert shapes["resampler.query"] == (family.facts_for(version).query_num, d)
        assert "vpm.encoder.layers.2.mlp.fc1.weight" not in shapes


def test_full_spec_is_the_real_vpm() -> None:
    """The full config: 27 layers, a 70x70 = 4900-row position table, patch 14."""
    spec = vision_spec(synthetic_config("2.6", "full"), "2.6")
    shapes = expected_shapes(spec)
    assert spec.layers == 27 and spec.position_grid == 70 and spec.patch_size == 14
    assert shapes["vpm.embeddings.position_embedding.weight"] == (4900, 1152)
    assert shapes["vpm.embeddings.patch_embedding.weight"] == (1152, 3, 14, 14)
    assert "vpm.encoder.layers.26.self_attn.q_proj.weight" in shapes
    assert "vpm.encoder.layers.27.self_attn.q_proj.weight" not in shapes
    assert spec.resampler_heads == 3584 // 128
