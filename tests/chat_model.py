"""A tiny Qwen2-style chat model saved locally (nothing downloads): a byte-level BPE tokenizer trained
on the data it will see, a Qwen-style chat template, two EOS ids in the generation config, and a
parquet file in GSM8K's exact schema."""

from pathlib import Path

import datasets
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GSM8K = {
    "question": [
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
        "How much did she earn?",
        "Betty is saving money for a new wallet which costs $100. How much more money does she need?",
        "James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?",
    ],
    "answer": [
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nShe earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
        "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\n#### 5",
        "He writes each friend 3*2=<<3*2=6>>6 pages a week.\n#### 624",
    ],
}


def save_chat_model(folder: Path) -> Path:
    """Write the model and tokenizer to ``folder``; return it."""
    texts = [*GSM8K["question"], *GSM8K["answer"], "Solve the problem step by step. #### 0123456789"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_gsm8k(path: Path) -> Path:
    datasets.Dataset.from_dict(GSM8K).to_parquet(str(path))
    return path
