"""The root of qd-bluesky's user-facing errors, importable without the heavy layers."""


class QdBlueskyError(Exception):
    """An error whose message is one line meant for the user as it is."""
