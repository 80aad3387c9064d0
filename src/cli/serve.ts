/**
 * `outpost serve [--config PATH]`: run the agent in the foreground.
 *
 * Logs are JSON lines (pino) on stdout, and in LogFile when configured.
 * SIGTERM / SIGINT: stop accepting, close connections, exit 0 (within 5 s;
 * a second signal exits at once).
 */
import type { Command } from 'commander';
import { HostRouter } from '../agent/host-router.js';
import {
  type AgentConfig,
  type AgentHandle,
  createLogger,
  describeConfig,
  findConfigFile,
  isLoopbackAddress,
  type Logger,
  loadConfig,
  startAgent,
} from '../agent/index.js';

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
  const logger = createLogger({ logFile: config.logFile });
  for (const w of config.warnings) logger.warn({ config: path }, w);
  const l = config.listener;
  if (l.enabled && l.encryption.mode === 'none' && !isLoopbackAddress(l.address))
    process.stderr.write(
      `\nWARNING: encryption mode none on ${l.address}: anyone who can reach this port can read and write files ` +
        'and run commands on this machine, and traffic is not encrypted. Use mode aes or ssl (`outpost init`).\n\n',
    );
  const agent = await startAgent(config, logger, { router: new HostRouter({ config, logger }) });
  logger.info(
    { ...describeConfig(config), address: agent.address, port: agent.port },
    l.enabled ? 'listening' : 'started (outbound only: dialing Connections/Server)',
  );
  options.onListening?.(agent, config, logger);

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
    agent.close().then(
      () => {
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
