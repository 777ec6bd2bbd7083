"""make-gguf: every version's tiny GGUF loads in the real llama.cpp with its special tokens and chat template."""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Callable

import pytest

pytest.importorskip("gguf", reason="gguf is not installed (pip install -e '.[llm]'): cannot write GGUF files")
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llm]'): "
                                                     "cannot load GGUF files in llama.cpp")

from converter import family  # noqa: E402
from converter.cli import main  # noqa: E402
from converter.gguf_writer import CHAT_TEMPLATES, IMAGE_TAGS_V25, IMAGE_TAGS_V26, recipe_for, vocabulary  # noqa: E402
from converter.synthetic import synthetic_config  # noqa: E402
from edge.encoder.prompt import PromptLayout  # noqa: E402
from edge.llm.embeddings import EmbeddingLlm  # noqa: E402

from ..conftest import VERSIONS  # noqa: E402

ARCHS = {"2.5": "llama", "2.6": "qwen2", "o-2.6": "qwen2", "4.0": "minicpm", "4.5": "qwen3", "4.6": "qwen35",
         "4.7": "qwen35"}
GGUF_VERSIONS = VERSIONS + ("4.6", "4.7")  # the merger versions have no tiny bundles yet, but their LLM has a GGUF
GENERATION_PROMPTS = {  # what llama.cpp's own rendering of the template gives for one user message "hi"
    "llama3": "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
              "\n\n",
    "chatml": "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
}


@pytest.mark.parametrize("version", GGUF_VERSIONS)
def test_loads_in_llama_cpp_with_the_tiny_token_width(make_gguf: Callable[..., Path], version: str) -> None:
    with EmbeddingLlm(str(make_gguf(version))) as llm:
        assert llm.metadata("general.architecture") == ARCHS[version]
        assert llm.n_embd == family.TINY_LLM_HIDDEN
        if version in VERSIONS:
            assert llm.n_embd == synthetic_config(version, "tiny")["hidden_size"]
        assert llm.n_vocab == len(vocabulary(version).tokens)
        assert llm.input_scale == (12.0 if version == "4.0" else 1.0)


@pytest.mark.parametrize("version", GGUF_VERSIONS)
def test_vocabulary_holds_the_special_tokens_once(make_gguf: Callable[..., Path], version: str) -> None:
    vocab = vocabulary(version)
    assert len(set(vocab.tokens)) == len(vocab.tokens)
    tags = IMAGE_TAGS_V26 if version != "2.5" else IMAGE_TAGS_V25
    recipe = recipe_for(version)
    with EmbeddingLlm(str(make_gguf(version))) as llm:
        for token in recipe.chat_tokens + tags:
            assert llm.tokenize(token) == [vocab.id_of(token)], token
        assert llm.metadata("tokenizer.ggml.eos_token_id") == str(vocab.id_of(recipe.eos))
        if family.is_merger(version):
            return  # no fixed query count: the placeholder layout is edge.prompt's
        # The placeholders of a 2x1-sliced image: (1 + 2) blocks of Q <unk> each.
        layout = PromptLayout("v2.5" if version == "2.5" else "v2.6", family.facts_for(version).query_num,
                              version != "2.5")
        ids = llm.tokenize("look: " + layout.text((2, 1)))
        assert ids.count(vocab.id_of("<unk>")) == 3 * layout.query_num


@pytest.mark.parametrize("version", GGUF_VERSIONS)
def test_chat_template_is_stored_and_understood(make_gguf: Callable[..., Path], version: str) -> None:
    kind = family.facts_for(version).chat_template
    with EmbeddingLlm(str(make_gguf(version))) as llm:
        template = llm.metadata("tokenizer.chat_template").encode()
    assert template.decode() == CHAT_TEMPLATES[kind]
    message = (llama_cpp.llama_chat_message * 1)(llama_cpp.llama_chat_message(b"user", b"hi"))
    buffer = ctypes.create_string_buffer(1024)
    size = llama_cpp.llama_chat_apply_template(template, message, 1, True, buffer, len(buffer))
    assert buffer.raw[:size].decode() == GENERATION_PROMPTS[kind]


def test_seeded(tmp_path: Path) -> None:
    paths = [tmp_path / name for name in ("a.gguf", "b.gguf", "c.gguf")]
    for path, seed in zip(paths, (1, 1, 2)):
        assert main(["make-gguf", "--model-version", "2.6", "--out", str(path), "--seed", str(seed)]) == 0
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_existing_out_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "llm.gguf"
    out.write_bytes(b"keep")
    assert main(["make-gguf", "--model-version", "4.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert out.read_bytes() == b"keep"
    assert main(["make-gguf", "--model-version", "4.5", "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:4] == b"GGUF"


def test_unknown_version_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["make-gguf", "--model-version", "2.0", "--out", str(tmp_path / "x.gguf")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model-version" in err
    assert not (tmp_path / "x.gguf").exists()


def test_out_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["make-gguf", "--model-version", "2.5", "--out", str(tmp_path), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a directory" in err


@pytest.mark.parametrize("version, moe", [("4.6", False), ("4.7", False), ("4.7", True)])
def test_qwen35_generates_as_llama_cpp_python_does(make_gguf: Callable[..., Path], tmp_path: Path, version: str,
                                                   moe: bool) -> None:
    """The hybrid model (Gated DeltaNet and attention layers, M-RoPE; 4.7's MoE too) runs: the project's greedy loop
    on the low-level API gives the tokens llama-cpp-python's own Llama object generates greedily from the same
    prompt."""
    from converter.gguf_writer import write_gguf
    from edge.llm.conversation import Prompt, text_part
    from edge.llm.generate import Generator

    path, limit = write_gguf(tmp_path / "moe.gguf", version, moe=True).path if moe else make_gguf(version), 12
    with EmbeddingLlm(str(path)) as llm:
        assert llm.metadata("general.architecture") == ("qwen35moe" if moe else "qwen35")
        assert llm.n_pos_per_embd == 4 and not llm.keeps_prefix
    prompt = "<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    reference = llama_cpp.Llama(str(path), n_ctx=256, verbose=False)
    try:
        ids = reference.tokenize(prompt.encode(), add_bos=False, special=True)
        generated = []
        for token in reference.generate(ids, temp=0.0):
            generated.append(token)
            if len(generated) == limit:
                break
    finally:
        reference.close()
    with EmbeddingLlm(str(path), n_ctx=256) as llm:
        assert llm.tokenize(prompt) == ids
        ends = [i for i, token in enumerate(generated) if llm.is_end(token)]
        expected = generated[:ends[0]] if ends else generated
        generator = Generator(llm)
        for _ in range(2):  # the second answer is fed whole again: a recurrent state keeps no prefix
            answer = generator.start(Prompt([text_part(ids[:3]), text_part(ids[3:])]), limit)
            text = "".join(answer)
            assert generator.kept_parts == 0
        assert answer.completion_tokens == len(expected) > 0
        assert text == b"".join(llm.piece(token) for token in expected).decode("utf-8", "replace")


def test_moe_is_for_47_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["make-gguf", "--model-version", "4.6", "--moe", "--out", str(tmp_path / "x.gguf")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--moe" in err and "4.7" in err
    assert not list(tmp_path.iterdir())
