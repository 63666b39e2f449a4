"""The Secrets Manager rotation protocol, written once for every rotation function.

`protocol` holds the gate and the dispatch of the four steps, `store` the version
reads and stage moves (plain botocore clients, never the Powertools cache), `driver` plays
Secrets Manager against a local endpoint, `emergency` marks a rotation that must
make the old value useless at once, and `age` reports how old each secret is.
"""
