"""transformers' MiniCPM-V 4.6 / 4.7 processors and 4.7's position code, runnable without a checkpoint.

The processors need a tokenizer that knows the layout's tokens; a character-level one built here is enough (each
printable character is one token, the markers are special tokens). The video processor needs torchvision, which is
not installed, so the processors are assembled without it (images only). The 4.7 position code is borrowed from
``MiniCPMV4_7Model`` onto a small object holding only the config it reads: no model is built.
"""
from __future__ import annotations

import string
import types
from typing import Any, Dict

import numpy as np

MARKERS = {"image_token": "<unk>", "video_token": "<video>", "image_start_token": "<image>",
           "image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>",
           "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"}


def tiny_tokenizer() -> Any:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import TokenizersBackend

    vocab = {token: i for i, token in enumerate(["[PAD]"] + sorted(set(string.printable)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[PAD]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), "isolated")
    return TokenizersBackend(tokenizer_object=tokenizer, extra_special_tokens=MARKERS, pad_token="[PAD]")


def processor(version: str, tokenizer: Any = None) -> Any:
    """transformers' processor of `version` ("4.6" or "4.7") with the PIL image processor and `tokenizer`."""
    from transformers.models.minicpmv4_6 import MiniCPMV4_6ImageProcessorPil, MiniCPMV4_6Processor
    from transformers.models.minicpmv4_7.processing_minicpmv4_7 import MiniCPMV4_7Processor

    cls = MiniCPMV4_6Processor if version == "4.6" else MiniCPMV4_7Processor
    made = cls.__new__(cls)  # its __init__ insists on a (torchvision) video processor
    made.tokenizer = tokenizer or tiny_tokenizer()
    made.image_processor = MiniCPMV4_6ImageProcessorPil()
    made.video_processor = types.SimpleNamespace(slice_mode=True, downsample_mode="16x")
    made.chat_template, made.audio_tokenizer = None, None
    made.slice_mode = made.video_slice_mode = True
    made.default_use_image_id = True
    for name in ["image_token", "video_token", "image_token_id", "video_token_id"] + list(MARKERS)[2:]:
        setattr(made, name, getattr(made.tokenizer, name))
    return made


def marker_ids(tokenizer: Any) -> Dict[str, int]:
    """config.json's marker ids of a 4.7 checkpoint, for this tokenizer."""
    ids = {"image_start_id": "<image>", "image_end_id": "</image>", "slice_start_id": "<slice>",
           "slice_end_id": "</slice>", "newline_id": "\n"}
    return {key: tokenizer.convert_tokens_to_ids(token) for key, token in ids.items()}


def rope_index(tokenizer: Any, input_ids: np.ndarray, mm_token_type_ids: np.ndarray, target_sizes: np.ndarray,
               downsample_mode: str) -> np.ndarray:
    """transformers' MiniCPMV4_7Model.get_rope_index for one sequence: [3, n] positions."""
    import torch
    from transformers.models.minicpmv4_7.modeling_minicpmv4_7 import MiniCPMV4_7Model

    class Borrowed:
        get_rope_index = MiniCPMV4_7Model.get_rope_index
        _group_visual_frames = MiniCPMV4_7Model._group_visual_frames
        _frame_end_idx = staticmethod(MiniCPMV4_7Model._frame_end_idx)
        get_vision_position_ids = MiniCPMV4_7Model.get_vision_position_ids

    model = Borrowed()
    model.config = types.SimpleNamespace(downsample_mode="16x", **marker_ids(tokenizer))
    positions, _ = model.get_rope_index(torch.as_tensor(np.asarray(input_ids)).reshape(1, -1),
                                        mm_token_type_ids=torch.as_tensor(np.asarray(mm_token_type_ids)).reshape(1, -1),
                                        target_sizes=torch.as_tensor(np.asarray(target_sizes)),
                                        downsample_mode=downsample_mode)
    return positions[:, 0].numpy()
