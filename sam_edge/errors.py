"""The one exception for bad input: the entry points print it as one line and exit 2."""


class InputError(ValueError):
  """A flag, path or file a run cannot use; its message names the flag or file."""
