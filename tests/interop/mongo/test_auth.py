"""Users, roles, Unauthorized and failed authentication."""

import uuid

import pytest
from pymongo.errors import OperationFailure

from conftest import connect


def _name(prefix):
    return prefix + uuid.uuid4().hex[:8]


def test_bad_password_fails(server):
    c = connect(server, server["user"], "wrong-password")
    try:
        with pytest.raises(OperationFailure) as err:
            c.admin.command("ping")
        assert err.value.code == 18
    finally:
        c.close()


def test_unknown_user_fails_like_a_bad_password(server):
    c = connect(server, "nobody-" + uuid.uuid4().hex[:6], "whatever")
    try:
        with pytest.raises(OperationFailure) as err:
            c.admin.command("ping")
        assert err.value.code == 18
    finally:
        c.close()


def test_unauthenticated_commands_are_refused(server):
    c = connect(server)
    try:
        with pytest.raises(OperationFailure) as err:
            c["x"]["y"].find_one()
        assert err.value.code == 13
        assert "requires authentication" in str(err.value)
        with pytest.raises(OperationFailure) as err:
            c["x"]["y"].insert_one({"a": 1})
        assert err.value.code == 13
    finally:
        c.close()


def test_users_and_roles(server, client):
    dbname = _name("app_")
    reader, writer = _name("r_"), _name("w_")
    app = client[dbname]
    app.command("createUser", writer, pwd="w-pass", roles=["readWrite"])
    app.command("createUser", reader, pwd="r-pass", roles=[{"role": "read", "db": dbname}])
    try:
        info = app.command("usersInfo", writer)
        assert info["users"][0]["user"] == writer
        assert info["users"][0]["roles"] == [{"role": "readWrite", "db": dbname}]
        assert info["users"][0]["mechanisms"] == ["SCRAM-SHA-256"]
        assert "credentials" not in info["users"][0]

        w = connect(server, writer, "w-pass", auth_source=dbname)
        r = connect(server, reader, "r-pass", auth_source=dbname)
        try:
            w[dbname]["c"].insert_one({"a": 1})
            assert r[dbname]["c"].find_one({"a": 1})["a"] == 1
            with pytest.raises(OperationFailure) as err:
                r[dbname]["c"].insert_one({"a": 2})
            assert err.value.code == 13
            assert f"not authorized on {dbname}" in str(err.value)
            with pytest.raises(OperationFailure) as err:
                w["other_db"]["c"].find_one()
            assert err.value.code == 13
            # Credentials are not readable by data roles.
            with pytest.raises(OperationFailure):
                w.admin["system.users"].find_one()
            # listDatabases shows only what the user may read.
            names = w.list_database_names()
            assert dbname in names and "admin" not in names
            # Renaming within a database the user can write is allowed...
            w[dbname]["c"].rename("c2")
            assert w[dbname]["c2"].find_one({"a": 1}) is not None
            w[dbname]["c2"].rename("c")
            # ...and user administration is not.
            with pytest.raises(OperationFailure) as err:
                w[dbname].command("createUser", _name("x_"), pwd="p", roles=["read"])
            assert err.value.code == 13
            # A user may look themself up.
            me = w[dbname].command("usersInfo", writer)
            assert me["users"][0]["user"] == writer
        finally:
            w.close()
            r.close()

        app.command("updateUser", writer, pwd="new-pass")
        old = connect(server, writer, "w-pass", auth_source=dbname)
        new = connect(server, writer, "new-pass", auth_source=dbname)
        try:
            with pytest.raises(OperationFailure):
                old[dbname]["c"].find_one()
            assert new[dbname]["c"].find_one({"a": 1}) is not None
        finally:
            old.close()
            new.close()
    finally:
        app.command("dropUser", writer)
        app.command("dropUser", reader)
        client.drop_database(dbname)
    with pytest.raises(OperationFailure) as err:
        app.command("dropUser", writer)
    assert err.value.code == 11


def test_users_info_across_databases(client):
    dbname = _name("app_")
    name = _name("u_")
    client[dbname].command("createUser", name, pwd="p", roles=["read"])
    try:
        everyone = client.admin.command("usersInfo", 1, forAllDBs=True)["users"]
        assert any(u["user"] == name and u["db"] == dbname for u in everyone)
        assert all("credentials" not in u for u in everyone)
        here = client[dbname].command("usersInfo", 1)["users"]
        assert [u["user"] for u in here] == [name]
        by_doc = client.admin.command("usersInfo", {"user": name, "db": dbname})["users"]
        assert by_doc[0]["_id"] == f"{dbname}.{name}"
    finally:
        client[dbname].command("dropUser", name)


def test_duplicate_user_and_unknown_role(client):
    dbname = _name("app_")
    app = client[dbname]
    name = _name("u_")
    app.command("createUser", name, pwd="p", roles=["read"])
    try:
        with pytest.raises(OperationFailure) as err:
            app.command("createUser", name, pwd="p", roles=["read"])
        assert err.value.code == 51003
        with pytest.raises(OperationFailure) as err:
            app.command("createUser", _name("u_"), pwd="p", roles=["superpowers"])
        assert err.value.code == 31
        with pytest.raises(OperationFailure):
            app.command("createUser", _name("u_"), pwd="p", roles=[],
                        mechanisms=["SCRAM-SHA-1"])
    finally:
        app.command("dropUser", name)


def test_stored_credentials_hold_no_password(client):
    dbname = _name("app_")
    name = _name("u_")
    client[dbname].command("createUser", name, pwd="s3cr3t-marker", roles=["read"])
    try:
        doc = client.admin["system.users"].find_one({"_id": f"{dbname}.{name}"})
        scram = doc["credentials"]["SCRAM-SHA-256"]
        assert scram["iterationCount"] == 15000
        assert set(scram) == {"iterationCount", "salt", "storedKey", "serverKey"}
        assert "s3cr3t-marker" not in repr(doc)
    finally:
        client[dbname].command("dropUser", name)
