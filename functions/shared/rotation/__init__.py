"""The Secrets Manager rotation protocol, written once for every rotation function.

`protocol` holds the gate and the dispatch of the four steps, `store` the version
reads and stage moves (plain botocore clients, never the Powertools cache) and the
tag that marks an emergency (a rotation that must make the old value useless at
once), `driver` plays Secrets Manager against a local endpoint, `generate` makes
new database passwords, `clients` the AWS clients, `audit` the secret-read lines,
and `age` reports how old each secret is.
"""
