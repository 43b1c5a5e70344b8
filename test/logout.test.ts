import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { manualClock } from './support/clock.js';
import { TEST_ISSUER } from './support/api.js';
import {
  assertExample,
  assertExampleStatus,
  BASE,
  bearer,
  exactlyOne200,
  signInAlice,
  startTestServer,
  type EnvelopeExampleName,
  type TestServer,
} from './support/harness.js';
import { accessClaims, decodePart, forge, kidOf, otherKey, respellings, serverKey, withSignature } from './support/tokens.js';

describe('logout', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.stop());

  test('answers the FIB page body exactly (docs/design.md §1), then 401 for the same token', async () => {
    const { accessToken } = await signInAlice(t);
    const first = await t.logout(accessToken);
    assert.deepEqual(first.body, {
      status: { code: 200, name: 'OK', message: 'User has been successfully logged out.' },
      data: {},
    });
    await assertExample(first, 'LoggedOut');
    await assertExample(await t.logout(accessToken), 'AccessTokenLoggedOut');
  });

  test('ends the whole session: its refresh token stops working too', async () => {
    const s = await t.newSession();
    assert.equal((await t.logout(s.accessToken)).status, 200);
    await assertExample(await t.refresh(s.refreshToken), 'SessionLoggedOut');
  });

  test('leaves other sessions of the same user open', async () => {
    const a = await t.newSession();
    const email = a.email;
    const { signInBody } = await import('./support/vectors.js');
    const second = await t.signIn(signInBody(email, a.key));
    assert.equal((await t.logout(a.accessToken)).status, 200);
    assert.equal((await t.logout(second.body.data.accessToken)).status, 200);
  });

  describe('401 when the bearer token cannot be parsed', () => {
    let token: string;
    before(async () => {
      token = (await t.newSession()).accessToken;
    });
    const cases: [string, () => Record<string, string | string[]>, EnvelopeExampleName][] = [
      ['no Authorization header', () => ({}), 'AuthorizationMissing'],
      ['an empty Authorization header', () => ({ authorization: '' }), 'AuthorizationMissing'],
      ['two Authorization headers', () => ({ authorization: [`Bearer ${token}`, `Bearer ${token}`] }), 'AuthorizationRepeated'],
      ['the Basic scheme', () => ({ authorization: `Basic ${token}` }), 'AuthorizationSchemeNotBearer'],
      ['a scheme alone', () => ({ authorization: 'Bearer' }), 'AuthorizationCredentialCount'],
      ['two credentials', () => ({ authorization: `Bearer ${token} ${token}` }), 'AuthorizationCredentialCount'],
      ['a tab as separator', () => ({ authorization: `Bearer\t${token}` }), 'TokenNotCompactJws'],
      ['a token over 4096 characters', () => bearer(`${token}${'A'.repeat(4097 - token.length)}`), 'TokenTooLong'],
      ['two segments', () => bearer(token.split('.').slice(0, 2).join('.')), 'TokenNotCompactJws'],
      ['four segments', () => bearer(`${token}.AAAA`), 'TokenNotCompactJws'],
      ['base64 padding', () => bearer(`${token}==`), 'TokenNotCompactJws'],
      [
        'the standard base64 alphabet',
        () => bearer(token.replace(/-|_/g, (c) => (c === '-' ? '+' : '/')) + '+/'),
        'TokenNotCompactJws',
      ],
      [
        'a header that is not JSON',
        () => bearer(`bm90IGpzb24.${token.split('.')[1]}.${token.split('.')[2]}`),
        'TokenPartsNotJson',
      ],
      [
        'a payload that is a JSON array',
        () => bearer(`${token.split('.')[0]}.WzEsMl0.${token.split('.')[2]}`),
        'TokenPartsNotJson',
      ],
      ['a payload that is JSON null', () => bearer(`${token.split('.')[0]}.bnVsbA.${token.split('.')[2]}`), 'TokenPartsNotJson'],
    ];
    // RFC 6750 §3.1: no error code for a request that sent no bearer token.
    const sentNoBearerToken = new Set<EnvelopeExampleName>(['AuthorizationMissing', 'AuthorizationSchemeNotBearer']);
    for (const [name, headers, exampleName] of cases) {
      test(name, async () => {
        const reply = await t.call('POST', `${BASE}/logout`, { headers: headers() });
        await assertExample(reply, exampleName);
        const challenge = sentNoBearerToken.has(exampleName) ? 'Bearer' : 'Bearer error="invalid_token"';
        assert.equal(reply.headers['www-authenticate'], challenge);
      });
    }
    test('and the token still works afterwards', async () => {
      assert.equal((await t.logout(token)).status, 200);
    });
  });

  test('reads the scheme case-insensitively and a bare token as Bearer', async () => {
    const a = await t.newSession();
    assert.equal((await t.call('POST', `${BASE}/logout`, { headers: { authorization: `bEaReR ${a.accessToken}` } })).status, 200);
    const b = await t.newSession();
    await assertExample(await t.call('POST', `${BASE}/logout`, { headers: { authorization: b.accessToken } }), 'LoggedOut');
    await assertExample(
      await t.call('POST', `${BASE}/logout`, { headers: { authorization: b.accessToken } }),
      'AccessTokenLoggedOut',
    );
  });

  describe('422 when the signature cannot be trusted', () => {
    test('a signature segment of 63 or 65 bytes', async () => {
      const { accessToken } = await t.newSession();
      const signature = Buffer.from(accessToken.split('.')[2], 'base64url');
      for (const bytes of [signature.subarray(0, 63), Buffer.concat([signature, Buffer.from([0])])]) {
        await assertExample(await t.logout(withSignature(accessToken, bytes)), 'TokenSignatureMalformed');
      }
    });

    test('alg none, HS256 or anything but EdDSA', async () => {
      const { accessToken, email } = await t.newSession();
      const header = decodePart(accessToken, 0);
      for (const alg of ['none', 'None', 'HS256', 'RS256', 'Ed25519', undefined]) {
        const forged = forge({ ...header, alg }, accessClaims(email), serverKey(t));
        await assertExample(await t.logout(forged), 'TokenAlgorithmRejected');
      }
    });

    test('a missing or unknown kid', async () => {
      const { accessToken, email } = await t.newSession();
      const { kid: _kid, ...header } = decodePart(accessToken, 0);
      await assertExample(await t.logout(forge(header, accessClaims(email), serverKey(t))), 'TokenKeyIdMissing');
      await assertExample(await t.logout(forge({ ...header, kid: 42 }, accessClaims(email), serverKey(t))), 'TokenKeyIdMissing');
      const stranger = otherKey();
      await assertExample(
        await t.logout(forge({ ...header, kid: await kidOf(stranger) }, accessClaims(email), stranger)),
        'TokenKeyIdUnknown',
      );
      await assertExample(
        await t.logout(forge({ ...header, kid: '../signing-key.pem' }, accessClaims(email), serverKey(t))),
        'TokenKeyIdUnknown',
      );
    });

    test('a signature by another key under the server kid, or over altered claims', async () => {
      const { accessToken, email } = await t.newSession();
      const header = decodePart(accessToken, 0);
      await assertExample(await t.logout(forge(header, accessClaims(email), otherKey())), 'TokenSignatureInvalid');
      const [h, , s] = accessToken.split('.');
      const altered = Buffer.from(JSON.stringify({ ...decodePart(accessToken, 1), role: 'ROLE_ADMIN' })).toString('base64url');
      await assertExample(await t.logout(`${h}.${altered}.${s}`), 'TokenSignatureInvalid');
      assert.equal((await t.logout(accessToken)).status, 200, 'the genuine token was not harmed');
    });

    test('an unknown critical header', async () => {
      const { accessToken, email } = await t.newSession();
      const header = { ...decodePart(accessToken, 0), crit: ['exp-policy'], 'exp-policy': 1 };
      await assertExample(await t.logout(forge(header, accessClaims(email), serverKey(t))), 'TokenHeaderUnsupported');
    });

    test('is decided before expiry: a forged expired token is 422, not 401', async () => {
      const { accessToken, email } = await t.newSession();
      const claims = { ...accessClaims(email), exp: 1_000_000 };
      await assertExample(await t.logout(forge(decodePart(accessToken, 0), claims, otherKey())), 'TokenSignatureInvalid');
    });
  });

  describe('401 when the token is authentic but not acceptable', () => {
    test('a refresh token', async () => {
      const { refreshToken } = await t.newSession();
      await assertExample(await t.logout(refreshToken), 'NotAnAccessToken');
    });

    test('required claims missing or of the wrong type (iss without aud, or the reverse, among them)', async () => {
      const { accessToken, email } = await t.newSession();
      const header = decodePart(accessToken, 0);
      for (const claim of ['acc', 'sub', 'role', 'sid', 'iss', 'aud', 'jti', 'iat', 'exp'] as const) {
        const { [claim]: _dropped, ...claims } = accessClaims(email);
        await assertExample(await t.logout(forge(header, claims, serverKey(t))), 'TokenClaimsMissing');
      }
      await assertExample(await t.logout(forge(header, { ...accessClaims(email), sid: 7 }, serverKey(t))), 'TokenClaimsMissing');
    });

    test('another issuer or audience than the service names: 401, for logout and refresh alike', async () => {
      const s = await t.newSession();
      const [accessHeader, access] = [decodePart(s.accessToken, 0), decodePart(s.accessToken, 1)];
      const [refreshHeader, refresh] = [decodePart(s.refreshToken, 0), decodePart(s.refreshToken, 1)];
      const signed = (header: object, claims: object) => forge(header, claims, serverKey(t));
      for (const claims of [
        { ...access, iss: 'https://other.example' },
        { ...access, aud: 'other-api' },
        { ...access, aud: ['other-api', 'more-api'] },
        { ...access, aud: TEST_ISSUER }, // the refresh tokens' audience
      ]) {
        await assertExample(await t.logout(signed(accessHeader, claims)), 'TokenIssuerOrAudienceOther');
      }
      await assertExample(await t.logout(signed(accessHeader, { ...access, aud: ['other-api', 'fib-api'] })), 'LoggedOut');
      for (const claims of [
        { ...refresh, iss: 'https://other.example' },
        { ...refresh, aud: 'fib-api' }, // an access audience: not a refresh token of this service
      ]) {
        await assertExample(await t.refresh(signed(refreshHeader, claims)), 'TokenIssuerOrAudienceOther');
      }
    });

    test('an expired token, from its exp second on', async () => {
      const { accessToken, email } = await t.newSession();
      const now = Math.floor(Date.now() / 1000);
      const claims = { ...accessClaims(email), exp: now };
      await assertExample(await t.logout(forge(decodePart(accessToken, 0), claims, serverKey(t))), 'AccessTokenExpired');
    });
  });

  test('tokens issued before tokens named their issuer and audience work until they expire (docs/design.md §5)', async () => {
    const s = await t.newSession();
    // The same session's tokens without iss, aud and client_id, as the server signed them before.
    const legacy = (token: string) => {
      const { iss: _iss, aud: _aud, client_id: _client, ...claims } = decodePart(token, 1);
      return forge(decodePart(token, 0), claims, serverKey(t));
    };
    const refreshed = await t.refresh(legacy(s.refreshToken));
    await assertExampleStatus(refreshed, 'TokensRefreshed');
    assert.equal(decodePart(refreshed.body.data.accessToken, 1).iss, TEST_ISSUER, 'the new pair names the issuer');
    const next = await t.newSession();
    await assertExample(await t.logout(legacy(next.accessToken)), 'LoggedOut');
  });

  test('404 when the user was removed after sign-in, then 401 once re-registered', async () => {
    const s = await t.newSession();
    assert.ok(await t.server.store.removeUser(s.email, Math.floor(Date.now() / 1000)));
    await assertExample(await t.logout(s.accessToken), 'UserNotFound');
    const { publicKeyHexOf } = await import('./support/vectors.js');
    await t.addUser(s.email, publicKeyHexOf(s.key));
    await assertExample(await t.logout(s.accessToken), 'SessionEnded');
  });

  test('401 for an access token retired by a refresh; the new one logs out', async () => {
    const s = await t.newSession();
    const refreshed = await t.refresh(s.refreshToken);
    assert.equal(refreshed.status, 200);
    await assertExample(await t.logout(s.accessToken), 'AccessTokenRetired');
    assert.equal((await t.logout(refreshed.body.data.accessToken)).status, 200);
  });

  test('401 after refresh-token reuse revoked the session', async () => {
    const s = await t.newSession();
    const refreshed = await t.refresh(s.refreshToken);
    assert.equal(refreshed.status, 200);
    await assertExample(await t.refresh(s.refreshToken), 'RefreshTokenReused');
    await assertExample(await t.logout(refreshed.body.data.accessToken), 'SessionRevokedAfterReuse');
  });

  test('a session that was never issued is over (an authentic token for an unknown sid)', async () => {
    const { accessToken, email } = await t.newSession();
    await assertExample(await t.logout(forge(decodePart(accessToken, 0), accessClaims(email), serverKey(t))), 'SessionEnded');
  });

  test('revocation is keyed on the token, not its text: no other spelling of a logged-out token gets a 200', async () => {
    // Whether the payload segment has spare bits depends on its length, which follows the email's.
    let s = await t.newSession();
    for (let pad = 'x'; respellings(s.accessToken, 1).length === 0; pad += 'x')
      s = await t.newSession(`${pad}-${randomUUID()}@example.test`);
    const signatureSpellings = respellings(s.accessToken, 2);
    assert.equal(signatureSpellings.length, 15);
    // One spelling logs the session out; the original and every other spelling are that same token.
    await assertExample(await t.logout(signatureSpellings[0]), 'LoggedOut');
    for (const token of [s.accessToken, ...signatureSpellings])
      await assertExample(await t.logout(token), 'AccessTokenLoggedOut');
    for (const authorization of [s.accessToken, `bEaReR   ${signatureSpellings[7]}  `]) {
      await assertExample(await t.call('POST', `${BASE}/logout`, { headers: { authorization } }), 'AccessTokenLoggedOut');
    }
    // Another spelling of the header or payload changes the signed text, so the signature fails.
    const textSpellings = [...respellings(s.accessToken, 0), ...respellings(s.accessToken, 1)];
    assert.ok(textSpellings.length >= 18, `${textSpellings.length} header and payload spellings`);
    for (const token of textSpellings) await assertExample(await t.logout(token), 'TokenSignatureInvalid');
  });

  test('32 concurrent logouts with one token: exactly one 200', async () => {
    const { accessToken } = await t.newSession();
    await exactlyOne200(32, () => t.logout(accessToken), 401);
  });

  test('a restart keeps logged-out tokens logged out and live ones live', async () => {
    const out = await t.newSession();
    const live = await t.newSession();
    assert.equal((await t.logout(out.accessToken)).status, 200);
    await t.restart();
    await assertExample(await t.logout(out.accessToken), 'AccessTokenLoggedOut');
    assert.equal((await t.logout(live.accessToken)).status, 200);
  });

  test('no token or signature reaches the logs', () => {
    const secrets = /eyJ[A-Za-z0-9_-]{10,}|[0-9a-f]{128}/;
    assert.ok(t.logs.length > 50, `the server logged (${t.logs.length} lines)`);
    for (const line of t.logs) assert.doesNotMatch(line, secrets);
  });
});

describe('logout with ACCESS_TOKEN_TTL=1', () => {
  test('an expired access token cannot log out; refresh, then log out', async () => {
    const clock = manualClock();
    const t = await startTestServer({ ACCESS_TOKEN_TTL: '1' }, { clock });
    try {
      const s = await t.newSession();
      assert.equal(decodePart(s.accessToken, 1).exp, (decodePart(s.accessToken, 1).iat as number) + 1);
      clock.advance(1); // expired from its exp second on
      await assertExample(await t.logout(s.accessToken), 'AccessTokenExpired');
      const refreshed = await t.refresh(s.refreshToken);
      assert.equal(refreshed.status, 200);
      assert.equal(refreshed.body.data.expirationTime, 1);
      assert.equal((await t.logout(refreshed.body.data.accessToken)).status, 200);
    } finally {
      await t.stop();
    }
  });
});
