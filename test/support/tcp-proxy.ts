import { createServer, connect, type Server, type Socket } from 'node:net';

interface Link {
  client: Socket;
  upstream?: Socket;
  /** The request line of the last HTTP request sent on this connection, while its answer has not begun. */
  unanswered?: string;
}

const HTTP_REQUEST_LINE = /^[A-Z]+ \S+ HTTP\/1\.1\r\n/;

/**
 * Stands between a client and a server (PostgreSQL, or the service), so that a test can make
 * the server go away and come back, on the same port every time.
 */
export class TcpProxy {
  port = 0;
  /** The request line of every HTTP request that went through, in order. */
  readonly requestLines: string[] = [];
  private server: Server | undefined;
  private silent = false;
  private readonly links = new Set<Link>();

  constructor(private readonly target: { host: string; port: number }) {}

  /** Accepts connections on the same port every time, forwarding each to the target. */
  async listen(): Promise<void> {
    this.silent = false;
    this.server = createServer((client) => {
      const link: Link = { client };
      this.links.add(link);
      client.on('error', () => {}).on('close', () => this.links.delete(link));
      if (this.silent) return; // accepted, never answered
      link.upstream = connect(this.target).on('error', () => client.destroy());
      client.on('data', (chunk: Buffer) => {
        const line = HTTP_REQUEST_LINE.exec(chunk.toString('latin1', 0, 2048))?.[0].trimEnd();
        if (line) this.requestLines.push((link.unanswered = line));
      });
      link.upstream.on('data', () => (link.unanswered = undefined));
      client.pipe(link.upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => this.server!.once('error', reject).listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** The HTTP requests whose path contains `path` that wait for their answer now. */
  unanswered(path: string): string[] {
    return [...this.links].flatMap(({ unanswered }) => (unanswered?.includes(path) ? [unanswered] : []));
  }

  /** A network that goes quiet: connections stay open, nothing passes, new ones are never answered. */
  silence(): void {
    this.silent = true;
    this.hang();
  }

  /** The requests on the connections open now hang for good (accepted, never answered); new connections pass. */
  hang(): void {
    for (const { client, upstream } of this.links) {
      client.unpipe();
      upstream?.unpipe();
    }
  }

  /** A server that is gone: every connection is cut and new ones are refused. */
  async cut(): Promise<void> {
    const closed = new Promise((resolve) => this.server!.close(resolve));
    for (const { client, upstream } of this.links) {
      client.destroy();
      upstream?.destroy();
    }
    await closed;
  }
}
