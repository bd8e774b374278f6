"""The one Registry: registration, lookup, validated construction, plugins, and the package rule."""

import dataclasses
import importlib.metadata
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlzoo.errors import ConfigError
from rlzoo.params import check, component_label
from rlzoo.registry import Registry


def make_registry() -> Registry:
    """A scoped registry with two toy components (never touches a real registry)."""
    reg: Registry = Registry("toy estimator")

    @reg.register("alpha", aliases=("a",))
    @dataclass(frozen=True)
    class Alpha:
        """Alpha: A = r * scale (toy).

        More text that is not the summary.
        """

        scale: float = 1.0
        mode: Literal["up", "down"] = "up"
        steps: int = 3

        def __post_init__(self) -> None:
            check(self, "scale", self.scale > 0, "must be > 0")

    @reg.register("beta_2")
    @dataclass(frozen=True)
    class Beta:
        """Beta needs a width."""

        width: int
        names: tuple[str, ...] = ()

    return reg


def test_build_forms_agree() -> None:
    reg = make_registry()
    a = reg.build("alpha", scale=2)
    assert a == reg.build({"name": "alpha", "scale": 2.0}) == reg.build("a", scale=2.0)
    assert isinstance(a.scale, float) and a.scale == 2.0  # int coerced to float
    assert reg.build(a) is a  # a built component passes through
    assert reg.build(a, steps=5).steps == 5 and reg.build(a, steps=5).scale == 2.0
    assert reg.build({"name": "alpha", "scale": 2}, scale=3).scale == 3.0  # keywords win


def test_list_coerced_to_tuple_for_tuple_fields() -> None:
    reg = make_registry()
    assert reg.build("beta_2", width=1, names=["x", "y"]).names == ("x", "y")


def test_unknown_name_names_kind_close_matches_and_full_list() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError) as err:
        reg.build("alpah")
    msg = str(err.value)
    assert "unknown toy estimator 'alpah'" in msg
    assert "did you mean 'alpha'" in msg
    assert "known: alpha, beta_2" in msg


def test_real_registry_suggests_grpo() -> None:
    import rlzoo

    with pytest.raises(ConfigError, match="did you mean 'grpo'"):
        rlzoo.advantages.build("gpro")


def test_all_parameter_problems_reported_at_once() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError) as err:
        reg.build({"name": "alpha", "scale": "big", "mode": "sideways", "stepz": 4})
    msg = str(err.value)
    assert msg.startswith("toy estimator 'alpha':")
    assert "parameter 'scale' expects float, got 'big' (str)" in msg
    assert "parameter 'mode' expects Literal['up', 'down'], got 'sideways'" in msg
    assert "unknown parameter 'stepz' (did you mean 'steps'?)" in msg
    assert "Valid parameters: scale: float = 1.0; mode: Literal['up', 'down'] = 'up'; steps: int = 3" in msg


def test_missing_required_parameter() -> None:
    reg = make_registry()
    with pytest.raises(
        ConfigError, match=r"toy estimator 'beta_2': missing required parameter 'width' \(int\)"
    ):
        reg.build("beta_2")


def test_bool_is_not_an_int_and_float_is_not_an_int() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError, match="parameter 'steps' expects int, got True"):
        reg.build("alpha", steps=True)
    with pytest.raises(ConfigError, match=r"parameter 'steps' expects int, got 2\.5"):
        reg.build("alpha", steps=2.5)


def test_range_check_names_component_param_and_value() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError, match=r"toy estimator 'alpha': scale=-1.0 must be > 0"):
        reg.build("alpha", scale=-1)


def test_spec_shapes_rejected_clearly() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError, match="needs a 'name' key"):
        reg.build({"scale": 1.0})
    with pytest.raises(ConfigError, match="must be a name, a mapping"):
        reg.build(3)  # type: ignore[arg-type]
    other = Registry("other kind")

    @other.register("x")
    @dataclass(frozen=True)
    class X:
        """X."""

    with pytest.raises(ConfigError, match="expected a toy estimator, got"):
        reg.build(X())


def test_duplicate_registration_raises() -> None:
    reg = make_registry()
    for name in ("alpha", "a"):
        with pytest.raises(ConfigError, match=f"'{name}' is already registered"):

            @reg.register(name)
            @dataclass(frozen=True)
            class Dup:
                """Dup."""


def test_only_frozen_dataclasses_register() -> None:
    reg = make_registry()
    with pytest.raises(ConfigError, match="must be a frozen dataclass"):

        @reg.register("loose")
        @dataclass
        class Loose:
            """Loose."""


def test_names_glob_natural_sort_and_describe() -> None:
    reg = make_registry()
    for i in (10, 2, 1):

        @reg.register(f"k{i}")
        @dataclass(frozen=True)
        class K:
            """K."""

    assert reg.names("k*") == ["k1", "k2", "k10"]
    assert "a" in reg and "alpha" in reg and "zzz" not in reg
    assert len(reg) == 5
    text = reg.describe("a")
    assert text.splitlines()[0] == "alpha (aliases: a) — Alpha: A = r * scale (toy)."
    assert "    steps: int = 3" in text
    assert reg.describe("beta_2").splitlines()[1] == "    width: int"


def test_copy_is_independent() -> None:
    reg = make_registry()
    scoped = reg.copy()

    @scoped.register("gamma")
    @dataclass(frozen=True)
    class Gamma:
        """Gamma."""

    assert "gamma" in scoped and "gamma" not in reg


def test_component_label() -> None:
    reg = make_registry()
    assert component_label(reg.build("alpha")) == "toy estimator 'alpha'"
    assert component_label(object()) == "object"


@given(st.floats(min_value=1e-6, max_value=1e6), st.sampled_from(["up", "down"]), st.integers(0, 100))
def test_build_round_trips_any_valid_spec(scale: float, mode: str, steps: int) -> None:
    reg = make_registry()
    built = reg.build({"name": "alpha", "scale": scale, "mode": mode, "steps": steps})
    assert dataclasses.asdict(built) == {"scale": scale, "mode": mode, "steps": steps}


def write_plugin(root, body: str, value: str, group: str = "rlzoo.toy") -> None:
    """A fake installed distribution ``toyplugin`` under ``root`` with entry points ``value`` in ``group``."""
    (root / "toyplugin.py").write_text(textwrap.dedent(body))
    dist = root / "toyplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{value}\n")


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch) -> None:
    write_plugin(
        tmp_path,
        """
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class Mine:
            '''A third-party estimator.'''
            k: int = 2
        """,
        "mine = toyplugin:Mine",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toyplugin", raising=False)  # another test's toyplugin
    reg: Registry = Registry("toy estimator", entry_point_group="rlzoo.toy")
    assert reg.names() == ["mine"]
    assert reg.build("mine", k=3).k == 3


def test_plain_functions_register_where_the_registry_allows_them() -> None:
    reg: Registry = Registry("toy reward", functions=True)

    @reg.register("fmt", aliases=("format",))
    def fmt(prompts, completions, **columns):
        """1 for a completion that ends with a full stop.

        More text.
        """
        return [float(c.endswith(".")) for c in completions]

    assert reg.build("fmt") is fmt and reg.build({"name": "format"}) is fmt
    assert reg.describe("fmt") == "fmt (aliases: format) — 1 for a completion that ends with a full stop.\n    (no parameters)"
    assert reg.get("fmt").is_function and not hasattr(fmt, "component_name")  # registered as it is
    with pytest.raises(ConfigError, match=r"toy reward 'fmt' is a plain function \(.*fmt\) and takes no parameters, got scale"):
        reg.build("fmt", scale=2)
    with pytest.raises(ConfigError, match=r"toy reward 'three': 3 \(int\) must be a frozen dataclass or a function$"):
        reg.register("three")(3)
    with pytest.raises(ConfigError, match=r"toy estimator 'fn': .*fmt \(function\) must be a frozen dataclass$"):
        make_registry().register("fn")(fmt)  # a registry of dataclasses only
    assert reg.copy().build("fmt") is fmt


PLUGIN_FUNCTIONS = """
THRESHOLD = 3

def fmt(prompts, completions, **columns):
    '''A third-party reward function.'''
    return [1.0] * len(completions)
"""


def test_a_plain_function_plugin_is_loaded(tmp_path, monkeypatch) -> None:
    write_plugin(tmp_path, PLUGIN_FUNCTIONS, "fmt = toyplugin:fmt\nlimit = toyplugin:THRESHOLD")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toyplugin", raising=False)
    installed = importlib.metadata.entry_points
    monkeypatch.setattr(  # the good entry point alone first
        importlib.metadata, "entry_points", lambda group: [ep for ep in installed(group=group) if ep.name == "fmt"]
    )
    reg: Registry = Registry("toy reward", entry_point_group="rlzoo.toy", functions=True)
    assert reg.names() == ["fmt"] and reg.build("fmt")(["q"], ["a"]) == [1.0]
    assert reg.get("fmt").summary == "A third-party reward function."
    monkeypatch.setattr(importlib.metadata, "entry_points", installed)
    with pytest.raises(
        ConfigError,
        match=r"toy reward 'limit' \(plugin toyplugin:THRESHOLD, entry point group 'rlzoo.toy'\): 3 \(int\) "
        "must be a frozen dataclass or a function",
    ):
        Registry("toy reward", entry_point_group="rlzoo.toy", functions=True).names()


def test_broken_plugin_is_named(tmp_path, monkeypatch) -> None:
    write_plugin(tmp_path, "raise RuntimeError('boom')\n", "bad = toyplugin:Missing")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toyplugin", raising=False)
    reg: Registry = Registry("toy estimator", entry_point_group="rlzoo.toy")
    with pytest.raises(
        ConfigError, match=r"toy estimator plugin 'bad' \(toyplugin:Missing.*RuntimeError: boom"
    ):
        reg.names()


REGISTRY_PACKAGES = ("rlzoo.advantages", "rlzoo.rewards", "rlzoo.losses", "rlzoo.selectors")


@pytest.mark.parametrize("package", REGISTRY_PACKAGES)
def test_every_public_module_is_imported_and_registers_something(package: str) -> None:
    """A forgotten import in a package __init__ leaves its components unregistered: catch it.

    Runs in a fresh interpreter so that this test's own imports cannot hide the mistake.
    """
    script = f"""
import importlib, json, pkgutil, sys
pkg = importlib.import_module({package!r})
public = [m.name for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + ".")
          if not m.name.rsplit(".", 1)[1].startswith("_")]
imported = [m for m in public if m in sys.modules]
import rlzoo.cli as cli
registered = {{e.cls.__module__ for kind in cli.KINDS for e in cli.registry(kind)}}
print(json.dumps({{"public": public, "imported": imported,
                  "registering": sorted(registered)}}))
"""
    out = json.loads(
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    )
    assert out["public"], f"{package} has no public module"
    not_imported = sorted(set(out["public"]) - set(out["imported"]))
    assert not not_imported, f"{package}/__init__.py does not import {not_imported}"
    silent = sorted(set(out["public"]) - set(out["registering"]))
    assert not silent, f"{silent} register no component: register one or make the module private (_name.py)"


def test_import_is_lazy_and_cheap() -> None:
    script = "import sys, rlzoo; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + script], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []



def test_every_component_built_directly_checks_its_fields() -> None:
    """``GRPO(scale="grup")`` fails like ``build({"name": "grpo", "scale": "grup"})`` does, for every
    registered component and every field (a value of the wrong type, or an option that does not exist)."""
    import typing

    from rlzoo.cli import KINDS, registry

    unchecked = []
    for kind in KINDS:
        reg = registry(kind)
        for name in reg.names():
            cls = reg.get(name).cls
            if not isinstance(cls, type):
                continue  # a plain function has no fields
            hints = typing.get_type_hints(cls)
            for f in dataclasses.fields(cls):
                if not f.init:
                    continue
                hint = hints[f.name]
                wrong = "no-such-option" if typing.get_origin(hint) is typing.Literal else object()
                try:
                    cls(**{f.name: wrong})
                    unchecked.append(f"{kind}:{name}.{f.name}")
                except ConfigError as exc:
                    assert f"parameter '{f.name}' expects" in str(exc), exc
    assert not unchecked, unchecked
