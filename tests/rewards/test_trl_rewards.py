"""TRL's own reward functions (``trl.rewards``) train unchanged on a chat dataset (optional: the ``bench`` extra)."""

import math

import pytest

trl_rewards = pytest.importorskip("trl.rewards", reason="TRL is not installed (pip install -e '.[bench]')")

from rlzoo.trainer import Trainer  # noqa: E402
from tests.trainer.helpers import ScriptedGenerator, config, rows, tiny  # noqa: E402

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}={% endif %}"


def chat_rows(n: int) -> list[dict]:
    """The arithmetic prompts as chat messages, with TRL's ``solution`` column."""
    return [{"prompt": [{"role": "user", "content": r["prompt"].rstrip("=")}], "solution": r["answer"]}
            for r in rows(n)]


def functions() -> dict:
    out = {
        "think_format_reward": trl_rewards.think_format_reward,
        "soft_overlong_punishment": trl_rewards.get_soft_overlong_punishment(max_completion_len=12,
                                                                              soft_punish_cache=6),
    }
    try:
        import math_verify  # noqa: F401
    except ImportError:
        return out
    return out | {"accuracy_reward": trl_rewards.accuracy_reward,
                  "cosine_scaled_reward": trl_rewards.get_cosine_scaled_reward(max_len=12)}


@pytest.mark.parametrize("name", ["think_format_reward", "soft_overlong_punishment", "accuracy_reward",
                                  "cosine_scaled_reward"])
def test_a_trl_reward_function_trains_unchanged_on_chat_data(name: str, tmp_path) -> None:
    available = functions()
    if name not in available:
        pytest.skip("math-verify is not installed (pip install -e '.[math]')")
    model, tok = tiny()
    tok.chat_template = TEMPLATE
    cfg = config(tmp_path, steps=1, reward_timeout=None)
    trainer = Trainer(model, tok, "grpo", chat_rows(8), {name: available[name]}, cfg, generator=ScriptedGenerator())
    (h,) = trainer.train()
    assert h[f"reward/{name}/unscored"] == 0.0 and h[f"reward/{name}/errors"] == 0.0
    assert math.isfinite(h[f"reward/{name}/mean"])
