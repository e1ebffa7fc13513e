"""Dev-only: a real third-party client (Authlib's OAuth2Session) driving hangar's authorization
server, for the tests in crates/hangar/tests. It talks to the test over standard input and
output, one JSON object per line:

  MODE=code:   prints {"authorize": URL}; reads the callback URL the browser reached; then
               exchanges the code (PKCE S256), refreshes, introspects, revokes, introspects
               again, and prints {"result": {...}}.
  MODE=device: prints {"user_code", "verification_uri"}; polls the token endpoint with the
               device_code grant (RFC 8628 section 3.4, honouring slow_down) and prints
               {"result": {...}}.

Environment: ISSUER, CLIENT_ID, CLIENT_SECRET (absent: a public client), CLIENT_AUTH
(client_secret_basic|client_secret_post), REDIRECT_URI, SCOPE. Any failure prints
{"error": "..."} and exits 1.
"""

import json
import os
import sys
import time

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TIMEOUT_S = 10


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    env = os.environ
    issuer = env["ISSUER"].rstrip("/")
    meta = requests.get(
        f"{issuer}/.well-known/oauth-authorization-server", timeout=TIMEOUT_S
    ).json()
    if meta.get("issuer") != issuer:
        raise RuntimeError(f"issuer mismatch: {meta.get('issuer')!r}")
    secret = env.get("CLIENT_SECRET") or None
    auth_method = env.get("CLIENT_AUTH", "client_secret_basic") if secret else "none"
    scope = env.get("SCOPE", "")
    session = OAuth2Session(
        client_id=env["CLIENT_ID"],
        client_secret=secret,
        token_endpoint_auth_method=auth_method,
        revocation_endpoint_auth_method=auth_method,
        scope=scope,
        redirect_uri=env.get("REDIRECT_URI"),
        code_challenge_method="S256",
    )
    result = {"issuer": meta["issuer"]}

    if env.get("MODE") == "device":
        data = {"client_id": env["CLIENT_ID"], "scope": scope}
        auth = (env["CLIENT_ID"], secret) if secret else None
        resp = requests.post(
            meta["device_authorization_endpoint"], data=data, auth=auth, timeout=TIMEOUT_S
        )
        resp.raise_for_status()
        device = resp.json()
        say({"user_code": device["user_code"], "verification_uri": device["verification_uri"]})
        interval = int(device.get("interval", 5))
        while True:
            time.sleep(interval)
            data = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
            if not secret:
                data["client_id"] = env["CLIENT_ID"]
            # client_secret_basic (RFC 6749 section 2.3.1) for a confidential client.
            resp = requests.post(meta["token_endpoint"], data=data, auth=auth, timeout=TIMEOUT_S)
            body = resp.json()
            if resp.status_code == 200:
                token = body
                session.token = token
                break
            if body.get("error") == "authorization_pending":
                continue
            if body.get("error") == "slow_down":
                interval += 5
                result["slowed_down"] = True
                continue
            raise RuntimeError(f"device grant failed: {body}")
    else:
        verifier = generate_token(48)
        url, state = session.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier
        )
        say({"authorize": url})
        callback = sys.stdin.readline().strip()
        token = session.fetch_token(
            meta["token_endpoint"],
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
            timeout=TIMEOUT_S,
        )
    result["token_type"] = token.get("token_type")
    result["scope"] = token.get("scope")
    result["expires_in"] = token.get("expires_in")

    if token.get("refresh_token"):
        old = token["refresh_token"]
        token = session.refresh_token(meta["token_endpoint"], refresh_token=old, timeout=TIMEOUT_S)
        result["refresh_rotated"] = bool(token.get("refresh_token")) and token["refresh_token"] != old
    if secret:
        result["introspection"] = session.introspect_token(
            meta["introspection_endpoint"], token=token["access_token"], timeout=TIMEOUT_S
        ).json()
    result["access_token"] = token["access_token"]
    revoked = session.revoke_token(
        meta["revocation_endpoint"],
        token=token.get("refresh_token") or token["access_token"],
        timeout=TIMEOUT_S,
    )
    revoked.raise_for_status()
    if secret:
        result["after_revoke"] = session.introspect_token(
            meta["introspection_endpoint"], token=token["access_token"], timeout=TIMEOUT_S
        ).json()
    say({"result": result})


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every failure is reported to the test
        say({"error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
