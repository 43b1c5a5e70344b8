// oidc-provider's adapter interface over PostgreSQL, as its users run it instead of the
// in-memory adapter its documentation calls development-only: one table of id, payload (jsonb)
// and expiry, keyed by model and id, each write committed durably (synchronous_commit on, as
// fib-auth's statements are). The lookups by grant, user code and uid read the payload, through
// partial indexes that only rows carrying those fields enter.
import pg from 'pg';

const TABLE = 'oidc_payloads';

let pool;

/** Connects to `url` and creates the table; fails unless commits wait for the WAL's flush. */
export async function connectPostgresAdapter(url) {
  pool = new pg.Pool({ connectionString: url, max: Number(process.env.DATABASE_POOL_SIZE ?? 10) });
  const { rows } = await pool.query('show synchronous_commit');
  if (rows[0].synchronous_commit !== 'on') throw new Error(`synchronous_commit is ${rows[0].synchronous_commit}, not on`);
  await pool.query(`
    create table if not exists ${TABLE} (
      model text not null,
      id text not null,
      payload jsonb not null,
      expires_at timestamptz,
      primary key (model, id)
    );
    create index if not exists ${TABLE}_grant on ${TABLE} ((payload->>'grantId')) where payload ? 'grantId';
    create index if not exists ${TABLE}_user_code on ${TABLE} ((payload->>'userCode')) where payload ? 'userCode';
    create index if not exists ${TABLE}_uid on ${TABLE} ((payload->>'uid')) where payload ? 'uid';`);
}

const LIVE = '(expires_at is null or expires_at > now())';

export class PostgresAdapter {
  constructor(model) {
    this.model = model;
  }

  async upsert(id, payload, expiresIn) {
    await pool.query(
      `insert into ${TABLE} (model, id, payload, expires_at)
       values ($1, $2, $3, case when $4::int is null then null else now() + make_interval(secs => $4::int) end)
       on conflict (model, id) do update set payload = excluded.payload, expires_at = excluded.expires_at`,
      [this.model, id, payload, expiresIn ?? null],
    );
  }

  async findBy(condition, value) {
    const { rows } = await pool.query(`select payload from ${TABLE} where model = $1 and ${condition} = $2 and ${LIVE}`, [
      this.model,
      value,
    ]);
    return rows[0]?.payload;
  }

  find(id) {
    return this.findBy('id', id);
  }

  findByUserCode(userCode) {
    return this.findBy(`payload->>'userCode'`, userCode);
  }

  findByUid(uid) {
    return this.findBy(`payload->>'uid'`, uid);
  }

  async consume(id) {
    await pool.query(
      `update ${TABLE} set payload = payload || jsonb_build_object('consumed', floor(extract(epoch from now()))::bigint)
       where model = $1 and id = $2`,
      [this.model, id],
    );
  }

  async destroy(id) {
    await pool.query(`delete from ${TABLE} where model = $1 and id = $2`, [this.model, id]);
  }

  // As the in-memory adapter does: every model's entries of the grant go.
  async revokeByGrantId(grantId) {
    await pool.query(`delete from ${TABLE} where payload->>'grantId' = $1`, [grantId]);
  }
}
