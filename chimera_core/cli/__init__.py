"""The ``chimera`` command line."""
