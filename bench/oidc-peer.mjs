// The peer for logout: oidc-provider (panva's certified OpenID provider, also on Koa) with one
// client_credentials client, issuing opaque access tokens and revoking them (RFC 7009). Its
// adapter is the default in-memory one, or with DATABASE_URL the PostgreSQL adapter of
// bench/oidc-postgres-adapter.mjs. Plain JavaScript, a process of its own on PORT, with the one
// client CLIENT_ID / CLIENT_SECRET (HTTP Basic at the token, revocation and introspection endpoints).
import Provider from 'oidc-provider';
import { setStorage } from 'oidc-provider/lib/adapters/memory_adapter.js';
import { connectPostgresAdapter, PostgresAdapter } from './oidc-postgres-adapter.mjs';

let adapter; // undefined: the default, in memory
if (process.env.DATABASE_URL) {
  await connectPostgresAdapter(process.env.DATABASE_URL);
  adapter = PostgresAdapter;
} else {
  // The default adapter keeps its entries in an LRU of 1000, so a bench's tokens would be evicted
  // before they are revoked, and the revocation of a missing token answers 200 all the same. The
  // same adapter over a Map keeps every token until it is revoked.
  setStorage(new Map());
}

const port = Number(process.env.PORT);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  adapter,
  clients: [
    {
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
});
const server = provider.listen(port, '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
