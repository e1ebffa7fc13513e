// A real OpenID provider for hangar's sign-in tests: oidc-provider from npm (an OpenID
// Certified implementation), on 127.0.0.1 at a free port, with its development login and
// consent pages (any password; the login names the account).
//
// Environment:
//   REDIRECT_URI   hangar's callback, e.g. http://127.0.0.1:PORT/login/testidp/callback
//   CLIENT_ID      the test client's id
//   CLIENT_SECRET  its secret (client_secret_basic)
//
// Prints one JSON line on stdout when it listens: {"issuer":"http://127.0.0.1:PORT"}.
// Exits when stdin closes, so it never outlives the test that started it.
import http from 'node:http';
import Provider from 'oidc-provider';

// The test accounts: the login typed into the form is the account id and the subject.
// Two accounts share a preferred_username so the tests can see hangar's name suffixes.
const ACCOUNTS = {
  'alice-sub-1': { preferred_username: 'alice', email: 'alice@example.test', email_verified: true, name: 'Alice' },
  'alice-sub-2': { preferred_username: 'alice', email: 'alice2@example.test', email_verified: true, name: 'Another Alice' },
};

// stdout carries only the one JSON line: oidc-provider's notices go to stderr.
console.log = console.error;
console.info = console.error;
console.warn = console.error;

const { REDIRECT_URI, CLIENT_ID, CLIENT_SECRET } = process.env;
if (!REDIRECT_URI || !CLIENT_ID || !CLIENT_SECRET) {
  console.error('REDIRECT_URI, CLIENT_ID and CLIENT_SECRET are required');
  process.exit(2);
}

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    // PKCE for every client, confidential ones included (RFC 9700 section 2.1.1).
    pkce: { required: () => true },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
    },
    cookies: { keys: ['hangar-test-only-cookie-key'] },
    features: { devInteractions: { enabled: true } },
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...account }; } };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
