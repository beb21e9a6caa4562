"""Handshake and admin commands, as pymongo's own test suite calls them first."""

import pytest
from pymongo.errors import OperationFailure

from conftest import connect


def test_hello_reply_is_complete(client):
    hello = client.admin.command("hello")
    assert hello["isWritablePrimary"] is True
    assert hello["maxBsonObjectSize"] == 16777216
    assert hello["maxMessageSizeBytes"] == 48000000
    assert hello["maxWriteBatchSize"] == 100000
    assert hello["logicalSessionTimeoutMinutes"] == 30
    assert hello["minWireVersion"] == 0
    assert hello["maxWireVersion"] == 21
    assert hello["readOnly"] is False
    assert "localTime" in hello and "connectionId" in hello


def test_legacy_is_master(client):
    reply = client.admin.command("isMaster")
    assert reply["ismaster"] is True


def test_hello_works_unauthenticated(server):
    c = connect(server)
    try:
        assert c.admin.command("hello")["ok"] == 1.0
        assert c.admin.command("ping")["ok"] == 1.0
        assert c.admin.command("buildInfo")["versionArray"][0] == 7
    finally:
        c.close()


def test_pymongo_suite_startup_commands(client):
    assert client.admin.command("ping")["ok"] == 1.0
    opts = client.admin.command("getCmdLineOpts")
    assert opts["parsed"]["net"]["tls"]["mode"] == "requireTLS"
    status = client.admin.command("serverStatus")
    assert status["connections"]["current"] >= 1
    assert status["process"] == "strongroom"
    info = client.admin.command("buildInfo")
    assert info["version"].startswith("7.0")
    params = client.admin.command("getParameter", "*")
    assert params["featureCompatibilityVersion"]["version"] == "7.0"
    one = client.admin.command({"getParameter": 1, "authenticationMechanisms": 1})
    assert one["authenticationMechanisms"] == ["SCRAM-SHA-256"]


def test_whatsmyuri_connection_status_host_info(client):
    assert ":" in client.admin.command("whatsmyuri")["you"]
    status = client.admin.command("connectionStatus")
    users = status["authInfo"]["authenticatedUsers"]
    assert users and users[0]["db"] == "admin"
    assert client.admin.command("hostInfo")["system"]["numCores"] >= 1


def test_unknown_command_is_command_not_found(client):
    with pytest.raises(OperationFailure) as err:
        client.admin.command("definitelyNotACommand")
    assert err.value.code == 59
    assert "no such command: 'definitelyNotACommand'" in str(err.value)


def test_sessions_end_cleanly(client, coll):
    coll.insert_many([{"i": i} for i in range(10)])
    with client.start_session() as s:
        session_id = s.session_id
        cursor = coll.find({}, session=s).batch_size(2)
        assert next(cursor)["i"] == 0
        # Ending the session closes its open cursor on the server.
        client.admin.command("endSessions", [session_id])
        with pytest.raises(OperationFailure) as err:
            list(cursor)
        assert err.value.code == 43


def test_zlib_compression_round_trips(server):
    c = connect(server, server["user"], server["password"], compressors="zlib")
    try:
        coll = c["t_compress"]["c"]
        coll.drop()
        coll.insert_many([{"i": i, "pad": "x" * 500} for i in range(200)])
        assert coll.count_documents({}) == 200
        assert sum(1 for _ in coll.find()) == 200
        coll.drop()
    finally:
        c.close()
