"""The two forms TRL gives prompts and completions in: plain text, or chat messages (imports no torch).

A chat prompt is a list of ``{"role", "content"}`` messages; a chat completion is
``[{"role": "assistant", "content": text}]``. Reward functions built into rlzoo accept both forms.
"""

from typing import Any


def is_chat(value: Any) -> bool:
    """Whether a prompt or completion is a list of chat messages (else plain text)."""
    return not isinstance(value, str)


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of a completion in either form (a chat completion's last message)."""
    return completion if isinstance(completion, str) else str(completion[-1]["content"])
