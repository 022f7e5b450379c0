"""Tiny randomly initialised zero-shot detectors of transformers, saved as folders, for the text
tests: the configs are shrunk to a few channels and the tokenizers get a vocabulary of a few
words (nothing can be downloaded)."""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "the", "dog", "cat", "ball", "red", "detect", "photo", "of", ".", ",", "?"]


def _bert_tokenizer():
    from transformers import BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)})


def _clip_tokenizer():
    """Byte-pair tokens of single letters (no merges): every word of :data:`WORDS` encodes.
    The pad token "!" is id 0, as in CLIP (OWL drops queries that start with id 0)."""
    from transformers import CLIPTokenizerFast

    letters = sorted({c for w in WORDS for c in w})
    tokens = ["!", "<|startoftext|>", "<|endoftext|>", *letters, *[c + "</w>" for c in letters]]
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizerFast(vocab=vocab, merges=[], pad_token="!")


def _save(folder: Path, model, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def grounding_dino(folder: Path) -> Path:
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    backbone = SwinConfig(
        image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        window_size=2, out_features=["stage2", "stage3", "stage4"],
    )  # fmt: skip
    text = BertConfig(
        vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64,
    )  # fmt: skip
    config = GroundingDinoConfig(
        backbone_config=backbone, text_config=text, num_queries=12, encoder_layers=1,
        decoder_layers=2, d_model=32, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=3,
        encoder_n_points=2, decoder_n_points=2, max_text_len=32,
    )  # fmt: skip
    model = GroundingDinoForObjectDetection(config).eval()
    images = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    processor = GroundingDinoProcessor(images, _bert_tokenizer())
    return _save(folder, model, processor)


def owlv2(folder: Path) -> Path:
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = _clip_tokenizer()
    text = {
        "vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16,
        "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }  # fmt: skip
    vision = {
        "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
    }  # fmt: skip
    config = Owlv2Config(text_config=text, vision_config=vision, projection_dim=16)
    model = Owlv2ForObjectDetection(config).eval()
    images = Owlv2ImageProcessor(size={"height": 32, "width": 32})
    tokenizer.model_max_length = 16
    return _save(folder, model, Owlv2Processor(images, tokenizer))


def omdet_turbo(folder: Path) -> Path:
    import torch
    from transformers import (
        CLIPTextConfig,
        DetrImageProcessor,
        OmDetTurboConfig,
        OmDetTurboForObjectDetection,
        OmDetTurboProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = _clip_tokenizer()
    backbone = SwinConfig(
        image_size=64, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
        window_size=2, out_indices=[2, 3, 4],
    )  # fmt: skip
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    config = OmDetTurboConfig(
        backbone_config=backbone, use_timm_backbone=False, text_config=text, image_size=64,
        apply_layernorm_after_vision_backbone=False,  # HF Swin gives channels-first maps
        text_projection_in_dim=16, text_projection_out_dim=16, task_encoder_hidden_dim=16,
        class_embed_dim=16, num_queries=12, encoder_hidden_dim=32,
        vision_features_channels=[32, 32, 32], encoder_in_channels=[16, 32, 64],
        encoder_attention_heads=2, encoder_dim_feedforward=32, decoder_hidden_dim=32,  # != class_embed_dim: transformers needs its task_project
        decoder_num_heads=2, decoder_num_layers=1, decoder_dim_feedforward=32,
        decoder_num_points=2, cache_size=8,
    )  # fmt: skip
    model = OmDetTurboForObjectDetection(config).eval()
    images = DetrImageProcessor(size={"height": 64, "width": 64}, do_pad=False)
    return _save(folder, model, OmDetTurboProcessor(images, tokenizer))
