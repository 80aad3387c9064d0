/**
 * `outpost serve [--config PATH]`: run the agent in the foreground.
 *
 * Logs are JSON lines (pino) on stdout (readable lines on a terminal), and
 * in LogFile when configured. Beside the listener it runs the control socket
 * (`outpost status`, `outpost reload`), the metrics endpoint and the audit
 * log when configured (docs/OPERATIONS.md).
 * SIGHUP: reload the config (as `outpost reload`).
 * SIGTERM / SIGINT: stop accepting, close connections, exit 0 (within 5 s;
 * a second signal exits at once).
 */
import type { Command } from 'commander';
import { AuditLog } from '../agent/audit.js';
import { type ControlServer, reloadFromFile, startControlSocket } from '../agent/control.js';
import { HostRouter } from '../agent/host-router.js';
import {
  type AgentConfig,
  type AgentHandle,
  ConfigError,
  createLogger,
  describeConfig,
  findConfigFile,
  isLoopbackAddress,
  type Logger,
  loadConfig,
  startAgent,
} from '../agent/index.js';
import { combineObservers } from '../agent/observe.js';

/** Exit no later than this after SIGTERM/SIGINT, even if a connection lingers. */
const SHUTDOWN_DEADLINE_MS = 4500;

export interface ServeOptions {
  /** --config; when absent the default locations are searched. */
  configPath?: string | undefined;
  /** Called once listening (e.g. `outpost start` prints how to connect). */
  onListening?: (agent: AgentHandle, config: AgentConfig, logger: Logger) => void;
}

/** Loads the config, starts the agent, installs signal handlers. Resolves once listening. */
export async function serve(options: ServeOptions = {}): Promise<AgentHandle> {
  const path = await findConfigFile(options.configPath);
  const config = await loadConfig(path);
  const ops = config.operations;
  const logger = createLogger({
    logFile: config.logFile,
    logFileMaxSize: ops.logFileMaxSize,
    logFileCount: ops.logFileCount,
    level: ops.logLevel,
  });
  for (const w of config.warnings) logger.warn({ config: path }, w);
  const l = config.listener;
  if (l.enabled && l.encryption.mode === 'none' && !isLoopbackAddress(l.address))
    process.stderr.write(
      `\nWARNING: encryption mode none on ${l.address}: anyone who can reach this port can read and write files ` +
        'and run commands on this machine, and traffic is not encrypted. Use mode aes or ssl (`outpost init`).\n\n',
    );
  let agentRef: AgentHandle | null = null;
  let router: HostRouter | null = null;
  // prom-client only when a metrics endpoint is configured (it is ~10 MiB of an idle agent).
  const metricsModule = ops.metrics ? await import('../agent/metrics.js') : null;
  const metrics = metricsModule
    ? new metricsModule.AgentMetrics({
        sessions: () => agentRef?.sessions.size ?? 0,
        hostProcesses: () => router?.hostCount ?? 0,
        replayHits: () => agentRef?.replayHits ?? 0,
      })
    : null;
  let audit: AuditLog | null = null;
  if (ops.auditLogFile) {
    try {
      audit = new AuditLog(ops.auditLogFile);
    } catch (err) {
      throw new ConfigError('AuditLogFile', (err as Error).message.replace(/^AuditLogFile: /, ''));
    }
  }
  const observer = combineObservers([metrics, audit]);
  router = new HostRouter({ config, logger, observer });
  const agent = await startAgent(config, logger, { router, observer });
  agentRef = agent;
  const extras: { close(): Promise<void> }[] = [];
  let control: ControlServer | null = null;
  try {
    try {
      control = await startControlSocket(ops.controlSocket, agent, logger);
      extras.push(control);
    } catch (err) {
      const why = `${(err as Error).message}; set <ControlSocket> to a path in a directory of the agent's own`;
      // An explicit ControlSocket must work; the default one may be impossible (a read-only config directory).
      if (ops.controlSocketExplicit) throw new ConfigError('ControlSocket', why);
      logger.warn(
        { controlSocket: ops.controlSocket },
        `no control socket (outpost status and reload will not reach this agent; SIGHUP still reloads): ${why}`,
      );
    }
    if (metricsModule && metrics && ops.metrics) {
      try {
        const m = await metricsModule.serveMetrics(metrics, ops.metrics);
        extras.push(m);
        logger.info({ address: ops.metrics.host, port: m.port }, 'metrics at /metrics');
      } catch (err) {
        throw new ConfigError('Metrics/@Address', (err as Error).message.replace(/^Metrics\/@Address: /, ''));
      }
    }
  } catch (err) {
    await Promise.all(extras.map((e) => e.close()));
    await agent.close();
    throw err;
  }
  logger.info(
    {
      ...describeConfig(config),
      address: agent.address,
      port: agent.port,
      controlSocket: control?.path ?? null,
    },
    l.enabled ? 'listening' : 'started (outbound only: dialing Connections/Server)',
  );
  options.onListening?.(agent, config, logger);

  let reloading: Promise<unknown> = Promise.resolve();
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'reloading the config');
    reloading = reloading.then(() => reloadFromFile(agent, logger));
  });
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(0);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.warn('connections did not close in time; exiting anyway');
      process.exit(0);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    Promise.all([agent.close(), ...extras.map((e) => e.close())]).then(
      () => {
        audit?.close();
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        process.exit(0);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return agent;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the agent: listen for orchestrators (logs are JSON lines on stdout)')
    .option('--config <path>', 'configuration file (default: ./InedoAgent.config, then the system location)')
    .action(async (opts: { config?: string }) => {
      await serve({ configPath: opts.config });
    });
}
