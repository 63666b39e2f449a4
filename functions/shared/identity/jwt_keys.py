"""JWT signing keys: the key pair held in Secrets Manager, as a key ring.

The secret value is JSON: {"algorithm": "ES256", "private_key": "<PEM PKCS8>",
"public_key": "<PEM SPKI>"}. The `kid` of a key is the Secrets Manager
VersionId of the version that holds it, so a token names exactly one version.
The ring holds AWSCURRENT (which signs) and AWSPREVIOUS (still verifies during
the rotation's grace window) and nothing else: a key two rotations old has lost
both stages and is gone from the ring. An AWSCURRENT that holds no usable key (a
console edit; a rotation never promotes one) stops signing only: AWSPREVIOUS, which
signed every live token, keeps verifying.

Each key's algorithm is pinned by the secret itself; a token's header never
chooses the algorithm (RFC 8725, 3.1).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from functions.shared.identity.secret_versions import (
    SecretVersion,
    SecretVersionsCache,
    secret_cache,
)
from functions.shared.settings import get_settings

# Asymmetric only: a verifier holding a symmetric key could also mint tokens.
SUPPORTED_ALGORITHMS = frozenset({"ES256", "EdDSA"})


class KeyMaterialError(Exception):
    """The secret does not hold a usable key pair (a broken rotation, not a caller's fault)."""


def generate_jwt_secret_value(algorithm: str = "ES256") -> str:
    """A fresh key pair in the secret's JSON format, for the local stack and rotation."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return json.dumps(
        {"algorithm": algorithm, "private_key": private_pem, "public_key": public_pem}
    )


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    public_key: Any = field(repr=False)
    private_pem: str = field(repr=False, default="")
    _private: list[Any] = field(repr=False, default_factory=list, compare=False)

    def private_key(self) -> Any:
        """The private key object, parsed once (only the sign-in route needs it).

        KeyMaterialError when it cannot sign tokens this key verifies: one that does
        not load (not PEM, encrypted) would otherwise be a 500, and one of another
        pair would sign tokens that every verifier refuses."""
        if not self._private:
            from cryptography.exceptions import UnsupportedAlgorithm
            from cryptography.hazmat.primitives import serialization

            if not self.private_pem:
                raise KeyMaterialError(f"key {self.kid} has no private key")
            try:
                key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
            # TypeError: an encrypted key. The message names no key material.
            except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
                raise KeyMaterialError(f"key {self.kid} has no usable private key") from exc
            _check_key_type(self.algorithm, key.public_key())
            if _spki(key.public_key()) != _spki(self.public_key):
                raise KeyMaterialError(f"key {self.kid}: private key is not the public key's")
            self._private.append(key)
        return self._private[0]

    def jwk(self) -> dict[str, Any]:
        import jwt.algorithms

        algorithm = jwt.algorithms.get_default_algorithms()[self.algorithm]
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.public_key))
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return jwk


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _check_key_type(algorithm: str, public_key: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if algorithm == "ES256":
        ok = isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
            public_key.curve, ec.SECP256R1
        )
    elif algorithm == "EdDSA":
        ok = isinstance(public_key, ed25519.Ed25519PublicKey)
    else:
        ok = False
    if not ok:
        raise KeyMaterialError(f"key type does not match algorithm {algorithm}")


def parse_signing_key(version: SecretVersion) -> SigningKey:
    from cryptography.hazmat.primitives import serialization

    try:
        document = json.loads(version.value)
        algorithm = document["algorithm"]
        public_pem = document["public_key"]
        private_pem = document.get("private_key") or ""
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyMaterialError(f"version {version.version_id} is not a JWT key pair") from exc
    # A hand-edited value can hold any JSON: a list where a name belongs must be a
    # KeyMaterialError (which a rotation steps past), not a TypeError (which is a 500).
    if not all(isinstance(field, str) for field in (algorithm, public_pem, private_pem)):
        raise KeyMaterialError(f"version {version.version_id} is not a JWT key pair")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise KeyMaterialError(f"version {version.version_id} uses an unsupported algorithm")
    try:
        public_key = serialization.load_pem_public_key(public_pem.encode())
    except ValueError as exc:
        raise KeyMaterialError(f"version {version.version_id} has no valid public key") from exc
    _check_key_type(algorithm, public_key)
    return SigningKey(version.version_id, algorithm, public_key, private_pem)


@dataclass(frozen=True)
class KeyRing:
    """The live keys. `signing` is AWSCURRENT's, None when its value holds no usable
    key (a console edit): it signed no token, so every token AWSPREVIOUS signed still
    verifies and is published, and only signing (`current`) fails."""

    signing: SigningKey | None
    previous: SigningKey | None
    # Why AWSCURRENT holds no usable key (a KeyMaterialError's message, no value).
    signing_problem: str = ""

    @property
    def current(self) -> SigningKey:
        """The key that signs; KeyMaterialError when AWSCURRENT holds none."""
        if self.signing is None:
            raise KeyMaterialError(self.signing_problem or "AWSCURRENT holds no usable key")
        return self.signing

    def keys(self) -> tuple[SigningKey, ...]:
        return tuple(key for key in (self.signing, self.previous) if key is not None)

    def find(self, kid: str) -> SigningKey | None:
        for key in self.keys():
            if key.kid == kid:
                return key
        return None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.keys()]}


class JwtKeyStore:
    """Key rings read through the secret cache; keys parsed once per version."""

    def __init__(self, secret_id: str | None = None, cache: SecretVersionsCache | None = None):
        self._secret_id = secret_id
        self._cache = cache or secret_cache
        self._parsed: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    @property
    def secret_id(self) -> str:
        return self._secret_id or get_settings().jwt_secret_id

    def key_ring(self, max_age: float | None = None) -> KeyRing:
        """The live keys, read at most `max_age` seconds ago (default: the cache's time)."""
        age = get_settings().secret_cache_seconds if max_age is None else max_age
        versions = self._cache.get(self.secret_id, age)
        return self._ring(versions.current, versions.previous)

    def key_for_kid(self, kid: str) -> SigningKey | None:
        """The live key named `kid`; reloads once (rate-limited) if it is not known yet.

        A token signed by another instance right after a rotation carries a kid
        this instance's cache has not seen; the early reload accepts it without
        waiting for the cache to expire.
        """
        key = self.key_ring().find(kid)
        if key is None:
            versions = self._cache.refresh(self.secret_id)
            if versions is not None:
                key = self._ring(versions.current, versions.previous).find(kid)
        return key

    def _ring(self, current: SecretVersion, previous: SecretVersion | None) -> KeyRing:
        """Each live key that parses; KeyMaterialError only when none does (503)."""
        try:
            current_key: SigningKey | None = self._parse(current)
            problem = ""
        except KeyMaterialError as exc:
            current_key, problem = None, str(exc)
            if previous is None:
                raise
        previous_key = None
        if previous is not None:
            try:
                previous_key = self._parse(previous)
            except KeyMaterialError:
                # A broken old version must not stop the current key from working.
                if current_key is None:
                    raise KeyMaterialError(f"{problem}; AWSPREVIOUS holds none either") from None
        return KeyRing(current_key, previous_key, problem)

    def _parse(self, version: SecretVersion) -> SigningKey:
        key = self._parsed.get(version.version_id)
        if key is None:
            key = parse_signing_key(version)
            with self._lock:
                # Only live versions stay parsed; older ones drop out here.
                if len(self._parsed) > 8:
                    self._parsed.clear()
                self._parsed[version.version_id] = key
        return key


_stores: dict[str, JwtKeyStore] = {}


def key_store() -> JwtKeyStore:
    """The process-wide store for the configured JWT secret."""
    secret_id = get_settings().jwt_secret_id
    store = _stores.get(secret_id)
    if store is None:
        store = _stores.setdefault(secret_id, JwtKeyStore(secret_id))
    return store
