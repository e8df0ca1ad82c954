"""The one exception type that reaches the user as a clean one-line message.

Anything raised as `R1Error` is printed by the CLI as `error: <message>` and the
process exits with code 2; every other exception is a bug and keeps its traceback.
"""


class R1Error(Exception):
    """A problem with the user's input (config, data, model spec), not a bug."""
