class UserError(Exception):
    """Bad input or a request that cannot be carried out; the message is safe to show the operator."""


class NotFound(UserError):
    pass


class JobFailed(UserError):
    """A job that ran to the end but whose outcome is a failure (e.g. a verification found corruption).

    `result` is kept on the job row, so the details are not lost with the exception.
    """

    def __init__(self, message: str, *, result: dict):
        super().__init__(message)
        self.result = result


class ConflictError(UserError):
    """The action clashes with the current state (e.g. a backup of the target is already running)."""
