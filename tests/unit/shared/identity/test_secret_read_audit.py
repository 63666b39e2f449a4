"""Reading a secret writes an audit line naming secret, stage and reader, never the value."""

from __future__ import annotations

import json

from functions.shared.identity.secret_versions import load_secret_versions
from tests.support.identity import create_jwt_secret, jwt_secret_id
from tests.support.logs import json_log_lines, raw_log_text


def test_each_version_read_is_audited_without_its_value(identity_env, monkeypatch, caplog):
    # Given a JWT secret and a function reading it
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "babyshield-api")
    version_id = create_jwt_secret()
    # When its versions are loaded
    versions = load_secret_versions(jwt_secret_id())
    # Then one audit line names the secret, the stage, the version and the reader
    reads = [line for line in json_log_lines(caplog) if line.get("audit_event") == "secret_read"]
    assert [(r["secret"], r["stage"], r["caller"]) for r in reads] == [
        (jwt_secret_id(), "AWSCURRENT", "babyshield-api")
    ]
    assert reads[0]["version_id"] == version_id
    # And no part of the value reaches the log
    private_key = json.loads(versions.current.value)["private_key"]
    text = raw_log_text(caplog)
    assert private_key.splitlines()[1] not in text
