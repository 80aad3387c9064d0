/** `outpost version [--json]`: the CLI's version, the protocol version and the Node.js that runs it. */
import type { Command } from 'commander';
import { AGENT_VERSION } from '../agent/version.js';
import { PROTOCOL_VERSION } from '../protocol/index.js';

export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('print the version of outpost, of the protocol and of Node.js')
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nExamples:\n  outpost version\n  outpost version --json | jq -r .version')
    .action((flags: { json?: boolean }) => {
      const v = { version: AGENT_VERSION, protocolVersion: PROTOCOL_VERSION, node: process.version };
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(v)}\n`
          : `outpost ${v.version} (protocol ${v.protocolVersion}, node ${v.node})\n`,
      );
    });
}
