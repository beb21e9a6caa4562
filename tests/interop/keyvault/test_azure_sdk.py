"""The official Azure SDK for Python (azure-identity + azure-keyvault-keys), unmodified,
against the Strongroom key vault. Vault A: RBAC, purge protection, 7-day retention.
Vault B: RBAC. The officer has Key Vault Crypto Officer on both; the managed identity has
Key Vault Crypto Service Encryption User on vault A only; the "no role" principal has none."""

import hashlib
import os

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.keys import (KeyRotationLifetimeAction, KeyRotationPolicy,
                                 KeyRotationPolicyAction, KeyType)
from azure.keyvault.keys.crypto import (CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm,
                                        SignatureAlgorithm)

from conftest import key_client

CEK = os.urandom(32)


def crypto(key, cred, ca):
    return CryptographyClient(key, cred, verify_challenge_resource=False, connection_verify=ca)


@pytest.mark.parametrize("size", [2048, 3072, 4096])
def test_create_keys_of_each_size(client_a, name, size):
    key = client_a.create_rsa_key(name, size=size, hardware_protected=(size == 3072))
    assert key.key_type == (KeyType.rsa_hsm if size == 3072 else KeyType.rsa)
    assert len(key.key.n) * 8 == size
    assert key.properties.enabled
    assert key.properties.version and len(key.properties.version) == 32
    assert key.id.startswith(client_a.vault_url.rstrip("/") + "/keys/" + name + "/")
    got = client_a.get_key(name)
    assert got.id == key.id and got.key.n == key.key.n
    assert client_a.get_key(name, key.properties.version).id == key.id
    assert name in [p.name for p in client_a.list_properties_of_keys()]


@pytest.mark.parametrize("alg", [KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa1_5])
def test_wrap_unwrap_each_algorithm(client_a, officer_cred, ca, name, alg):
    key = client_a.create_rsa_key(name, size=2048)
    cc = crypto(key.id, officer_cred, ca)
    wrapped = cc.wrap_key(alg, CEK)
    assert wrapped.key_id == key.id
    assert cc.unwrap_key(alg, wrapped.encrypted_key).key == CEK
    # encrypt/decrypt and sign/verify round trips with the same key
    enc = cc.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"strongroom")
    assert cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, enc.ciphertext).plaintext == b"strongroom"
    digest = hashlib.sha256(b"msg").digest()
    sig = cc.sign(SignatureAlgorithm.ps256, digest)
    assert cc.verify(SignatureAlgorithm.ps256, digest, sig.signature).is_valid


def test_disabled_key_is_forbidden(client_a, officer_cred, ca, name):
    key = client_a.create_rsa_key(name, size=2048)
    cc = crypto(key.id, officer_cred, ca)
    wrapped = cc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, CEK)
    updated = client_a.update_key_properties(name, key.properties.version, enabled=False)
    assert updated.properties.enabled is False
    with pytest.raises(HttpResponseError) as e:
        client_a.get_key(name)
    assert e.value.status_code == 403
    assert "disabled" in e.value.message
    with pytest.raises(HttpResponseError) as e:
        crypto(key.id, officer_cred, ca).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key)
    assert e.value.status_code == 403
    client_a.update_key_properties(name, key.properties.version, enabled=True)
    assert cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == CEK


def test_soft_delete_recover_and_purge_protection(client_a, name):
    key = client_a.create_rsa_key(name, size=2048)
    deleted = client_a.begin_delete_key(name).result()
    assert deleted.recovery_id.endswith("/deletedkeys/" + name)
    assert deleted.scheduled_purge_date and deleted.deleted_date
    assert (deleted.scheduled_purge_date - deleted.deleted_date).days == 7
    assert client_a.get_deleted_key(name).name == name
    with pytest.raises(ResourceNotFoundError):
        client_a.get_key(name)
    with pytest.raises(ResourceExistsError):
        client_a.create_rsa_key(name, size=2048)
    recovered = client_a.begin_recover_deleted_key(name).result()
    assert recovered.id == key.id
    assert client_a.get_key(name).id == key.id
    client_a.begin_delete_key(name).result()
    with pytest.raises(HttpResponseError) as e:
        client_a.purge_deleted_key(name)
    assert e.value.status_code == 403
    assert "purge protection" in e.value.message


def test_backup_purge_in_other_vault_restore(client_a, client_b, officer_cred, ca, name):
    # Key lives in vault B (no purge protection): back up, delete, purge, restore there,
    # and restore a copy into vault A too (same tenant).
    key = client_b.create_rsa_key(name, size=2048)
    wrapped = crypto(key.id, officer_cred, ca).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, CEK)
    backup = client_b.backup_key(name)
    assert isinstance(backup, bytes) and len(backup) > 100
    client_b.begin_delete_key(name).result()
    client_b.purge_deleted_key(name)
    with pytest.raises(ResourceNotFoundError):
        client_b.get_deleted_key(name)
    restored = client_b.restore_key_backup(backup)
    assert restored.id == key.id
    assert crypto(restored.id, officer_cred, ca).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == CEK
    with pytest.raises(ResourceExistsError):
        client_b.restore_key_backup(backup)
    copy = client_a.restore_key_backup(backup)
    assert copy.properties.version == key.properties.version
    assert crypto(copy.id, officer_cred, ca).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == CEK


def test_rotate_and_rotation_policy(client_a, name):
    key = client_a.create_rsa_key(name, size=2048)
    actions = [KeyRotationLifetimeAction(KeyRotationPolicyAction.rotate, time_after_create="P90D")]
    policy = client_a.update_key_rotation_policy(name, KeyRotationPolicy(lifetime_actions=actions, expires_in="P1Y"))
    assert policy.expires_in == "P1Y"
    kinds = sorted(str(a.action).lower() for a in policy.lifetime_actions)
    assert any("rotate" in k for k in kinds) and any("notify" in k for k in kinds)
    fetched = client_a.get_key_rotation_policy(name)
    assert fetched.expires_in == "P1Y"
    assert any(a.time_after_create == "P90D" for a in fetched.lifetime_actions)
    rotated = client_a.rotate_key(name)
    assert rotated.properties.version != key.properties.version
    assert rotated.properties.expires_on is not None
    versions = [p.version for p in client_a.list_properties_of_key_versions(name)]
    assert key.properties.version in versions and rotated.properties.version in versions


def test_identity_without_role_gets_403(env, norole_cred, ca, client_a, name):
    client_a.create_rsa_key(name, size=2048)
    c = key_client(env["KV_TEST_VAULT_A"], norole_cred, ca)
    with pytest.raises(HttpResponseError) as e:
        c.get_key(name)
    assert e.value.status_code == 403
    assert "ForbiddenByRbac" in str(e.value) or "not authorized" in e.value.message


def test_service_encryption_user_via_managed_identity(env, mi_cred, ca, client_a, name):
    key = client_a.create_rsa_key(name, size=2048)
    c = key_client(env["KV_TEST_VAULT_A"], mi_cred, ca)
    got = c.get_key(name)
    assert got.id == key.id
    cc = crypto(got.id, mi_cred, ca)
    wrapped = cc.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, CEK)
    assert cc.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == CEK
    forbidden = [
        lambda: c.create_rsa_key(name + "-x", size=2048),
        lambda: c.begin_delete_key(name).result(),
        lambda: c.rotate_key(name),
        lambda: c.get_key_rotation_policy(name),
        lambda: c.backup_key(name),
        lambda: c.update_key_properties(name, enabled=False),
        lambda: cc.sign(SignatureAlgorithm.rs256, hashlib.sha256(b"x").digest()),
        lambda: cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, wrapped.encrypted_key),
    ]
    for op in forbidden:
        with pytest.raises(HttpResponseError) as e:
            op()
        assert e.value.status_code == 403
    # Nothing changed.
    assert client_a.get_key(name).properties.enabled
    # The managed identity has no role at all on vault B.
    with pytest.raises(HttpResponseError) as e:
        key_client(env["KV_TEST_VAULT_B"], mi_cred, ca).get_key(name)
    assert e.value.status_code == 403
