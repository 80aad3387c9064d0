/**
 * `outpost info HOST [--json]`: the agent's version, protocol version, host
 * name, OS, architecture, processors, path separator, message limit, and
 * the product's root path.
 */
import type { Command } from 'commander';
import { AGENT_TYPE_NAMES, Platform } from '../protocol/index.js';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connectionSettings,
  parseTarget,
  withClient,
} from './connection.js';
import { clientAction } from './errors.js';
import { formatBytes, table } from './format.js';

const PLATFORMS: Record<number, string> = Object.fromEntries(
  Object.entries(Platform).map(([name, code]) => [code, name]),
);

export function registerInfo(program: Command): void {
  const cmd = program
    .command('info')
    .description("show an agent's version, host name, OS, architecture and limits")
    .argument('<host>', 'HOST[:PORT] of the agent')
    .option('--json', 'print one JSON object');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost info 10.0.0.5
  outpost info web01 --json | jq -r .agentVersion

JSON fields: host, port, agentVersion, protocolVersion, protocol ("1.0"), hostname, platform, osDescription,
architecture, processorCount, directorySeparator, maxMessageSize, agentType, rootPath, sessionId.`,
  );
  cmd.action(
    clientAction(async (host: string, flags: ConnectionFlags & { json?: boolean }) => {
      const settings = await connectionSettings(flags);
      const target = parseTarget(host);
      const r = await withClient(target, settings, async (client) => {
        const signal = AbortSignal.timeout(settings.timeoutMs);
        const info = await client.info({ signal });
        const rootPath = await client
          .rootPath(undefined, { signal })
          .catch((err: Error) => `(${err.message})`);
        return { info, rootPath, agentType: AGENT_TYPE_NAMES[client.agentType], sessionId: client.sessionId };
      });
      const { info } = r;
      const version = `${info.protocolVersion >>> 16}.${info.protocolVersion & 0xffff}`;
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify(
            {
              host: target.host,
              port: target.port,
              ...info,
              platform: PLATFORMS[info.platform] ?? String(info.platform),
              protocol: version,
              agentType: r.agentType,
              rootPath: r.rootPath,
              sessionId: r.sessionId,
            },
            null,
            2,
          )}\n`,
        );
        return 0;
      }
      const rows = [
        ['agent', `${target.label} (mode ${settings.mode})`],
        ['version', info.agentVersion],
        ['protocol', `${version} (${info.protocolVersion})`],
        ['hostname', info.hostname],
        ['platform', PLATFORMS[info.platform] ?? String(info.platform)],
        ['os', info.osDescription],
        ['architecture', info.architecture],
        ['processors', String(info.processorCount)],
        ['separator', info.directorySeparator],
        ['max message', `${formatBytes(info.maxMessageSize)} (${info.maxMessageSize} bytes)`],
        [`root (${r.agentType})`, r.rootPath],
      ];
      process.stdout.write(`${table(rows.map(([k, v]) => [`${k}:`, v ?? '']))}\n`);
      return 0;
    }),
  );
}
