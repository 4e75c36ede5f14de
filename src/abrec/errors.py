"""Named exceptions shared by every stage; each message tells the user what to do."""


class AbrecError(Exception):
    """Base class for every error abrec raises on purpose."""


class DataError(AbrecError, ValueError):
    """Input data is missing, malformed or inconsistent."""


class DatasetUnavailableError(AbrecError, FileNotFoundError):
    """A dataset is neither under ABREC_DATA nor downloadable."""


class ConfigError(AbrecError, ValueError):
    """A configuration file or value is invalid."""


class NotFittedError(AbrecError, RuntimeError):
    """A model was used before `fit` or `load`."""


class StoreError(AbrecError, RuntimeError):
    """The event store could not complete an operation."""


class ExperimentError(AbrecError, ValueError):
    """An experiment spec or state change is invalid."""
