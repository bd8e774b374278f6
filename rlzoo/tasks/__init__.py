"""The embedded tasks: small arithmetic reasoning tasks and a tiny model warm-started on each.

With no model and no data named, rlzoo runs on this: prompts ``37+48+55=``, completions that write
each partial sum with optional verbose steps and end in ``#<answer>``, a correctness reward, and a
0.53 M-parameter Llama-style model shipped in ``assets/`` (see :mod:`rlzoo.tasks.warmstart`)::

    from rlzoo.tasks import DEFAULT, load_model, evaluate
    model, tokenizer = load_model()
    train, held_out = DEFAULT.train_dataset(), DEFAULT.eval_dataset(200)
    evaluate(model, tokenizer, held_out, greedy=False, num_samples=8)

A second task, ``chain4`` (:mod:`rlzoo.tasks.chain`: four-number sums whose partial sums the answer
needs, so a length reward that only shortens loses accuracy), ships its own warm start of the same
model; ``TASKS`` names both and ``get_task(name)`` picks one (``--task`` on the command line).

Submodules load lazily: the dataset and the reward (:mod:`rlzoo.tasks.arithmetic`) are plain
Python and never import torch or transformers.
"""

import importlib
from typing import Any

_ATTRIBUTES = {
    "CHAIN4": "rlzoo.tasks.default",
    "DEFAULT": "rlzoo.tasks.default",
    "TASKS": "rlzoo.tasks.default",
    "Task": "rlzoo.tasks.default",
    "get_task": "rlzoo.tasks.default",
    "arithmetic_correct": "rlzoo.tasks.arithmetic",
    "make_split": "rlzoo.tasks.arithmetic",
    "evaluate": "rlzoo.tasks.evaluation",
    "ASSETS": "rlzoo.tasks.model",
    "build_tokenizer": "rlzoo.tasks.model",
    "load_model": "rlzoo.tasks.model",
    "new_model": "rlzoo.tasks.model",
}
_SUBMODULES = ("arithmetic", "chain", "default", "evaluation", "model", "warmstart")

__all__ = [*_SUBMODULES, *_ATTRIBUTES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"rlzoo.tasks.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'rlzoo.tasks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
