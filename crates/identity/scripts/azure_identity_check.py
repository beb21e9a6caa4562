#!/usr/bin/env python3
"""Manual interop check: azure-identity against a running Strongroom identity service.

    cargo run -p identity --example serve -- /tmp/idsrv &      # writes /tmp/idsrv/env.json
    python3 -m venv /tmp/azvenv && /tmp/azvenv/bin/pip install azure-identity requests
    /tmp/azvenv/bin/python crates/identity/scripts/azure_identity_check.py /tmp/idsrv/env.json

Exercises ClientSecretCredential (authority=<base>, disable_instance_discovery=True) and
ManagedIdentityCredential in App Service mode (IDENTITY_ENDPOINT / IDENTITY_HEADER) with
each selector. Exits non-zero on the first deviation.
"""
import base64
import json
import os
import sys

import requests
from azure.identity import ClientSecretCredential, ManagedIdentityCredential

VAULT = "https://vault.azure.net/.default"


def claims(token):
    part = token.split(".")[1]
    part += "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(part))


def main(env_path):
    env = json.load(open(env_path))
    base, ca, tenant = env["base_url"], env["ca_path"], env["tenant_id"]
    admin = env["admin"]

    cred = ClientSecretCredential(tenant, admin["clientId"], admin["clientSecret"],
                                  authority=base, disable_instance_discovery=True, connection_verify=ca)
    c = claims(cred.get_token(VAULT).token)
    assert c["aud"] == "https://vault.azure.net" and c["oid"] == admin["objectId"], c
    assert c["iss"] == f"{base}/{tenant}/v2.0", c

    bad = ClientSecretCredential(tenant, admin["clientId"], "wrong", authority=base,
                                 disable_instance_discovery=True, connection_verify=ca)
    try:
        bad.get_token(VAULT)
        sys.exit("wrong client secret was accepted")
    except Exception as e:  # ClientAuthenticationError
        assert "AADSTS7000215" in str(e), e

    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override `verify`
    s.verify = ca
    h = {"Authorization": "Bearer " + cred.get_token("api://strongroom-identity/.default").token}
    mid = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/py-check"
    mi = s.put(base + mid + "?api-version=2023-01-31", json={"location": "westeurope"}, headers=h).json()
    s.post(base + "/admin/resources/attach", json={"resource": "py-cluster", "identityId": mid}, headers=h).raise_for_status()
    secret = s.post(base + "/admin/resources/secret", json={"resource": "py-cluster"}, headers=h).json()["secret"]

    os.environ["IDENTITY_ENDPOINT"] = base + "/msi/token"
    os.environ["IDENTITY_HEADER"] = secret
    for kw in (dict(client_id=mi["properties"]["clientId"]),
               dict(identity_config={"resource_id": mid}),
               dict(identity_config={"object_id": mi["properties"]["principalId"]}),
               {}):
        t = ManagedIdentityCredential(connection_verify=ca, **kw).get_token(VAULT)
        c = claims(t.token)
        assert c["oid"] == mi["properties"]["principalId"] and c["xms_mirid"] == mid, c

    os.environ["IDENTITY_HEADER"] = "wrong"
    try:
        ManagedIdentityCredential(connection_verify=ca).get_token(VAULT)
        sys.exit("wrong identity header was accepted")
    except Exception:
        pass
    print("azure-identity interop: OK")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/idsrv/env.json")
