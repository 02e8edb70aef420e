"""Test-suite wiring: each harness module is a pytest plugin with its own fixtures."""

pytest_plugins = [
    "tests.harness.plugin_mail",
    "tests.harness.plugin_telegram",
    "tests.harness.plugin_app",
]
