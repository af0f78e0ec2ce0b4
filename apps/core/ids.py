def new_id() -> str:
    """A ULID: unique, and sorts by creation time (handy in storage keys and listings)."""
    from ulid import ULID  # imported on first use: models reference new_id at Django start-up

    return str(ULID())
