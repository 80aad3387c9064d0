/**
 * `outpost info HOST [--json]`: what the agent reports in GetAgentInfo
 * (product, version, protocol version, host name, platform, OS release,
 * architecture, process ID, uptime, agent types served, encryption mode),
 * the version from the handshake (a.b.c.d), and the product's root path.
 */
import type { Command } from 'commander';
import { AGENT_TYPE_NAMES, type AgentType, MODE_NAMES, type Mode } from '../protocol/index.js';
import {
  addConnectionOptions,
  type ConnectionFlags,
  connectionSettings,
  parseTarget,
  withClient,
} from './connection.js';
import { clientAction } from './errors.js';
import { formatDuration, table } from './format.js';

const typeName = (t: number) => AGENT_TYPE_NAMES[t as AgentType] ?? `type ${t}`;
const modeName = (m: number) => MODE_NAMES[m as Mode] ?? `mode ${m}`;

export function registerInfo(program: Command): void {
  const cmd = program
    .command('info')
    .description("show an agent's product, version, host name, OS, architecture and agent types")
    .argument('<host>', 'HOST[:PORT] of the agent')
    .option('--json', 'print one JSON object');
  addConnectionOptions(cmd);
  cmd.addHelpText(
    'after',
    `
Examples:
  outpost info 10.0.0.5
  outpost info web01 --json | jq -r .handshakeVersion

JSON fields: host, port, product, version, protocolVersion, hostName, platform, osRelease, arch, processId,
uptimeMs, supportedAgentTypes (names), encryptionMode (none/ssl/aes), handshakeVersion ("a.b.c.d"),
agentType, rootPath, sessionId.`,
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
        return {
          info,
          rootPath,
          handshakeVersion: client.agentVersion,
          agentType: AGENT_TYPE_NAMES[client.agentType],
          sessionId: client.sessionId,
        };
      });
      const { info } = r;
      const types = [...info.supportedAgentTypes].map(typeName);
      if (flags.json) {
        process.stdout.write(
          `${JSON.stringify(
            {
              host: target.host,
              port: target.port,
              ...info,
              supportedAgentTypes: types,
              encryptionMode: modeName(info.encryptionMode),
              handshakeVersion: r.handshakeVersion,
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
        ['product', info.product],
        ['version', `${info.version} (handshake ${r.handshakeVersion})`],
        ['protocol', String(info.protocolVersion)],
        ['hostname', info.hostName],
        ['platform', info.platform],
        ['os release', info.osRelease],
        ['architecture', info.arch],
        ['process', String(info.processId)],
        ['uptime', formatDuration(info.uptimeMs)],
        ['agent types', types.join(', ')],
        ['encryption', modeName(info.encryptionMode)],
        [`root (${r.agentType})`, r.rootPath],
      ];
      process.stdout.write(`${table(rows.map(([k, v]) => [`${k}:`, v ?? '']))}\n`);
      return 0;
    }),
  );
}
