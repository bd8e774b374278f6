"""YAML as rlzoo reads it: PyYAML's safe loader with YAML 1.2 floats, so ``1e-5`` is a number.

PyYAML follows YAML 1.1, whose floats need a dot and a signed exponent: ``1e-5``, ``5E-6`` and
``1.0e37`` load as strings there, and a learning rate written the way everyone writes it is
refused. Every place rlzoo parses YAML text (config files, ``--set`` values, recipe overrides,
``TrainConfig.from_yaml``) goes through :func:`load`.

Implementation details:

1. Floats follow the YAML 1.2 core schema: ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?``
   plus ``.inf``, ``-.inf`` and ``.nan`` (any of their three spellings). A plain ``[-+]?[0-9]+``
   stays an int (``steps=50``), as in YAML 1.2 where the int rule is tried first.
2. YAML 1.1 float forms that YAML 1.2 dropped (``1_000.5``, sexagesimal ``1:30.5``) are strings.
3. Everything else is PyYAML's ``SafeLoader``: ints, bools, nulls, timestamps and no Python tags.
"""

import re
from typing import Any

import yaml

_FLOAT_TAG = "tag:yaml.org,2002:float"
# The YAML 1.2 float rule less its pure integers (PyYAML tries the float resolver before the int one).
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?[0-9]+[eE][-+]?[0-9]+"
    r"|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN))$"
)


class Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose float resolver follows YAML 1.2 (see the module docstring)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT if tag == _FLOAT_TAG else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(text: str) -> Any:
    """Parse YAML text with :class:`Loader`; malformed text raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=Loader)
