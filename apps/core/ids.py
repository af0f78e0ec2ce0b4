from ulid import ULID


def new_id() -> str:
    """A ULID: unique, and sorts by creation time (handy in storage keys and listings)."""
    return str(ULID())
