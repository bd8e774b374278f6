"""Held-out evaluation of a model on the embedded task (or any prompt/answer rows): the trainer's evaluation."""

from collections.abc import Callable, Iterable, Mapping

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlzoo.rewards import Scorer
from rlzoo.tasks.arithmetic import arithmetic_correct
from rlzoo.trainer import evaluation
from rlzoo.trainer.engines import HFGenerator

__all__ = ["evaluate"]


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Iterable[Mapping[str, str]],
    *,
    greedy: bool = True,
    num_samples: int = 1,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    batch_size: int = 512,
    seed: int | None = 0,
    reward: Callable[..., list[float]] = arithmetic_correct,
) -> dict[str, float]:
    """Reward, accuracy and length of ``model`` on ``examples`` (rows with a ``prompt`` and the reward's columns).

    :func:`rlzoo.trainer.evaluation.evaluate` with Hugging Face ``generate`` (pure temperature
    sampling: no top-k, no top-p) and ``reward`` run in this process: ``reward``, ``length``,
    ``truncated`` and, for a reward with ``verifies_correctness = True`` (the default does),
    ``accuracy``, ``all_correct``, ``all_wrong`` and ``mixed`` over each prompt's ``num_samples``
    completions. ``seed`` seeds sampling without disturbing the caller's RNG; ``None`` uses it.
    """
    return evaluation.evaluate(
        model, tokenizer, [dict(row) for row in examples], scorer=Scorer([reward], timeout=None),
        generator=HFGenerator(), greedy=greedy, num_samples=num_samples, max_new_tokens=max_new_tokens,
        temperature=temperature, batch_size=batch_size, seed=seed,
    )
