"""People who use the registry, as pytest fixtures: anonymous, requester, teammate, approver, admin.

Import the fixtures into a conftest (`from tests.registry.personas import *` is avoided: name them).
Each persona fixture returns an API client logged in with that user's token; `.user` is the user.
"""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from registry.models import APPROVERS_GROUP


def client_for(user: "User | None") -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


def make_approver(username: str) -> User:
    user = User.objects.create_user(username, password="pw")
    group, _ = Group.objects.get_or_create(name=APPROVERS_GROUP)
    group.permissions.add(Permission.objects.get(codename="approve_release"))
    user.groups.add(group)
    return user


@pytest.fixture
def anonymous() -> APIClient:
    return client_for(None)


@pytest.fixture
def requester() -> APIClient:
    return client_for(User.objects.create_user("rita", password="pw"))


@pytest.fixture
def teammate() -> APIClient:
    """Logged in, neither the requester nor an approver."""
    return client_for(User.objects.create_user("tom", password="pw"))


@pytest.fixture
def approver() -> APIClient:
    return client_for(make_approver("alice"))


@pytest.fixture
def admin() -> APIClient:
    return client_for(User.objects.create_superuser("root", "root@example.com", "pw"))
