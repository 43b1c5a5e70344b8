import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ConfigError, lifetimesOf, loadConfig, storeOptions, type Config } from './config.js';
import { epochSeconds, systemClock } from './domain/clock.js';
import { CLIENT_ID_PATTERN, Clients } from './domain/clients.js';
import { EMAIL_MAX_LENGTH, isEmail } from './domain/email.js';
import { parsePublicKeyHex } from './domain/signature.js';
import { generateNextKey, keyFileIds, keyPaths, removeKeyFiles, rotateSigningKey } from './key-files.js';
import { createLogger, type Logger } from './logger.js';
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

async function withStore<T>(work: (store: Store) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const { openStore } = await import('./store/open.js'); // Kysely and the drivers: only for the commands that use them
  const store = await openStore(storeOptions(config));
  try {
    return await work(store);
  } finally {
    await store.close();
  }
}

const isoTime = (epochSeconds: number) => new Date(epochSeconds * 1000).toISOString();

/** A listing: with --json, the records with ISO times; otherwise one tab-separated line each. */
function printList<T extends { createdAt: number }>(list: T[], json: boolean | undefined, columns: (item: T) => string[]): void {
  if (json) {
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
    const added = await withStore((store) =>
      store.addUser({ email, accountId, authPublicKeyHex, role, createdAt: epochSeconds(systemClock) }),
    );
    if (!added) throw new Error(`a user with the email ${email} already exists`);
    console.log(`added ${email.toLowerCase()} (account ${accountId}, ${role})`);
  } else if (action === 'remove') {
    const email = required(options(rest, { email: { type: 'string' } }).email, '--email');
    const removed = await withStore((store) => store.removeUser(email, epochSeconds(systemClock)));
    if (!removed) throw new Error(`no user has the email ${email}`);
    console.log(`removed ${email.toLowerCase()} and revoked their sessions`);
  } else if (action === 'list') {
    const { json } = options(rest, { json: { type: 'boolean' } });
    printList(await withStore((store) => store.listUsers()), json, (u) => [u.email, u.accountId, u.role, u.authPublicKeyHex]);
  } else {
    throw new UsageError(action ? `unknown users command: ${action}` : 'users needs a command: add, remove or list');
  }
}

async function clients(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'add' || action === 'remove') {
    const id = required(options(rest, { id: { type: 'string' } }).id, '--id');
    if (!CLIENT_ID_PATTERN.test(id)) throw new UsageError('--id must be 1 to 64 characters of A-Z a-z 0-9 . _ ~ -');
    if (action === 'add') {
      const secret = await withStore((store) => new Clients(store, systemClock).add(id));
      if (secret === undefined) throw new Error(`a client with the id ${id} already exists`);
      // The secret alone on the last line, for scripts; it is not stored and not shown again.
      console.log(`added the resource-server client ${id}; its secret (shown only now):`);
      console.log(secret);
    } else {
      if (!(await withStore((store) => store.removeClient(id)))) throw new Error(`no client has the id ${id}`);
      console.log(`removed the client ${id}`);
    }
  } else if (action === 'list') {
    const { json } = options(rest, { json: { type: 'boolean' } });
    const list = await withStore((store) => store.listClients());
    printList(
      list.map(({ id, createdAt }) => ({ id, createdAt })), // never the secret's hash
      json,
      (c) => [c.id, isoTime(c.createdAt)],
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
  const { storeLocation } = await import('./store/open.js');
  const store = storeLocation(config.databaseUrl);
  const now = epochSeconds(systemClock);
  const until = lifetimesOf(config).retiredKeyUntil(now);
  const withdrawn = await withStore(async (opened) => {
    if (ids.next !== kid && !ids.published.includes(kid) && !(await opened.withdrawnKeys()).includes(kid)) {
      const { next, verificationDir } = keyPaths(config.signingKeyFile);
      throw new Error(`no key ${kid} is published in ${verificationDir}, waiting in ${next} or withdrawn in ${store}`);
    }
    return opened.withdrawKey(kid, now, until);
  });
  const removed = removeKeyFiles(config.signingKeyFile, kid, ids).map((file) => `; removed ${file}`);
  console.log(
    withdrawn
      ? `withdrew ${kid} in ${store}: every instance refuses its tokens within a second, and the revocation feed lists it until ${isoTime(until)}${removed.join('')}`
      : `${kid} was withdrawn before in ${store}${removed.join('')}`,
  );
}

async function keys(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'generate') {
    options(rest, {});
    const kid = await generateNextKey(loadConfig().signingKeyFile);
    console.log(`generated the next signing key ${kid}; it verifies now and signs after \`fib-auth keys rotate\``);
  } else if (action === 'rotate') {
    options(rest, {});
    const config = loadConfig();
    const { signer, retired, retiredUntil } = await rotateSigningKey(config.signingKeyFile, lifetimesOf(config));
    console.log(`${signer} signs new tokens; ${retired} verifies until ${isoTime(retiredUntil)}`);
  } else if (action === 'revoke') {
    const kid = required(options(withValueJoined(rest, '--kid'), { kid: { type: 'string' } }).kid, '--kid');
    await revokeKey(loadConfig(), kid);
  } else {
    throw new UsageError(action ? `unknown keys command: ${action}` : 'keys needs a command: generate, rotate or revoke');
  }
}

/**
 * Stops on SIGTERM or SIGINT, or when the returned function is called: logs `why`, runs
 * `close` once, and exits 0 when it resolves, 1 when it fails. A second signal ends the process at once, but a
 * worker's: its primary passes SIGTERM on, and a signal to the whole process group (systemd's,
 * Ctrl-C's) reaches the worker too, which would otherwise end it with its requests in flight.
 */
function stopOn(logger: Logger, why: string, close: () => Promise<void>): (signal: string) => void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const closed = close(); // a server stops listening before this returns
    logger.info({ signal }, why);
    closed.then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  if (cluster.isWorker) process.on('SIGTERM', stop).on('SIGINT', stop);
  else process.once('SIGTERM', stop).once('SIGINT', stop);
  return stop;
}

/** Serves with the primary of a cluster; its workers run `serve` as well, and serve HTTP. */
async function serveWorkers(config: Config, logger: Logger): Promise<void> {
  const { startPrimary } = await import('./workers.js');
  const primary = await startPrimary(config, logger);
  const port = await primary.listening;
  logger.info({ port, host: config.host, managementPort: primary.managementPort, workers: config.workers }, 'fib-auth listening');
  const stop = stopOn(logger, 'shutting down: stopping every worker', () => primary.close());
  process.on('SIGHUP', () => primary.reloadKeys());
  void primary.stopped.then(() => stop('every worker stopped'));
}

async function serve(args: string[]): Promise<void> {
  options(args, {});
  const config = loadConfig();
  const processLogger = createLogger(config.logLevel);
  if (config.workers > 1 && cluster.isPrimary) return serveWorkers(config, processLogger);
  // A worker's lines say which worker wrote them.
  const logger = cluster.isWorker ? processLogger.child({ worker: cluster.worker!.id }) : processLogger;
  // Loaded here, not at the top: the other commands (users, clients, keys) never load the
  // server's HTTP stack (koa, openapi-backend), and start in a fraction of the time.
  const [{ startServer }, { tellPrimaryClosed, workerParts }] = await Promise.all([
    import('./server.js'),
    import('./workers.js'),
  ]);
  const server = await startServer(config, logger, cluster.isWorker ? workerParts() : {});
  const stop = cluster.isWorker
    ? stopOn(logger, 'worker stopped listening; draining its requests in flight', () => {
        const closed = server.close(); // stops listening before it returns
        tellPrimaryClosed();
        return closed;
      })
    : stopOn(logger, 'shutting down: no new connections, draining requests in flight', () => server.close());
  // A worker whose primary is gone has no peers for its limits and metrics: it stops as on SIGTERM.
  if (cluster.isWorker) process.once('disconnect', () => stop('disconnect'));
  process.on('SIGHUP', () => {
    server.reloadKeys().catch((err: unknown) => logger.error({ err }, 'reloading the keys failed; the old keys stay in use'));
  });
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
