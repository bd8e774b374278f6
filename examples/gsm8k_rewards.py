"""A reward function written for TRL's GRPOTrainer, used as it is: `--reward examples/gsm8k_rewards.py:answer_line`."""

import re

ANSWER_LINE = re.compile(r"^#### -?[\d,]+(\.\d+)?\s*$", re.MULTILINE)


def answer_line(prompts, completions, **kwargs):
    """1.0 when the completion ends its reasoning with a GSM8K answer line ("#### 42"), else 0.0."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [1.0 if ANSWER_LINE.search(t) else 0.0 for t in texts]
