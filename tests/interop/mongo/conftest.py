"""Fixtures for the pymongo interop suite.

The Rust test `crates/wire/tests/interop.rs` starts a real Strongroom wire server (TLS,
SCRAM-SHA-256) and runs `python3 -m pytest -q tests/interop/mongo` with:

    STRONGROOM_MONGO_HOST, STRONGROOM_MONGO_PORT   where the server listens
    STRONGROOM_MONGO_CA                            the development CA certificate (PEM)
    STRONGROOM_MONGO_USER, STRONGROOM_MONGO_PASSWORD   the root user created at start

Run it by hand the same way against any running server.
"""

import os
import uuid

import pytest

try:
    import pymongo  # noqa: F401
except ImportError as exc:  # pragma: no cover - the message is the point
    raise SystemExit(
        "pymongo is not installed: pip install -r tests/interop/requirements.txt"
    ) from exc

from pymongo import MongoClient


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(
            f"{name} is not set; these tests are driven by `cargo test -p wire --test interop`"
        )
    return value


@pytest.fixture(scope="session")
def server():
    return {
        "host": _env("STRONGROOM_MONGO_HOST"),
        "port": int(_env("STRONGROOM_MONGO_PORT")),
        "ca": _env("STRONGROOM_MONGO_CA"),
        "user": _env("STRONGROOM_MONGO_USER"),
        "password": _env("STRONGROOM_MONGO_PASSWORD"),
    }


def connect(server, user=None, password=None, auth_source="admin", **kwargs):
    """A client over TLS with the dev CA; SCRAM-SHA-256 when a user is given."""
    opts = dict(
        host=server["host"],
        port=server["port"],
        tls=True,
        tlsCAFile=server["ca"],
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        directConnection=True,
    )
    if user is not None:
        opts.update(username=user, password=password, authSource=auth_source,
                    authMechanism="SCRAM-SHA-256")
    opts.update(kwargs)
    return MongoClient(**opts)


@pytest.fixture(scope="session")
def client(server):
    c = connect(server, server["user"], server["password"])
    yield c
    c.close()


@pytest.fixture()
def db(client):
    """A fresh database per test, dropped afterwards."""
    name = "t_" + uuid.uuid4().hex[:12]
    yield client[name]
    client.drop_database(name)


@pytest.fixture()
def coll(db):
    return db["items"]
