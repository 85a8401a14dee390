"""Helpers the tests import by name: factories, OAuth requests and refusals, console rows, OIDC
issuers, posture data. Fixtures stay in the conftest files; plain functions live here."""
