class UserError(Exception):
    """Bad input or a request that cannot be carried out; the message is safe to show the operator."""


class NotFound(UserError):
    pass


class ConflictError(UserError):
    """The action clashes with the current state (e.g. a backup of the target is already running)."""
