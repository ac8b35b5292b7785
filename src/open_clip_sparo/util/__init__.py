"""Plumbing every layer shares: file writing and reading (``files``), expected failures and the
one entry-point handler (``errors``), the one top-k accuracy (``metrics``)."""
