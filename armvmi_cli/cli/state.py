"""Process-wide CLI state set by the root callback."""

DEBUG = False
