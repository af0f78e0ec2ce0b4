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


class Deferred(UserError):
    """The request was accepted but is not carried out now (it waits for a second admin's approval): the API
    answers 202 with `body`; the console and admin show the message."""

    def __init__(self, message: str, *, body: dict):
        super().__init__(message)
        self.body = body
