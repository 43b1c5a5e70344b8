/**
 * The peer for logout: oidc-provider (`bench/oidc-peer.mjs`) revoking opaque access tokens
 * (RFC 7009), loaded like the server, on its in-memory or its PostgreSQL adapter. Its tokens are issued before each timed run and
 * introspected after it, neither timed, so that the run measures revocations alone and the
 * bench fails unless every one of them really removed its token.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { packageRoot } from '../src/package-root.js';
import { freePort } from '../test/support/processes.js';
import { startService, type Service } from './fixture.js';
import { load, type LoadRequest, type LoadResult } from './load.js';

const CLIENT = { id: 'bench-client', secret: 'bench-client-secret-of-32-characters' };
const BASIC = `Basic ${Buffer.from(`${CLIENT.id}:${CLIENT.secret}`).toString('base64')}`;
const FORM = { authorization: BASIC, 'content-type': 'application/x-www-form-urlencoded' };
/** Requests in flight while tokens are issued and introspected. */
const UNTIMED_CONCURRENCY = 50;

const form = (path: string, body: string): LoadRequest => ({ method: 'POST', path, headers: FORM, body });
const revocationRequest = (token: string) => form('/token/revocation', `token=${token}&token_type_hint=access_token`);

export class OidcPeer {
  private constructor(readonly service: Service) {}

  /**
   * Sends each request once, untimed, on the bench's load generator; returns each answer's
   * body as JSON (by the request's index), after checking that every answer was 200.
   */
  private async answers<T>(what: string, requests: LoadRequest[]): Promise<T[]> {
    const bodies = new Array<T>(requests.length);
    const result = await load(this.service.origin, requests, {
      concurrency: UNTIMED_CONCURRENCY,
      seconds: 600,
      onAnswer: (index, status, body) => {
        if (status === 200) bodies[index] = JSON.parse(body.toString()) as T;
      },
    });
    assert.deepEqual(result.statuses, { 200: requests.length }, `oidc-provider ${what}: ${JSON.stringify(result.statuses)}`);
    return bodies;
  }

  /**
   * Starts the peer, on its in-memory adapter or, given `databaseUrl`, on its PostgreSQL
   * adapter there, and checks that an issued token introspects active, and inactive once revoked.
   */
  static async start(databaseUrl?: string): Promise<OidcPeer> {
    const port = await freePort();
    const service = await startService(process.execPath, [join(packageRoot, 'bench/oidc-peer.mjs')], port, {
      PORT: String(port),
      CLIENT_ID: CLIENT.id,
      CLIENT_SECRET: CLIENT.secret,
      DATABASE_URL: databaseUrl ?? '',
    });
    const peer = new OidcPeer(service);
    try {
      const [token] = await peer.issue(1);
      assert.deepEqual(await peer.activity([token]), [true], 'an issued token introspects active');
      const revoked = await load(service.origin, [revocationRequest(token)], { concurrency: 1, seconds: 10 });
      assert.deepEqual(revoked.statuses, { 200: 1 }, 'oidc-provider revokes a token');
      assert.deepEqual(await peer.activity([token]), [false], 'a revoked token introspects inactive');
    } catch (error) {
      await service.stop();
      throw error;
    }
    return peer;
  }

  /** `count` opaque access tokens of the client_credentials grant. */
  async issue(count: number): Promise<string[]> {
    const issue = form('/token', 'grant_type=client_credentials');
    const answers = await this.answers<{ access_token: string }>('issues tokens', new Array<LoadRequest>(count).fill(issue));
    return answers.map((answer) => answer.access_token);
  }

  /** Whether introspection says each token is active. */
  async activity(tokens: readonly string[]): Promise<boolean[]> {
    const requests = tokens.map((token) => form('/token/introspection', `token=${token}`));
    return (await this.answers<{ active: boolean }>('introspects tokens', requests)).map((answer) => answer.active);
  }

  /**
   * One timed run of revocations at `concurrency`, of `count` tokens issued beforehand; then
   * every revoked token must introspect inactive. The tokens the run did not reach are revoked
   * too, untimed, so that each run starts with the peer's store as empty as the last.
   */
  async revocations(concurrency: number, seconds: number, count: number): Promise<LoadResult> {
    const tokens = await this.issue(count);
    const requests = tokens.map(revocationRequest);
    const result = await load(this.service.origin, requests, { concurrency, seconds, pid: this.service.pid });
    assert.deepEqual(
      result.statuses,
      { 200: result.requests },
      `oidc-provider revocation at concurrency ${concurrency}: every request must succeed, got ${JSON.stringify(result.statuses)}`,
    );
    const revoked = tokens.slice(0, result.requests);
    const stillActive = (await this.activity(revoked)).filter((active) => active !== false).length;
    assert.equal(stillActive, 0, `${stillActive} of ${revoked.length} tokens revoked by oidc-provider still introspect active`);
    if (revoked.length < tokens.length) {
      const rest = requests.slice(revoked.length);
      const left = await load(this.service.origin, rest, { concurrency: UNTIMED_CONCURRENCY, seconds: 600 });
      assert.deepEqual(left.statuses, { 200: rest.length }, 'oidc-provider revokes the tokens the run left');
    }
    return result;
  }

  stop(): Promise<number | null> {
    return this.service.stop();
  }
}
