"""URL converters: an id in a path is checked for shape before any query sees it.

Backups, jobs and verification runs have ULIDs; anything else in their place
(`..`, a NUL byte, 500 characters) is a 404 from the URL resolver, not a value a
database driver might refuse with an error.
"""
from django.urls import register_converter


class UlidConverter:
    regex = "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}"

    def to_python(self, value: str) -> str:
        return value.upper()  # stored in upper case; Crockford base32 is case-insensitive

    def to_url(self, value: str) -> str:
        return str(value)


register_converter(UlidConverter, "ulid")
