import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, lifetimesOf, loadConfig, storeOptions, type Config } from './config.js';
import { epochSeconds, systemClock } from './domain/clock.js';
import { CLIENT_ID_PATTERN, Clients } from './domain/clients.js';
import { EMAIL_MAX_LENGTH, isEmail } from './domain/email.js';
import { Lifetimes } from './domain/lifetimes.js';
import { parsePublicKeyHex } from './domain/signature.js';
import { generateNextKey, keyFileIds, keyPaths, removeKeyFiles, rotateSigningKey } from './key-files.js';
import { ROLES, type Role, type Store } from './domain/store.js';

const USAGE = `usage:
  fib-auth serve
  fib-auth users add --email E --auth-public-key HEX [--account-id ID] [--role ${ROLES.join('|')}]
  fib-auth users remove --email E
  fib-auth users list [--json]
  fib-auth clients add --id ID
  fib-auth clients remove --id ID
  fib-auth clients list [--json]
  fib-auth keys generate
  fib-auth keys rotate
  fib-auth keys revoke --kid KID`;

/** A mistake in the command line: exit 2. Anything else that fails: exit 1. */
class UsageError extends Error {}

function options<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], spec: T) {
  try {
    return parseArgs({ args, options: spec, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError((error as Error).message.split('\n')[0]);
  }
}

/**
 * `FLAG VALUE` as `FLAG=VALUE`, for a value that may start with a dash, which parseArgs would
 * take for an option: a kid is base64url, and one in 64 starts with '-'.
 */
function withValueJoined(args: string[], flag: string): string[] {
  const at = args.indexOf(flag);
  return at < 0 || at === args.length - 1 ? args : [...args.slice(0, at), `${flag}=${args[at + 1]}`, ...args.slice(at + 2)];
}

function required(value: string | boolean | undefined, flag: string): string {
  if (typeof value !== 'string' || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

/**
 * Runs `work` on the store DATABASE_URL names; `location` names it for what the command prints
 * (a SQLite file by its full path, PostgreSQL without the password). A SQLite file that does not
 * exist is refused rather than created (docs/design.md §8): run in another folder, the default
 * `./var/fib-auth.sqlite` would be a new store there that no server reads.
 */
async function withStore<T>(work: (store: Store, location: string) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const { openStore, storeLocation } = await import('./store/open.js'); // Kysely and the drivers: only for the commands that use them
  const location = storeLocation(config.databaseUrl);
  if (location.startsWith('sqlite:/') && !existsSync(location.slice('sqlite:'.length))) {
    throw new Error(
      `there is no store at ${location}: set DATABASE_URL to the server's (fib-auth serve creates it on first start)`,
    );
  }
  const store = await openStore(storeOptions(config));
  try {
    return await work(store, location);
  } finally {
    await store.close();
  }
}

const isoTime = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString();

/**
 * A listing: with --json, the records with ISO times; otherwise one tab-separated line each, or
 * on standard error `none` when there is none (standard output stays empty for scripts).
 */
function printList<T extends { createdAt: number }>(
  list: T[],
  json: boolean | undefined,
  none: string,
  columns: (item: T) => string[],
): void {
  if (!json && list.length === 0) console.error(none);
  else if (json) {
    console.log(
      JSON.stringify(
        list.map((item) => ({ ...item, createdAt: isoTime(item.createdAt) })),
        null,
        2,
      ),
    );
  } else {
    for (const item of list) console.log(columns(item).join('\t'));
  }
}

async function users(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'add') {
    const values = options(rest, {
      email: { type: 'string' },
      'auth-public-key': { type: 'string' },
      'account-id': { type: 'string' },
      role: { type: 'string' },
    });
    const email = required(values.email, '--email');
    if (!isEmail(email))
      throw new UsageError(
        `--email must be an email address of at most ${EMAIL_MAX_LENGTH} characters, as HTML's <input type=email> takes`,
      );
    const authPublicKeyHex = required(values['auth-public-key'], '--auth-public-key');
    if (!parsePublicKeyHex(authPublicKeyHex))
      throw new UsageError('--auth-public-key must be 64 hex characters naming an Ed25519 public key');
    const role = (values.role ?? 'ROLE_PEER') as Role;
    if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
    const accountId = values['account-id'] ?? randomUUID();
    await withStore(async (store, location) => {
      const added = await store.addUser({ email, accountId, authPublicKeyHex, role, createdAt: epochSeconds(systemClock) });
      if (!added) throw new Error(`a user with the email ${email} already exists in ${location}`);
      console.log(`added ${email.toLowerCase()} (account ${accountId}, ${role}) to ${location}`);
    });
  } else if (action === 'remove') {
    const email = required(options(rest, { email: { type: 'string' } }).email, '--email');
    await withStore(async (store, location) => {
      if (!(await store.removeUser(email, epochSeconds(systemClock))))
        throw new Error(`no user has the email ${email} in ${location}`);
      console.log(`removed ${email.toLowerCase()} from ${location} and revoked their sessions`);
    });
  } else if (action === 'list') {
    const { json } = options(rest, { json: { type: 'boolean' } });
    await withStore(async (store, location) =>
      printList(await store.listUsers(), json, `no users in ${location}`, (u) => [
        u.email,
        u.accountId,
        u.role,
        u.authPublicKeyHex,
      ]),
    );
  } else {
    throw new UsageError(action ? `unknown users command: ${action}` : 'users needs a command: add, remove or list');
  }
}

async function clients(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'add' || action === 'remove') {
    const id = required(options(rest, { id: { type: 'string' } }).id, '--id');
    if (!CLIENT_ID_PATTERN.test(id)) throw new UsageError('--id must be 1 to 64 characters of A-Z a-z 0-9 . _ ~ -');
    await withStore(async (store, location) => {
      if (action === 'add') {
        const secret = await new Clients(store, systemClock).add(id);
        if (secret === undefined) throw new Error(`a client with the id ${id} already exists in ${location}`);
        // The secret alone on the last line, for scripts; it is not stored and not shown again.
        console.log(`added the resource-server client ${id} to ${location}; its secret (shown only now):`);
        console.log(secret);
      } else {
        if (!(await store.removeClient(id))) throw new Error(`no client has the id ${id} in ${location}`);
        console.log(`removed the client ${id} from ${location}`);
      }
    });
  } else if (action === 'list') {
    const { json } = options(rest, { json: { type: 'boolean' } });
    await withStore(async (store, location) =>
      printList(
        (await store.listClients()).map(({ id, createdAt }) => ({ id, createdAt })), // never the secret's hash
        json,
        `no resource-server clients in ${location}`,
        (c) => [c.id, isoTime(c.createdAt)],
      ),
    );
  } else {
    throw new UsageError(action ? `unknown clients command: ${action}` : 'clients needs a command: add, remove or list');
  }
}

/**
 * Withdraws a verification key at once (docs/design.md §5): in the store, which every process
 * reads within a second, with its entry in the revocation feed; then its files go.
 */
async function revokeKey(config: Config, kid: string): Promise<void> {
  const ids = await keyFileIds(config.signingKeyFile);
  if (kid === ids.signer) {
    throw new Error(`${kid} is the signing key: make another key the signer first (fib-auth keys rotate), then revoke ${kid}`);
  }
  const now = epochSeconds(systemClock);
  const until = lifetimesOf(config).retiredKeyUntil(now);
  await withStore(async (store, location) => {
    if (ids.next !== kid && !ids.published.includes(kid) && !(await store.withdrawnKeys()).includes(kid)) {
      const { next, verificationDir } = keyPaths(config.signingKeyFile);
      throw new Error(`no key ${kid} is published in ${verificationDir}, waiting in ${next} or withdrawn in ${location}`);
    }
    const withdrawn = await store.withdrawKey(kid, now, until);
    const removed = removeKeyFiles(config.signingKeyFile, kid, ids).map((file) => `; removed ${file}`);
    console.log(
      withdrawn
        ? `withdrew ${kid} in ${location}: every instance refuses its tokens within a second, and the revocation feed lists it until ${isoTime(until)}${removed.join('')}`
        : `${kid} was withdrawn before in ${location}${removed.join('')}`,
    );
  });
}

async function keys(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  // Like the store, the key files are named where they were written: a relative
  // FIB_AUTH_SIGNING_KEY_FILE (the default is one) depends on the folder the command runs in.
  const keyFiles = (config: Config) => `(key files in ${dirname(config.signingKeyFile)})`;
  if (action === 'generate') {
    options(rest, {});
    const config = loadConfig();
    const kid = await generateNextKey(config.signingKeyFile);
    console.log(
      `generated the next signing key ${kid}; it verifies now and signs after \`fib-auth keys rotate\`: reload every instance (SIGHUP), then wait at least ${2 * Lifetimes.PUBLISHED_KEYS_MAX_AGE_SECONDS} seconds before rotating, so that every cached key set lists it ${keyFiles(config)}`,
    );
  } else if (action === 'rotate') {
    options(rest, {});
    const config = loadConfig();
    const { signer, retired, retiredUntil } = await rotateSigningKey(config.signingKeyFile, lifetimesOf(config));
    console.log(`${signer} signs new tokens; ${retired} verifies until ${isoTime(retiredUntil)} ${keyFiles(config)}`);
  } else if (action === 'revoke') {
    const kid = required(options(withValueJoined(rest, '--kid'), { kid: { type: 'string' } }).kid, '--kid');
    await revokeKey(loadConfig(), kid);
  } else {
    throw new UsageError(action ? `unknown keys command: ${action}` : 'keys needs a command: generate, rotate or revoke');
  }
}

async function serve(args: string[]): Promise<void> {
  options(args, {});
  const config = loadConfig();
  // Loaded here, not at the top: the other commands (users, clients, keys) never load the
  // server's HTTP stack (koa, openapi-backend), and start in a fraction of the time.
  const { serve } = await import('./serve.js');
  await serve(config);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') return serve(rest);
  if (command === 'users') return users(rest);
  if (command === 'clients') return clients(rest);
  if (command === 'keys') return keys(rest);
  if (command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return;
  }
  throw new UsageError(command ? `unknown command: ${command}` : 'a command is required');
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`fib-auth: ${error.message} (fib-auth --help shows the usage)`);
    process.exit(2);
  }
  const message = error instanceof Error ? error.message : String(error);
  console.error(`fib-auth: ${error instanceof ConfigError ? message : message.split('\n')[0]}`);
  process.exit(1);
});
