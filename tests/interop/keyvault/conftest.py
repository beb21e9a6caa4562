"""Fixtures for the Azure SDK interop tests of the Strongroom key vault.

The Rust driver (`cargo test -p keyvault --test azure_sdk_interop`) starts the identity
service and the key vault in-process, creates the vaults / principals / role assignments,
and passes endpoints and credentials in KV_TEST_* environment variables (plus
IDENTITY_ENDPOINT / IDENTITY_HEADER for ManagedIdentityCredential).
"""

import os
import uuid

import pytest
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.keyvault.keys import KeyClient

REQUIRED = [
    "KV_TEST_AUTHORITY", "KV_TEST_TENANT", "KV_TEST_CA", "KV_TEST_VAULT_A", "KV_TEST_VAULT_B",
    "KV_TEST_OFFICER_ID", "KV_TEST_OFFICER_SECRET", "KV_TEST_NOROLE_ID", "KV_TEST_NOROLE_SECRET",
    "KV_TEST_MI_CLIENT_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
]


def pytest_collection_modifyitems(config, items):
    missing = [k for k in REQUIRED if not os.environ.get(k)]
    if missing:
        skip = pytest.mark.skip(
            reason="run through `cargo test -p keyvault --test azure_sdk_interop` (missing %s)" % missing)
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def env():
    return {k: os.environ[k] for k in REQUIRED}


@pytest.fixture(scope="session")
def ca(env):
    return env["KV_TEST_CA"]


def _sp_credential(env, prefix):
    return ClientSecretCredential(
        tenant_id=env["KV_TEST_TENANT"],
        client_id=env[prefix + "_ID"],
        client_secret=env[prefix + "_SECRET"],
        authority=env["KV_TEST_AUTHORITY"],
        disable_instance_discovery=True,
        connection_verify=env["KV_TEST_CA"],
    )


@pytest.fixture(scope="session")
def officer_cred(env):
    return _sp_credential(env, "KV_TEST_OFFICER")


@pytest.fixture(scope="session")
def norole_cred(env):
    return _sp_credential(env, "KV_TEST_NOROLE")


@pytest.fixture(scope="session")
def mi_cred(env):
    # App Service-style managed identity (IDENTITY_ENDPOINT / IDENTITY_HEADER from the env).
    return ManagedIdentityCredential(client_id=env["KV_TEST_MI_CLIENT_ID"], connection_verify=env["KV_TEST_CA"])


def key_client(vault_url, credential, ca):
    return KeyClient(vault_url, credential, verify_challenge_resource=False, connection_verify=ca)


@pytest.fixture(scope="session")
def client_a(env, officer_cred, ca):
    return key_client(env["KV_TEST_VAULT_A"], officer_cred, ca)


@pytest.fixture(scope="session")
def client_b(env, officer_cred, ca):
    return key_client(env["KV_TEST_VAULT_B"], officer_cred, ca)


@pytest.fixture
def name():
    return "py-" + uuid.uuid4().hex[:12]
