"""The RDS CA bundle: only Amazon RDS CAs, the current generation present, shipped where needed."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from cdk.assets import function_code_dir
from cdk.functions import RDS_CA_BUNDLE, RDS_CA_IN_ASSET, function_specs
from functions.shared import names
from tests.infrastructure.conftest import Synthesized

DATABASE_FUNCTIONS = {"api", "rotate_db", "migrate"}


def _name(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    return str(cert.subject.get_attributes_for_oid(oid)[0].value)


def test_bundle_holds_only_amazon_rds_certificate_authorities():
    certs = x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())
    assert len(certs) > 20
    for cert in certs:
        assert _name(cert, NameOID.ORGANIZATION_NAME) == "Amazon Web Services, Inc."
        assert _name(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == "Amazon RDS"
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca, _name(cert, NameOID.COMMON_NAME)


def test_current_generation_roots_are_present():
    names = {
        _name(c, NameOID.COMMON_NAME)
        for c in x509.load_pem_x509_certificates(RDS_CA_BUNDLE.read_bytes())
    }
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        for kind in ("RSA2048", "RSA4096", "ECC384"):
            assert f"Amazon RDS {region} Root CA {kind} G1" in names


def test_database_functions_ship_the_bundle_and_verify_against_it(synthesized: Synthesized):
    specs = {
        spec.package: spec
        for spec in function_specs(api_reserved_concurrency=1, max_body_bytes=16384)
    }
    for package in DATABASE_FUNCTIONS:
        code_dir, _ = function_code_dir(package, specs[package].extra_assets)
        assert (code_dir / RDS_CA_IN_ASSET).read_bytes() == RDS_CA_BUNDLE.read_bytes()
    functions: dict[str, Any] = synthesized.resources("AWS::Lambda::Function")
    by_name = {f["Properties"].get("FunctionName"): f for f in functions.values()}
    for package in DATABASE_FUNCTIONS:
        variables = by_name[names.function_name(package)]["Properties"]["Environment"]["Variables"]
        assert variables["DB_SSL_ROOT_CERT"] == f"/var/task/{RDS_CA_IN_ASSET}", package
