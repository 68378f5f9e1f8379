"""Models and data as a user writes them, outside unlearnkit (for the ``forget`` tests)."""
