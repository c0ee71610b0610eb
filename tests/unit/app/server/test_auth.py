import pytest

from app.config import KeyConfig
from app.domain import Forbidden, Identity, Permission, Unauthorized
from app.server.auth import Authenticator, StaticKeys, hash_key, identities_from_config

KEY = "gnd_" + "a" * 43


def _auth(**fields: object) -> Authenticator:
    identity = Identity(key_id="k1", key_prefix=KEY[:12], **fields)  # type: ignore[arg-type]
    return Authenticator(StaticKeys({hash_key(KEY): identity}), clock=lambda: 1000.0)


async def test_valid_key_gives_its_identity() -> None:
    identity = await _auth(role="admin").authenticate(f"Bearer {KEY}".encode())
    assert identity.key_id == "k1"
    assert identity.can(Permission.MANAGE_ROUTES)


@pytest.mark.parametrize(
    "header",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Basic " + KEY.encode(),
        b"Bearer sk-abc",
        b"Bearer gnd_other",
    ],
)
async def test_bad_headers_are_401(header: bytes | None) -> None:
    with pytest.raises(Unauthorized, match="unauthorized"):
        await _auth().authenticate(header)


async def test_scheme_is_case_insensitive() -> None:
    assert (await _auth().authenticate(f"bearer {KEY}".encode())).key_id == "k1"


async def test_blocked_is_403_and_expired_is_401() -> None:
    with pytest.raises(Forbidden, match="api key blocked"):
        await _auth(blocked=True).authenticate(f"Bearer {KEY}".encode())
    with pytest.raises(Unauthorized, match="api key expired"):
        await _auth(expires_at=999.0).authenticate(f"Bearer {KEY}".encode())
    assert await _auth(expires_at=1001.0).authenticate(f"Bearer {KEY}".encode())


@pytest.mark.parametrize(
    ("role", "bits"),
    [("admin", 255), ("member", 7), ("viewer", 12), ("service_account", 1), ("nonsense", 0)],
)
def test_role_bitmasks_are_gandalfs(role: str, bits: int) -> None:
    assert int(Identity(key_id="k", key_prefix="p", role=role).permissions) == bits


def test_config_keys_are_indexed_by_hash_only() -> None:
    index = identities_from_config(
        [KeyConfig(name="n", key=KEY, role="viewer", allowed_models=("a",))]
    )
    assert list(index) == [hash_key(KEY)]
    identity = index[hash_key(KEY)]
    assert identity.key_prefix == KEY[:12]
    assert identity.allowed_models == frozenset({"a"})
    assert KEY not in repr(identity)
