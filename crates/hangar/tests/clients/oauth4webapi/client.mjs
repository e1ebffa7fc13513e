// Dev-only: a real third-party client (oauth4webapi) driving hangar's authorization server, for
// the tests in crates/hangar/tests. It talks to the test over standard input and output, one
// JSON object per line:
//
//   MODE=code:   prints {"authorize": URL}; reads the callback URL the browser reached; then
//                exchanges the code (PKCE S256, nonce when `openid` is asked), refreshes,
//                introspects, reads userinfo (openid), revokes, introspects again, and prints
//                {"result": {...}}.
//   MODE=device: prints {"user_code", "verification_uri"}; polls the token endpoint (RFC 8628
//                §3.4, honouring slow_down) and prints {"result": {...}}.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET (absent: a public client), CLIENT_AUTH
// (basic|post, default basic), REDIRECT_URI, SCOPE. Any failure prints {"error": "..."} and
// exits 1. Loopback http is allowed (oauth4webapi's allowInsecureRequests), nothing else.
import * as oauth from 'oauth4webapi';
import { createInterface } from 'node:readline';

const env = process.env;
const insecure = { [oauth.allowInsecureRequests]: true };
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const readLine = async () => {
  const { value, done } = await lines.next();
  if (done) throw new Error('standard input closed');
  return value.trim();
};

async function main() {
  const scope = env.SCOPE ?? '';
  const openid = scope.split(' ').includes('openid');
  // RFC 8414 metadata, or OpenID Connect Discovery when the client asks for `openid`.
  const issuer = new URL(env.ISSUER);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: openid ? 'oidc' : 'oauth2', ...insecure }),
  );
  const client = { client_id: env.CLIENT_ID };
  const clientAuth = !env.CLIENT_SECRET
    ? oauth.None()
    : env.CLIENT_AUTH === 'post'
      ? oauth.ClientSecretPost(env.CLIENT_SECRET)
      : oauth.ClientSecretBasic(env.CLIENT_SECRET);
  const result = { issuer: as.issuer };

  let tokens;
  if (env.MODE === 'device') {
    const auth = await oauth.processDeviceAuthorizationResponse(
      as,
      client,
      await oauth.deviceAuthorizationRequest(as, client, clientAuth, new URLSearchParams({ scope }), insecure),
    );
    say({ user_code: auth.user_code, verification_uri: auth.verification_uri });
    let interval = auth.interval ?? 5;
    for (;;) {
      await new Promise((r) => setTimeout(r, interval * 1000));
      try {
        tokens = await oauth.processDeviceCodeResponse(
          as,
          client,
          await oauth.deviceCodeGrantRequest(as, client, clientAuth, auth.device_code, insecure),
        );
        break;
      } catch (e) {
        if (e instanceof oauth.ResponseBodyError && e.error === 'authorization_pending') continue;
        if (e instanceof oauth.ResponseBodyError && e.error === 'slow_down') {
          interval += 5;
          result.slowed_down = true;
          continue;
        }
        throw e;
      }
    }
  } else {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const nonce = openid ? oauth.generateRandomNonce() : undefined;
    const url = new URL(as.authorization_endpoint);
    url.searchParams.set('response_type', 'code');
    url.searchParams.set('client_id', client.client_id);
    url.searchParams.set('redirect_uri', env.REDIRECT_URI);
    url.searchParams.set('scope', scope);
    url.searchParams.set('state', state);
    url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
    url.searchParams.set('code_challenge_method', 'S256');
    if (nonce) url.searchParams.set('nonce', nonce);
    say({ authorize: url.href });
    const callback = new URL(await readLine());
    const params = oauth.validateAuthResponse(as, client, callback, state);
    tokens = await oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, env.REDIRECT_URI, verifier, insecure),
      { expectedNonce: nonce, requireIdToken: openid },
    );
    if (openid) result.id_token_claims = oauth.getValidatedIdTokenClaims(tokens);
  }
  result.token_type = tokens.token_type;
  result.scope = tokens.scope;
  result.expires_in = tokens.expires_in;

  if (tokens.refresh_token) {
    const refreshed = await oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, insecure),
    );
    result.refresh_rotated = refreshed.refresh_token !== undefined && refreshed.refresh_token !== tokens.refresh_token;
    tokens = refreshed;
  }
  if (openid) {
    const claims = result.id_token_claims;
    result.userinfo = await oauth.processUserInfoResponse(
      as,
      client,
      claims ? claims.sub : oauth.skipSubjectCheck,
      await oauth.userInfoRequest(as, client, tokens.access_token, insecure),
    );
  }
  if (env.CLIENT_SECRET) {
    result.introspection = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, clientAuth, tokens.access_token, insecure),
    );
  }
  result.access_token = tokens.access_token;
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, clientAuth, tokens.refresh_token ?? tokens.access_token, insecure),
  );
  if (env.CLIENT_SECRET) {
    result.after_revoke = await oauth.processIntrospectionResponse(
      as,
      client,
      await oauth.introspectionRequest(as, client, clientAuth, tokens.access_token, insecure),
    );
  }
  say({ result });
}

main().then(
  () => process.exit(0),
  (e) => {
    say({ error: `${e?.name ?? 'Error'}: ${e?.message ?? e}${e?.error ? ` (${e.error})` : ''}` });
    process.exit(1);
  },
);
