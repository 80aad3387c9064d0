/**
 * `outpost info HOST [--json]`: what the agent reports in GetAgentInfo
 * (product, version, protocol version, host name, platform, OS release,
 * architecture, process ID, uptime, agent types served, encryption mode),
 * the version from the handshake (a.b.c.d), and the product's root path.
 */
import type { Command } from 'commander';
import { AGENT_TYPE_NAMES, type AgentType, MODE_NAMES, type Mode } from '../protocol/index.js';
import { addConnectionOptions } from './connection.js';
import { clientAction } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { formatDuration, table } from './format.js';

const typeName = (t: number) => AGENT_TYPE_NAMES[t as AgentType] ?? `type ${t}`;
const modeName = (m: number) => MODE_NAMES[m as Mode] ?? `mode ${m}`;

export function registerInfo(program: Command): void {
  const cmd = program
    .command('info')
    .description("show an agent's product, version, host name, OS, architecture and agent types")
    .argument('<host>', 'HOST[:PORT], alias or @group of the agent(s)');
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
    clientAction(async (host: string, flags: TargetFlags) =>
      runOnHosts({
        names: [host],
        flags,
        command: 'info',
        run: async (client, task) => {
          const signal = AbortSignal.any([task.signal, AbortSignal.timeout(task.settings.timeoutMs)]);
          const info = await client.info({ signal });
          const rootPath = await client
            .rootPath(undefined, { signal })
            .catch((err: Error) => `(${err.message})`);
          const agentType = AGENT_TYPE_NAMES[client.agentType];
          const types = [...info.supportedAgentTypes].map(typeName);
          const json = {
            host: task.target.target.host,
            port: task.target.target.port,
            ...info,
            supportedAgentTypes: types,
            encryptionMode: modeName(info.encryptionMode),
            handshakeVersion: client.agentVersion,
            agentType,
            rootPath,
            sessionId: client.sessionId,
          };
          const rows = [
            ['agent', `${task.label} (mode ${task.settings.mode})`],
            ['product', info.product],
            ['version', `${info.version} (handshake ${client.agentVersion})`],
            ['protocol', String(info.protocolVersion)],
            ['hostname', info.hostName],
            ['platform', info.platform],
            ['os release', info.osRelease],
            ['architecture', info.arch],
            ['process', String(info.processId)],
            ['uptime', formatDuration(info.uptimeMs)],
            ['agent types', types.join(', ')],
            ['encryption', modeName(info.encryptionMode)],
            [`root (${agentType})`, rootPath],
          ];
          await task.print(`${table(rows.map(([k, v]) => [`${k}:`, v ?? '']))}\n`);
          return { ok: true, result: `${info.product} ${info.version} on ${info.hostName}`, json };
        },
      }),
    ),
  );
}
