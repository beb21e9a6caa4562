"""The availability gate as a driver sees it: run by `crates/wire/tests/interop.rs`
after it turned the server Inaccessible with the reason in STRONGROOM_EXPECT_REASON."""

import os

import pytest
from pymongo.errors import PyMongoError

from conftest import connect


def test_every_command_reports_the_reason(server):
    reason = os.environ.get("STRONGROOM_EXPECT_REASON")
    if not reason:
        raise SystemExit("STRONGROOM_EXPECT_REASON is not set; run via cargo test -p wire --test interop")
    c = connect(server, server["user"], server["password"], serverSelectionTimeoutMS=1500)
    try:
        with pytest.raises(PyMongoError) as err:
            c.admin.command("ping")
        text = str(err.value)
        assert "cluster is Inaccessible" in text, text
        assert reason in text, text
    finally:
        c.close()
