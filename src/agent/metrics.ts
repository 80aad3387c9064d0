/**
 * Prometheus metrics (docs/OPERATIONS.md), off unless `<Metrics
 * Address="127.0.0.1:9346"/>` is set: prom-client with a Registry of this
 * agent's own (never the global one, so agents in one process do not mix),
 * served as text on `GET /metrics` by a plain HTTP server on that address.
 * No authentication: keep it on loopback or behind a firewall.
 *
 * Counting is done by the observer calls (observe.ts); the gauges and the
 * byte counters are read at scrape time from the live objects.
 *
 * Loaded only when Metrics is configured (serve.ts imports it dynamically):
 * prom-client adds ~10 MiB to an idle agent's RSS.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import {
  PRODUCT_NAMES,
  type ProductCommand,
  type ProductType,
  peekReply,
  ReplyCode,
} from '../protocol/index.js';
import type { MetricsAddress } from './config.js';
import { type AgentObserver, type ByteCounts, type RequestDone, replyOutcome } from './observe.js';

export interface MetricsSources {
  sessions(): number;
  hostProcesses(): number;
  replayHits(): number;
}

/** The agent's metrics; an AgentObserver that counts. */
export class AgentMetrics implements AgentObserver {
  readonly registry = new Registry();
  private readonly live = new Set<ByteCounts>();
  private closedIn = 0;
  private closedOut = 0;
  private readonly connections: Counter;
  private readonly rejectedTotal: Counter<'reason'>;
  private readonly sessionsStarted: Counter;
  private readonly hostCrashes: Counter<'product'>;
  private readonly durations: Histogram<'command'>;
  private readonly processesStarted: Counter;
  private readonly jobs: Counter<'outcome'>;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    const self = this;
    this.connections = new Counter({
      name: 'outpost_connections_total',
      help: 'TCP connections accepted (after AllowedAddresses)',
      registers,
    });
    new Gauge({
      name: 'outpost_connections_open',
      help: 'TCP connections open now',
      registers,
      collect() {
        this.set(self.live.size);
      },
    });
    this.rejectedTotal = new Counter({
      name: 'outpost_handshakes_rejected_total',
      help: 'Connections refused or closed before their first valid frame, by reason',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'outpost_sessions',
      help: 'Sessions open now (attached or detached)',
      registers,
      collect() {
        this.set(sources.sessions());
      },
    });
    this.sessionsStarted = new Counter({
      name: 'outpost_sessions_started_total',
      help: 'Sessions created',
      registers,
    });
    new Gauge({
      name: 'outpost_host_processes',
      help: 'Product host processes now, warm spare included',
      registers,
      collect() {
        this.set(sources.hostProcesses());
      },
    });
    this.hostCrashes = new Counter({
      name: 'outpost_host_crashes_total',
      help: 'Host processes that ended while a session used them',
      labelNames: ['product'],
      registers,
    });
    new Counter({
      name: 'outpost_received_bytes_total',
      help: 'Bytes received from clients (on the wire, encryption included)',
      registers,
      collect() {
        let n = self.closedIn;
        for (const s of self.live) n += s.bytesRead;
        this.reset();
        this.inc(n);
      },
    });
    new Counter({
      name: 'outpost_sent_bytes_total',
      help: 'Bytes sent to clients (on the wire, encryption included)',
      registers,
      collect() {
        let n = self.closedOut;
        for (const s of self.live) n += s.bytesWritten;
        this.reset();
        this.inc(n);
      },
    });
    this.durations = new Histogram({
      name: 'outpost_request_duration_seconds',
      help: 'Product requests from forwarding to the host until the final reply, by command',
      labelNames: ['command'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.processesStarted = new Counter({
      name: 'outpost_processes_started_total',
      help: 'Remote processes started (StartProcess answered with a pid)',
      registers,
    });
    this.jobs = new Counter({
      name: 'outpost_jobs_total',
      help: 'ExecuteJob requests ended, by outcome (ok or the error kind)',
      labelNames: ['outcome'],
      registers,
    });
    new Counter({
      name: 'outpost_replay_cache_hits_total',
      help: 'AES frames refused as replays',
      registers,
      collect() {
        this.reset();
        this.inc(sources.replayHits());
      },
    });
  }

  connectionOpened(socket: ByteCounts): void {
    this.connections.inc();
    this.live.add(socket);
  }

  connectionClosed(socket: ByteCounts): void {
    if (!this.live.delete(socket)) return;
    this.closedIn += socket.bytesRead;
    this.closedOut += socket.bytesWritten;
  }

  rejected(reason: string): void {
    this.rejectedTotal.inc({ reason });
  }

  sessionStarted(): void {
    this.sessionsStarted.inc();
  }

  hostEnded(agentType: ProductType, crashed: boolean): void {
    if (crashed) this.hostCrashes.inc({ product: PRODUCT_NAMES[agentType] });
  }

  request(_session: unknown, name: ProductCommand): RequestDone {
    const t0 = process.hrtime.bigint();
    return (reply) => {
      this.durations.observe({ command: name }, Number(process.hrtime.bigint() - t0) / 1e9);
      if (name === 'StartProcess') {
        if (reply !== null && peekReply(reply).command === ReplyCode.Response) this.processesStarted.inc();
      } else if (name === 'ExecuteJob') {
        this.jobs.inc({ outcome: replyOutcome(reply) });
      }
    };
  }

  /** The Prometheus text of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** Serves `GET /metrics` on `address`; resolves once listening (rejects with a message naming the setting). */
export async function serveMetrics(
  metrics: AgentMetrics,
  address: MetricsAddress,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    metrics.text().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `Metrics/@Address: cannot listen on ${address.host}:${address.port} (${err.code ?? err.message})` +
            (err.code === 'EADDRINUSE' ? '; another program uses that port: choose another' : ''),
        ),
      ),
    );
    server.listen({ host: address.host, port: address.port }, () => resolve());
  });
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : address.port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
