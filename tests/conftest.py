"""The suite's shared fixtures, markers and hooks live in the `tests.support.plugin` plugin."""
pytest_plugins = ("tests.support.plugin",)
