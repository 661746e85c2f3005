"""Cross-process tests of the Redis backplane (contract §8).

A package, so that its conftest.py is ``backplane.conftest`` and does not take the module name
``conftest`` from tests/conftest.py, which every test module imports helpers from.
"""
