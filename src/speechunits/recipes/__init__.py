"""Recipes: end-to-end workflows built only from the public library API.

A recipe chains the toolkit's steps the way a user would (synthesise, extract, fit, encode,
measure, report) and returns its results as dataclasses; the CLI command that runs it stays a
thin module in :mod:`speechunits.cli`.

* :mod:`speechunits.recipes.demo` - the offline demo behind ``speechunits demo``.
"""
