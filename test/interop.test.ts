import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fastifyJwt, { type TokenOrHeader } from '@fastify/jwt';
import express, { type ErrorRequestHandler } from 'express';
import { auth } from 'express-oauth2-jwt-bearer';
import Fastify, { type FastifyRequest } from 'fastify';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import * as openid from 'openid-client';
import { Clients } from '../src/domain/clients.js';
import { DATABASES } from './support/databases.js';
import { BASE, bodyOf, example, rawCall, startTestServerOn, type Session, type TestServer } from './support/harness.js';
import { decodePart, forge, otherKey } from './support/tokens.js';

// Third-party verifiers and OAuth clients against the real server (docs/design.md §14), each
// configured as its documentation says, with no check switched off: each accepts a live access
// token (or reports it active), and refuses a refresh token and a forged one.

const AUDIENCE = 'fib-api';

/** The three tokens every library is tried with. */
interface Tokens {
  access: string;
  refresh: string;
  /** The live access token's header and claims, signed by another key. */
  forged: string;
}

/** The status a resource server answers a request with the token as bearer. */
const statusWith = async (url: string, token: string) =>
  (await fetch(`${url}/orders`, { headers: { authorization: `Bearer ${token}` } })).status;

for (const backend of DATABASES) {
  describe(`third-party libraries against the service on ${backend.name}`, { skip: backend.skip }, () => {
    let t: TestServer;
    /** ISSUER unset: the default, http://localhost:<port>, whose metadata a client on this machine discovers. */
    let issuer: string;
    let tokens: Tokens;
    let clientId: string;
    let clientSecret: string;

    before(async () => {
      t = await startTestServerOn(backend, { ISSUER: '' });
      issuer = `http://localhost:${t.server.port}`;
      const session: Session = await t.newSession();
      tokens = {
        access: session.accessToken,
        refresh: session.refreshToken,
        forged: forge(decodePart(session.accessToken, 0), decodePart(session.accessToken, 1), otherKey()),
      };
      clientId = 'orders-service';
      clientSecret = (await new Clients(t.server.store, Date.now).add(clientId))!;
    });
    after(() => t.stop());

    test('the metadata (RFC 8414) names the issuer, the key set and introspection, under the issuer; no OpenID configuration', async () => {
      const metadata = await bodyOf(
        await t.call('GET', '/.well-known/oauth-authorization-server'),
        'getAuthorizationServerMetadata',
        200,
      );
      assert.deepEqual(metadata, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        introspection_endpoint: `${issuer}${BASE}/introspection`,
        introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        response_types_supported: [],
        grant_types_supported: [],
        fib_access_token_audience: [AUDIENCE],
      });
      assert.deepEqual(Object.keys(metadata).sort(), Object.keys(example('AuthorizationServerMetadataSample')).sort());
      // t.call checks Cache-Control on both: public, max-age=60.
      assert.equal((await t.call('GET', '/.well-known/jwks.json')).status, 200);
      assert.equal((await t.call('GET', '/.well-known/openid-configuration')).status, 404);
      assert.equal(decodePart(tokens.access, 1).iss, issuer);
    });

    test('jose: jwtVerify with createRemoteJWKSet, issuer, audience and typ at+jwt', async () => {
      const keys = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
      const options = { issuer, audience: AUDIENCE, typ: 'at+jwt', algorithms: ['EdDSA'] };
      const { payload } = await jwtVerify(tokens.access, keys, options);
      assert.deepEqual([payload.iss, payload.aud, payload.client_id], [issuer, AUDIENCE, 'fib-sign-in']);
      await assert.rejects(jwtVerify(tokens.refresh, keys, options), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'typ' });
      // Without the typ check, the audience still keeps a refresh token out.
      const { typ: _typ, ...withoutTyp } = options;
      await assert.rejects(jwtVerify(tokens.refresh, keys, withoutTyp), {
        code: 'ERR_JWT_CLAIM_VALIDATION_FAILED',
        claim: 'aud',
      });
      await assert.rejects(jwtVerify(tokens.forged, keys, options), errors.JWSSignatureVerificationFailed);
    });

    for (const strict of [false, true]) {
      test(`express-oauth2-jwt-bearer: issuerBaseURL and audience${strict ? ', strict (RFC 9068)' : ', its defaults'}`, async () => {
        const app = express();
        app.get('/orders', auth({ issuerBaseURL: issuer, audience: AUDIENCE, strict }), (req, res) => {
          res.json({ sub: req.auth?.payload.sub });
        });
        const answerWithStatus: ErrorRequestHandler = (error: { status?: number }, _req, res, _next) => {
          res.status(error.status ?? 500).end();
        };
        app.use(answerWithStatus);
        const server = app.listen(0, '127.0.0.1');
        await once(server, 'listening');
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        try {
          assert.equal(await statusWith(url, tokens.access), 200);
          assert.equal(await statusWith(url, tokens.refresh), 401);
          assert.equal(await statusWith(url, tokens.forged), 401);
        } finally {
          server.closeAllConnections();
          server.close();
        }
      });
    }

    test('@fastify/jwt: allowedIss, allowedAud and requiredClaims, the key by kid from the key set', async () => {
      const { keys } = (await (await fetch(`${issuer}/.well-known/jwks.json`)).json()) as {
        keys: (JsonWebKey & { kid: string })[];
      };
      const pems = new Map(
        keys.map((jwk) => [jwk.kid, createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' })]),
      );
      // Decoded whole (`decode: { complete: true }`), the token names its key in its header.
      const keyOfToken = (_request: FastifyRequest, token: TokenOrHeader) =>
        Promise.resolve(pems.get(String('header' in token ? (token.header as { kid?: string }).kid : undefined)) ?? '');
      const app = Fastify();
      await app.register(fastifyJwt, {
        decode: { complete: true },
        secret: { public: keyOfToken },
        verify: {
          algorithms: ['EdDSA'],
          allowedIss: issuer,
          allowedAud: AUDIENCE,
          requiredClaims: ['iss', 'aud', 'sub', 'exp', 'iat', 'jti', 'client_id'],
        },
      });
      app.get('/orders', async (request) => {
        await request.jwtVerify();
        return { ok: true };
      });
      const url = await app.listen({ port: 0, host: '127.0.0.1' });
      try {
        assert.equal(await statusWith(url, tokens.access), 200);
        assert.equal(await statusWith(url, tokens.refresh), 401);
        assert.equal(await statusWith(url, tokens.forged), 401);
      } finally {
        await app.close();
      }
    });

    test('oauth4webapi: discovery, then introspection with client_secret_basic', async () => {
      const issuerUrl = new URL(issuer);
      const insecure = { [oauth.allowInsecureRequests]: true };
      const as = await oauth.processDiscoveryResponse(
        issuerUrl,
        await oauth.discoveryRequest(issuerUrl, { algorithm: 'oauth2', ...insecure }),
      );
      const client = { client_id: clientId };
      const introspect = async (token: string, secret = clientSecret) =>
        oauth.processIntrospectionResponse(
          as,
          client,
          await oauth.introspectionRequest(as, client, oauth.ClientSecretBasic(secret), token, insecure),
        );
      const active = await introspect(tokens.access);
      assert.deepEqual(
        [active.active, active.token_type, active.iss, active.aud, active.client_id],
        [true, 'Bearer', issuer, AUDIENCE, 'fib-sign-in'],
      );
      assert.deepEqual(await introspect(tokens.refresh), { active: false });
      assert.deepEqual(await introspect(tokens.forged), { active: false });
      // RFC 6749 §5.2: a wrong secret is 401 with the Basic challenge (which the library reports
      // first) and the OAuth error in the body.
      const refused: unknown = await introspect(tokens.access, 'wrong').then(
        () => assert.fail('a wrong secret was accepted'),
        (error: unknown) => error,
      );
      assert.ok(refused instanceof oauth.WWWAuthenticateChallengeError, String(refused));
      assert.deepEqual([refused.status, refused.cause[0]?.scheme], [401, 'basic']);
      assert.equal(((await refused.response.json()) as { error: string }).error, 'invalid_client');
    });

    test('openid-client: discovery() and tokenIntrospection() with its default client authentication (client_secret_post)', async () => {
      const config = await openid.discovery(new URL(issuer), clientId, clientSecret, undefined, {
        algorithm: 'oauth2',
        execute: [openid.allowInsecureRequests],
      });
      const active = await openid.tokenIntrospection(config, tokens.access);
      assert.deepEqual([active.active, active.token_type, active.client_id], [true, 'Bearer', 'fib-sign-in']);
      assert.equal((await openid.tokenIntrospection(config, tokens.refresh)).active, false);
      assert.equal((await openid.tokenIntrospection(config, tokens.forged)).active, false);
      // The secret went in the form: the same request as HTTP Basic would carry an Authorization header.
      const posted = await rawCall(t.url, 'POST', `${BASE}/introspection`, {
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: tokens.access, client_id: clientId, client_secret: clientSecret }).toString(),
      });
      assert.equal((posted.body as { active: boolean }).active, true);
    });
  });
}
