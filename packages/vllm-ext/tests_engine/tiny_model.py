"""A tiny random-weight Llama with its own BPE tokenizer, made locally (no model hub).

``head_dim`` is 64 because vLLM's CPU attention backend rejects smaller heads. The weights are random,
so the text is noise: tests ask for ``ignore_eos`` and a fixed ``max_tokens`` to get exact token counts.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SENTENCES = [
    "the engine schedules requests and generates tokens step by step",
    "a tiny model with random weights writes noise quickly on a small machine",
    "observability means metrics traces and logs that explain what happened",
    "hello world this is a test of the tokenizer with a few common words",
    "time to first token and time per output token are server side latencies",
]


def make_tiny_llama(directory: Path) -> Path:
    """Write config, random weights and tokenizer into ``directory`` (about 5 MB); returns it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(SENTENCES * 4, trainers.BpeTrainer(vocab_size=384, special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


if __name__ == "__main__":
    import sys

    print(make_tiny_llama(Path(sys.argv[1])))
