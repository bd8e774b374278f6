"""The exceptions rlzoo raises. Every message names the component, the argument and the value."""


class RlzooError(Exception):
    """Base class of every error rlzoo raises on purpose."""


class ConfigError(RlzooError, ValueError):
    """A component, recipe or trainer was configured with something that cannot work."""


class DataError(RlzooError, ValueError):
    """A tensor handed to a component has the wrong shape, dtype or a non-finite value."""
