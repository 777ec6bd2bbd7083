"""Seeded random tiny GGUF LLMs in the architecture of each MiniCPM-V version's LLM (docs/llamacpp.md).

They load in llama.cpp like the real LLMs: the same architecture, the version's real special tokens (chat tags,
image and slice wrappers, end of turn) and chat template, but a few hundred tokens, 2 layers and n_embd equal to the
token width of ``--size tiny`` checkpoints, so that tiny bundles' tokens can be fed to them. The answers mean nothing.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import gguf
import numpy as np

from edge.errors import InputError
from edge.fsutil import atomic_file, refuse_existing

from . import family

LAYERS = 2
HEADS = 4
KV_HEADS = 2  # grouped-query attention, as every one of these LLMs has
FEED_FORWARD = 512
CONTEXT_TRAIN = 4096
RMS_EPS = 1e-6
WEIGHT_STD = 0.02
SSM_HEADS = 4  # Qwen3.5's Gated DeltaNet layers: key and value heads
SSM_HEAD_DIM = 32
SSM_CONV = 4  # the causal convolution's kernel, as in Qwen3.5
EXPERTS_USED = 2
EXPERT_FEED_FORWARD = 128
MOE_VERSION = "4.7"  # the one version with a MoE LLM

# Token types of llama.cpp's vocabulary.
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6

# MiniCPM-V's added tokens around image and slice tokens (2.6 and later add the image id wrapper).
IMAGE_TAGS_V25 = ("<unk>", "<image>", "</image>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>",
                  "<point>", "</point>", "<slice>", "</slice>")
IMAGE_TAGS_V26 = IMAGE_TAGS_V25 + ("<image_id>", "</image_id>")

CHAT_TEMPLATES = {
    "llama3": "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
              "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + "
              "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
              "{{ content }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "chatml": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
              "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
              "{% endif %}",
}

# A few byte-level BPE merges (and SentencePiece pieces), so that the tokenizers have words, not only bytes.
MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("r", "e"))
PIECES = ("▁", "▁t", "▁the", "▁a", "▁i", "in", "er", "on", "re", "he", "e", "t", "a", "o", "i", "n", "s", "r")


@dataclass(frozen=True)
class LlmRecipe:
    """What a version's LLM looks like to llama.cpp: architecture, tokenizer and special tokens."""

    arch: str
    tokenizer: str  # "gpt2": byte-level BPE (Llama-3, Qwen); "llama": SentencePiece (MiniCPM)
    pre: Optional[str]  # llama.cpp's pre-tokenizer name for BPE vocabularies
    chat_tokens: Tuple[str, ...]
    bos: Optional[str]
    eos: str  # the end of an assistant turn
    add_bos: bool
    rope_base: float
    qkv_bias: bool = False  # Qwen2 and Qwen2.5 have q/k/v biases
    qk_norm: bool = False  # Qwen3 RMS-normalises q and k per head
    embedding_scale: Optional[float] = None  # MiniCPM's scale_emb: llama.cpp multiplies every input row by it
    mrope_sections: Optional[Tuple[int, int, int, int]] = None  # Qwen3.5: interleaved M-RoPE over (t, h, w, -)
    full_attention_interval: int = 0  # Qwen3.5: every n-th layer attends, the others are Gated DeltaNet layers
    experts: int = 0  # Qwen3.5 MoE: routed experts (EXPERTS_USED of them a token) beside one shared expert


CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN2 = LlmRecipe("qwen2", "gpt2", "qwen2", CHATML, "<|endoftext|>", "<|im_end|>", False, 1e6, qkv_bias=True)
RECIPES: Dict[str, LlmRecipe] = {
    "llama3": LlmRecipe("llama", "gpt2", "llama-bpe", ("<|begin_of_text|>", "<|end_of_text|>",
                                                      "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
                        "<|begin_of_text|>", "<|eot_id|>", True, 500000.0),
    "qwen2": QWEN2,
    "qwen2.5": QWEN2,  # o-2.6's Qwen2.5 has Qwen2's architecture and tokens
    "minicpm4": LlmRecipe("minicpm", "llama", None, ("<s>", "</s>", "<|im_start|>", "<|im_end|>"), "<s>",
                          "<|im_end|>", True, 10000.0, embedding_scale=12.0),
    "qwen3": LlmRecipe("qwen3", "gpt2", "qwen2", CHATML + ("<think>", "</think>"), "<|endoftext|>", "<|im_end|>",
                       False, 1e6, qk_norm=True),
    # Qwen3.5 (4.6, 4.7): hybrid; the attention layers' 64 rotary dims split 11/11/10 over (t, h, w) as its config
    "qwen3.5": LlmRecipe("qwen35", "gpt2", "qwen35", CHATML + ("<think>", "</think>"), "<|endoftext|>",
                         "<|im_end|>", False, 1e7, qk_norm=True, mrope_sections=(11, 11, 10, 0),
                         full_attention_interval=2),
}
# 4.7's 35B-A3B: Qwen3.5 with a mixture of experts in place of each feed-forward (make-gguf --moe)
QWEN35_MOE = dataclasses.replace(RECIPES["qwen3.5"], arch="qwen35moe", experts=4)


@dataclass(frozen=True)
class Vocabulary:
    tokens: List[str]
    types: List[int]
    scores: List[float]

    def id_of(self, token: str) -> int:
        return self.tokens.index(token)


@dataclass(frozen=True)
class GgufSummary:
    path: Path
    version: str
    arch: str
    n_embd: int
    n_vocab: int


def recipe_for(version: str, moe: bool = False) -> LlmRecipe:
    """The LLM recipe of a MiniCPM-V version (an InputError for an unknown version); `moe`: 4.7's MoE LLM."""
    facts = family.facts_for(version)
    if moe and facts.version != MOE_VERSION:
        raise InputError("--moe: only MiniCPM-V %s has a mixture-of-experts LLM (35B-A3B); leave --moe out for %s"
                         % (MOE_VERSION, version))
    return QWEN35_MOE if moe else RECIPES[facts.llm_family]


def _byte_chars() -> List[str]:
    """GPT-2's byte-level alphabet: the printable bytes stand for themselves, the others for 256 + n."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def vocabulary(version: str) -> Vocabulary:
    """Base tokens, then the chat tokens, then MiniCPM-V's image tags: each string once (llama.cpp aborts on a
    duplicate), the first definition winning (SentencePiece's own ``<unk>`` is also the image placeholder)."""
    recipe = recipe_for(version)
    entries: Dict[str, Tuple[int, float]] = {}
    if recipe.tokenizer == "gpt2":
        for char in _byte_chars():
            entries.setdefault(char, (NORMAL, 0.0))
        for left, right in MERGES:
            entries.setdefault(left + right, (NORMAL, 0.0))
    else:
        entries.update({"<unk>": (UNKNOWN, 0.0), "<s>": (CONTROL, 0.0), "</s>": (CONTROL, 0.0)})
        entries.update({"<0x%02X>" % b: (BYTE, 0.0) for b in range(256)})
        entries.update({piece: (NORMAL, -float(rank)) for rank, piece in enumerate(PIECES)})
    tags = IMAGE_TAGS_V26 if family.facts_for(version).use_image_id else IMAGE_TAGS_V25
    for token in recipe.chat_tokens + tags:
        entries.setdefault(token, (CONTROL, 0.0))
    return Vocabulary(list(entries), [t for t, _ in entries.values()], [s for _, s in entries.values()])


def _tensors(recipe: LlmRecipe, n_vocab: int, n_embd: int, seed: int) -> Dict[str, np.ndarray]:
    """float32 weights in llama.cpp's names; numpy shapes are ggml's dimensions reversed ([out, in])."""
    rng = np.random.default_rng(seed)
    head_dim = n_embd // HEADS

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * WEIGHT_STD).astype(np.float32)

    def ones(n: int) -> np.ndarray:  # RMSNorm gains
        return np.ones(n, dtype=np.float32)

    tensors = {"token_embd.weight": normal(n_vocab, n_embd), "output_norm.weight": ones(n_embd),
               "output.weight": normal(n_vocab, n_embd)}
    for i in range(LAYERS):
        layer = "blk.%d." % i
        tensors[layer + "attn_norm.weight"] = ones(n_embd)
        if recipe.full_attention_interval:  # Qwen3.5: the norm after attention, then the feed-forward
            tensors[layer + "post_attention_norm.weight"] = ones(n_embd)
        else:
            tensors[layer + "ffn_norm.weight"] = ones(n_embd)
        if _is_linear_attention(recipe, i):
            tensors.update(_delta_net(layer, n_embd, normal, ones, rng))
        else:
            gated = 2 if recipe.full_attention_interval else 1  # Qwen3.5's q projection also makes a gate
            tensors.update({
                layer + "attn_q.weight": normal(gated * HEADS * head_dim, n_embd),
                layer + "attn_k.weight": normal(KV_HEADS * head_dim, n_embd),
                layer + "attn_v.weight": normal(KV_HEADS * head_dim, n_embd),
                layer + "attn_output.weight": normal(n_embd, HEADS * head_dim),
            })
        tensors.update(_experts(layer, n_embd, recipe.experts, normal) if recipe.experts else {
            layer + "ffn_gate.weight": normal(FEED_FORWARD, n_embd),
            layer + "ffn_up.weight": normal(FEED_FORWARD, n_embd),
            layer + "ffn_down.weight": normal(n_embd, FEED_FORWARD),
        })
        if recipe.qkv_bias:
            tensors.update({layer + "attn_q.bias": normal(HEADS * head_dim),
                            layer + "attn_k.bias": normal(KV_HEADS * head_dim),
                            layer + "attn_v.bias": normal(KV_HEADS * head_dim)})
        if recipe.qk_norm and not _is_linear_attention(recipe, i):
            tensors.update({layer + "attn_q_norm.weight": ones(head_dim), layer + "attn_k_norm.weight": ones(head_dim)})
    return tensors


def _is_linear_attention(recipe: LlmRecipe, layer: int) -> bool:
    """Whether a layer is a Gated DeltaNet (linear attention) layer: all but every n-th one in Qwen3.5."""
    interval = recipe.full_attention_interval
    return bool(interval) and (layer + 1) % interval != 0


def _delta_net(layer: str, n_embd: int, normal: Callable[..., np.ndarray], ones: Callable[[int], np.ndarray],
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """A Gated DeltaNet layer's tensors as llama.cpp's qwen35 loader names and sizes them: SSM_HEADS key and value
    heads of SSM_HEAD_DIM, a causal convolution of SSM_CONV over q, k and v, decay parameters (A < 0)."""
    key_dim = value_dim = SSM_HEADS * SSM_HEAD_DIM
    conv_dim = 2 * key_dim + value_dim
    return {
        layer + "attn_qkv.weight": normal(conv_dim, n_embd),
        layer + "attn_gate.weight": normal(value_dim, n_embd),
        layer + "ssm_conv1d.weight": normal(conv_dim, SSM_CONV),
        layer + "ssm_dt.bias": normal(SSM_HEADS),
        layer + "ssm_a": -np.exp(rng.uniform(-1.0, 1.0, SSM_HEADS)).astype(np.float32),  # -exp(A_log)
        layer + "ssm_beta.weight": normal(SSM_HEADS, n_embd),
        layer + "ssm_alpha.weight": normal(SSM_HEADS, n_embd),
        layer + "ssm_norm.weight": ones(SSM_HEAD_DIM),
        layer + "ssm_out.weight": normal(n_embd, value_dim),
    }


def _experts(layer: str, n_embd: int, experts: int, normal: Callable[..., np.ndarray]) -> Dict[str, np.ndarray]:
    """A Qwen3.5 MoE feed-forward: the router, `experts` routed experts and one gated shared expert."""
    return {
        layer + "ffn_gate_inp.weight": normal(experts, n_embd),
        layer + "ffn_gate_exps.weight": normal(experts, EXPERT_FEED_FORWARD, n_embd),
        layer + "ffn_up_exps.weight": normal(experts, EXPERT_FEED_FORWARD, n_embd),
        layer + "ffn_down_exps.weight": normal(experts, n_embd, EXPERT_FEED_FORWARD),
        layer + "ffn_gate_inp_shexp.weight": normal(n_embd),
        layer + "ffn_gate_shexp.weight": normal(FEED_FORWARD, n_embd),
        layer + "ffn_up_shexp.weight": normal(FEED_FORWARD, n_embd),
        layer + "ffn_down_shexp.weight": normal(n_embd, FEED_FORWARD),
    }


def write_gguf(out: Path, version: str, seed: int = 0, overwrite: bool = False, moe: bool = False) -> GgufSummary:
    """Write the tiny GGUF LLM of `version` (`moe`: 4.7's MoE LLM) to `out`, whole or not at all."""
    recipe = recipe_for(version, moe)
    refuse_existing(out, overwrite)
    vocab = vocabulary(version)
    n_embd = family.TINY_LLM_HIDDEN
    tensors = _tensors(recipe, len(vocab.tokens), n_embd,
                       seed * 100003 + zlib.crc32((version + ("-moe" if moe else "")).encode()))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(Path(out)) as tmp:
        writer = gguf.GGUFWriter(str(tmp), recipe.arch)
        writer.add_name("tiny random MiniCPM-V %s%s LLM (minicpmv-convert make-gguf, seed %d)"
                        % (version, " MoE" if moe else "", seed))
        writer.add_context_length(CONTEXT_TRAIN)
        writer.add_embedding_length(n_embd)
        writer.add_block_count(LAYERS)
        writer.add_feed_forward_length(FEED_FORWARD)
        writer.add_head_count(HEADS)
        writer.add_head_count_kv(KV_HEADS)
        writer.add_key_length(n_embd // HEADS)
        writer.add_value_length(n_embd // HEADS)
        writer.add_rope_dimension_count(n_embd // HEADS)
        writer.add_rope_freq_base(recipe.rope_base)
        writer.add_layer_norm_rms_eps(RMS_EPS)
        writer.add_vocab_size(len(vocab.tokens))
        if recipe.mrope_sections is not None:
            writer.add_rope_dimension_sections(list(recipe.mrope_sections))
        if recipe.full_attention_interval:
            writer.add_full_attention_interval(recipe.full_attention_interval)
            writer.add_ssm_conv_kernel(SSM_CONV)
            writer.add_ssm_inner_size(SSM_HEADS * SSM_HEAD_DIM)
            writer.add_ssm_state_size(SSM_HEAD_DIM)
            writer.add_ssm_time_step_rank(SSM_HEADS)
            writer.add_ssm_group_count(SSM_HEADS)
        if recipe.experts:
            writer.add_expert_count(recipe.experts)
            writer.add_expert_used_count(EXPERTS_USED)
            writer.add_expert_feed_forward_length(EXPERT_FEED_FORWARD)
            writer.add_expert_shared_feed_forward_length(FEED_FORWARD)
        if recipe.embedding_scale is not None:
            writer.add_embedding_scale(recipe.embedding_scale)
            writer.add_residual_scale(1.4 / math.sqrt(LAYERS))  # MiniCPM's scale_depth / sqrt(layers)
            writer.add_logit_scale(256.0 / n_embd)  # MiniCPM's dim_model_base / hidden size
        _add_tokenizer(writer, recipe, vocab)
        writer.add_chat_template(CHAT_TEMPLATES[family.facts_for(version).chat_template])
        for name, array in tensors.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return GgufSummary(Path(out), version, recipe.arch, n_embd, len(vocab.tokens))


def _add_tokenizer(writer, recipe: LlmRecipe, vocab: Vocabulary) -> None:
    writer.add_tokenizer_model(recipe.tokenizer)
    if recipe.pre is not None:
        writer.add_tokenizer_pre(recipe.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_scores(vocab.scores)
    if recipe.tokenizer == "gpt2":
        writer.add_token_merges(["%s %s" % pair for pair in MERGES])
    else:
        writer.add_unk_token_id(vocab.id_of("<unk>"))
    if recipe.bos is not None:
        writer.add_bos_token_id(vocab.id_of(recipe.bos))
    writer.add_eos_token_id(vocab.id_of(recipe.eos))
    writer.add_add_bos_token(recipe.add_bos)
    writer.add_add_eos_token(False)
