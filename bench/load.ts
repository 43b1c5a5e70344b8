import { connect, type Socket } from 'node:net';
import { ProcessSampler, type ProcessUsage } from './process-usage.js';

export interface LoadRequest {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadOptions {
  concurrency: number;
  seconds: number;
  /** Reuse the requests from the start when they run out (sign-in); otherwise the run ends with them. */
  cycle?: boolean;
  /** The process answering, whose process tree's CPU and memory are sampled during the run. */
  pid?: number;
  /**
   * Open loop: request i is sent `i / ratePerSecond` seconds into the run, on the first of the
   * `concurrency` connections that is free, whatever the answers before it; its latency counts
   * from that moment, so a server that falls behind shows in the latencies (and in `rps`, the
   * rate achieved) rather than slowing the load. Without it, closed loop.
   */
  ratePerSecond?: number;
  /** Called with each answer's body, by the index of its request; without it, bodies are skipped unread. */
  onAnswer?: (index: number, status: number, body: Buffer) => void;
}

export interface LoadResult {
  concurrency: number;
  requests: number;
  seconds: number;
  rps: number;
  /** Answers by HTTP status, and `error` for requests that got none. */
  statuses: Record<string, number>;
  /** The first connection error, when there was one: what `error` in `statuses` means. */
  firstError?: string;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  server?: ProcessUsage;
  /** CPU cores this process (the load generator) used meanwhile. */
  loadGeneratorCores: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** How long after the run's time an unanswered request is given up (counted as `error`). */
const GRACE_MS = 10_000;

/** A request as the bytes sent on the wire, with a body length whenever the method carries one. */
function encode(host: string, request: LoadRequest): Buffer {
  const body = request.body ?? '';
  let head = `${request.method} ${request.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const [name, value] of Object.entries(request.headers ?? {})) head += `${name}: ${value}\r\n`;
  if (request.method !== 'GET' || body) head += `content-length: ${Buffer.byteLength(body)}\r\n`;
  return Buffer.from(`${head}\r\n${body}`);
}

const NO_BODY = Buffer.alloc(0);

/** The value of the first header called `name` in an answer's head, lowercased; undefined without one. */
function headerValue(lowercaseHead: string, name: string): string | undefined {
  const line = lowercaseHead.indexOf(`\r\n${name}:`); // every header line follows the status line's CRLF or another's
  if (line < 0) return undefined;
  const start = line + name.length + 3;
  const end = lowercaseHead.indexOf('\r\n', start);
  return lowercaseHead.slice(start, end < 0 ? undefined : end).trim();
}

/** Statuses whose answers have no body whatever their headers say (RFC 9112 §6.3). */
const noBody = (status: number) => status < 200 || status === 204 || status === 304;

/**
 * Reads HTTP/1.1 answers off one keep-alive connection, as little as it takes to know where
 * each ends: the status line, Content-Length, or chunked transfer coding (chunk sizes and
 * trailers), or the end of the connection when neither is given. Any number of answers may
 * arrive in one chunk of data, and one answer across many.
 */
class AnswerReader {
  private pending: Buffer | undefined;
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailers' | 'until-close' = 'head';
  private status = 0;
  /** The answer said `connection: close`: nothing more comes on this connection. */
  private closing = false;
  /** Bytes left of the body (state `body`) or of the chunk with its CRLF (state `chunk-data`). */
  private remaining = 0;
  /** The body's bytes so far, when they are kept (`onAnswer`). */
  private body: Buffer[] = [];

  constructor(
    private readonly answered: (status: number, closing: boolean, body: Buffer) => void,
    private readonly keepBody: boolean,
  ) {}

  /** True while an answer that ends with the connection is being read. */
  get endsWithConnection(): boolean {
    return this.state === 'until-close';
  }

  feed(data: Buffer): void {
    const buffer = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = undefined;
    let offset = 0;
    while (offset < buffer.length) {
      if (this.state === 'body' || this.state === 'chunk-data') {
        const taken = Math.min(this.remaining, buffer.length - offset);
        // A chunk's data is followed by CRLF, counted in `remaining` but not part of the body.
        const data = this.state === 'body' ? taken : Math.max(0, Math.min(taken, this.remaining - 2));
        if (this.keepBody && data > 0) this.body.push(buffer.subarray(offset, offset + data));
        offset += taken;
        this.remaining -= taken;
        if (this.remaining > 0) return;
        if (this.state === 'body') this.finish();
        else this.state = 'chunk-size';
        continue;
      }
      if (this.state === 'until-close') {
        if (this.keepBody) this.body.push(buffer.subarray(offset));
        return;
      }
      const end = buffer.indexOf(this.state === 'head' ? '\r\n\r\n' : '\r\n', offset, 'latin1');
      if (end < 0) {
        this.pending = buffer.subarray(offset);
        return;
      }
      const text = buffer.toString('latin1', offset, end);
      if (this.state === 'head') {
        offset = end + 4;
        this.head(text);
      } else if (this.state === 'chunk-size') {
        offset = end + 2;
        const size = parseInt(text, 16); // stops at a chunk extension's ';'
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(text)}`);
        if (size === 0) this.state = 'trailers';
        else [this.state, this.remaining] = ['chunk-data', size + 2];
      } else {
        offset = end + 2;
        if (text === '') this.finish(); // the empty line after the trailers (usually none)
      }
    }
  }

  private head(text: string): void {
    this.status = Number(text.slice(9, 12)); // "HTTP/1.1 200 OK"
    const lower = text.toLowerCase();
    const contentLength = headerValue(lower, 'content-length');
    const length = contentLength === undefined ? undefined : Number(contentLength);
    const chunked = /chunked$/.test(headerValue(lower, 'transfer-encoding') ?? '');
    this.closing = headerValue(lower, 'connection')?.includes('close') ?? false;
    if (noBody(this.status)) this.finish();
    else if (chunked) this.state = 'chunk-size';
    else if (length === undefined) this.state = 'until-close';
    else if (length === 0) this.finish();
    else [this.state, this.remaining] = ['body', length];
  }

  /** The connection ended: an answer read until then is complete. */
  closed(): void {
    if (this.state === 'until-close') this.finish();
  }

  private finish(): void {
    this.state = 'head';
    const body = this.keepBody ? Buffer.concat(this.body) : NO_BODY;
    this.body = [];
    this.answered(this.status, this.closing, body);
  }
}

/**
 * Closed-loop load on raw keep-alive sockets: `concurrency` connections, each sending the next
 * unused request as soon as its previous answer arrived (or, with `ratePerSecond`, when it is due). Each request is encoded once, before
 * the run. Every request is used once (a logout token can succeed only once), so the run ends
 * after `seconds` or with the requests. A connection that fails or closes while a request is
 * out counts that request as `error` and is replaced by a new one.
 */
export async function load(origin: string, requests: readonly LoadRequest[], options: LoadOptions): Promise<LoadResult> {
  const { hostname, port, host } = new URL(origin);
  const encodings = new Map<LoadRequest, Buffer>();
  const encoded = requests.map((request) => {
    if (!encodings.has(request)) encodings.set(request, encode(host, request));
    return encodings.get(request)!;
  });
  const latencies = new Float64Array(options.cycle ? 1 << 22 : requests.length);
  const statuses: Record<string, number> = {};
  let next = 0;
  let done = 0;
  let firstError: string | undefined;
  const sampler = options.pid === undefined ? undefined : new ProcessSampler(options.pid);
  const cpuAtStart = process.cpuUsage();
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const more = () => performance.now() < deadline && (options.cycle ? done < latencies.length : next < requests.length);

  const sockets = new Set<Socket>();
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let running = options.concurrency;
  const slotDone = () => {
    if (--running === 0) finish();
  };

  function slot(): void {
    let socket: Socket | undefined;
    let reader: AnswerReader;
    let sent = 0;
    let index = 0;
    let waiting = false;
    const record = (status: string) => {
      waiting = false;
      latencies[done++] = performance.now() - sent;
      statuses[status] = (statuses[status] ?? 0) + 1;
    };
    const open = () => {
      const own = connect({ host: hostname, port: Number(port), noDelay: true });
      socket = own;
      sockets.add(own);
      reader = new AnswerReader((status, closing, body) => {
        record(String(status));
        options.onAnswer?.(index, status, body);
        if (closing) {
          socket = undefined;
          own.end();
        }
        send();
      }, options.onAnswer !== undefined);
      own.on('data', (data: Buffer) => {
        try {
          reader.feed(data);
        } catch (error) {
          own.destroy(error as Error); // an answer this reader cannot follow: the request counts as `error`
        }
      });
      own.on('error', (error) => (firstError ??= error.message)); // followed by 'close'
      own.on('close', () => {
        sockets.delete(own);
        if (socket !== own) return;
        socket = undefined;
        if (waiting && reader.endsWithConnection) reader.closed();
        else if (waiting) {
          firstError ??= 'the connection closed before the answer';
          record('error');
          send();
        }
      });
    };
    const send = () => {
      const due = options.ratePerSecond === undefined ? performance.now() : started + (next * 1000) / options.ratePerSecond;
      if (!more() || due >= deadline) {
        socket?.end();
        slotDone();
        return;
      }
      index = next++;
      const early = due - performance.now();
      if (early > 0) setTimeout(() => transmit(due), early);
      else transmit(due);
    };
    const transmit = (due: number) => {
      if (!socket) open();
      waiting = true;
      sent = due;
      socket!.write(encoded[index % encoded.length]);
    };
    send();
  }

  for (let i = 0; i < options.concurrency; i++) slot();
  const giveUp = setTimeout(
    () => {
      const unanswered = new Error(`no answer ${GRACE_MS} ms after the run's time`);
      for (const socket of sockets) socket.destroy(unanswered); // their requests count as `error`
    },
    options.seconds * 1000 + GRACE_MS,
  );
  await finished;
  clearTimeout(giveUp);
  const seconds = (performance.now() - started) / 1000;
  const server = sampler?.stop();
  const cpu = process.cpuUsage(cpuAtStart);
  for (const socket of sockets) socket.destroy();
  const sorted = latencies.subarray(0, done).sort();
  return {
    concurrency: options.concurrency,
    requests: done,
    seconds: round(seconds),
    rps: Math.round(done / seconds),
    statuses,
    firstError,
    latencyMs: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[done - 1] ?? NaN),
    },
    server,
    loadGeneratorCores: round((cpu.user + cpu.system) / 1e6 / seconds),
  };
}
