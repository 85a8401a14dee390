"""Console view-test fixtures: signed-in clients."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def signed_in():
    """``signed_in(user)`` → a test client with a session for that user."""

    def make(user):
        client = Client()
        client.force_login(user)
        return client

    return make
