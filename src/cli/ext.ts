/**
 * `outpost ext push FILE.upack… HOST`: ships extension packages to an agent
 * (UpdateAgent, stored under ExtensionCachePath/<this address>/<product>/
 * extensions) — or to every host of an `@group` / `--hosts FILE`, through
 * the one fan-out runner — then asks it whether it runs jobs at all: an agent of
 * another implementation stores the files but says ExecuteJob is
 * Unsupported, and the command says so (exit 3). The next job of the
 * session's product sees the new version.
 */
import { open, readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Command } from 'commander';
import { isRemoteError } from '../client/index.js';
import { AGENT_TYPE_NAMES } from '../protocol/index.js';
import { addConnectionOptions } from './connection.js';
import { CliError, clientAction, EXIT, UsageError } from './errors.js';
import { runOnHosts, type TargetFlags } from './fanout.js';
import { formatBytes } from './format.js';

interface ExtFlags extends TargetFlags {
  quiet?: boolean;
}

/** Refuses what is plainly not a .upack before anything is sent. */
async function checkPackage(file: string): Promise<void> {
  if (!file.toLowerCase().endsWith('.upack'))
    throw new UsageError(
      `${file}: an extension package is a .upack file (a zip with upack.json and package/)`,
    );
  const fh = await open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    await fh.read(head, 0, 2, 0);
    if (head.toString('latin1') !== 'PK')
      throw new UsageError(`${file} is not a zip archive; pack it with examples/extension/pack.mjs`);
  } finally {
    await fh.close();
  }
}

export function registerExt(program: Command): void {
  const ext = program.command('ext').description('extension packages (.upack) on agents');
  ext.addHelpText(
    'after',
    `
Examples:
  outpost ext push ext.upack web01             # store it (UpdateAgent) for this client's address
  outpost job web01 example.hello              # then run one of its jobs

docs/EXTENSIONS.md describes packages and the job API.`,
  );
  const push = ext
    .command('push')
    .description("ship .upack extension packages to an agent (UpdateAgent), for this client's address")
    .argument('<paths...>', 'FILE.upack… then HOST[:PORT], an alias or @group (may be left out with --hosts)')
    .option('-q, --quiet', 'no summary line');
  addConnectionOptions(push);
  push.addHelpText(
    'after',
    `
Examples:
  node examples/extension/pack.mjs ext.upack && outpost ext push ext.upack web01
  outpost ext push a.upack b.upack web01 --agent-type otter      # for the Otter product's jobs
  outpost ext push ext.upack @web --parallel 8                   # every host of a group
  outpost ext push ext.upack --hosts fleet.txt --json            # every host listed in a file

Exit code: 0 stored (and the agent runs jobs); 1 bad usage or not a .upack; 2 connection failed;
3 the agent refused the files, or stored them but does not run jobs (ExecuteJob Unsupported);
4 on several hosts: any host failed.`,
  );
  push.action(
    clientAction(async (paths: string[], flags: ExtFlags) => {
      // With --hosts the host argument may be left out: then every path is a package.
      const hostGiven = !(flags.hosts !== undefined && paths.at(-1)?.toLowerCase().endsWith('.upack'));
      const files = hostGiven ? paths.slice(0, -1) : paths;
      if (files.length === 0 || (hostGiven && paths.length < 2))
        throw new UsageError(
          'ext push needs FILE.upack… and HOST (an alias, @group, or --hosts FILE): outpost ext push ext.upack web01',
        );
      for (const f of files) await checkPackage(f);
      // Read once, shipped to every host.
      const extensions = await Promise.all(
        files.map(async (f) => ({ name: basename(f), data: await readFile(f) })),
      );
      const bytes = extensions.reduce((n, e) => n + e.data.length, 0);
      // One runner for one host or many (@group, --hosts, --parallel, --fail-fast, --json; exit 4).
      return runOnHosts({
        names: hostGiven ? [paths.at(-1)!] : [],
        flags,
        command: 'ext push',
        run: async (client, task) => {
          await client.updateAgent({ extensions }, { signal: task.signal });
          // Does it run jobs? An empty extract payload is InvalidArgument where it does.
          try {
            await client.runJob('outpost.extract', '{}', { signal: task.signal }).result;
          } catch (err) {
            if (isRemoteError(err, 'Unsupported'))
              throw new CliError(
                `${task.label} stored the package(s) but does not run jobs (ExecuteJob is Unsupported there); extensions need an Outpost agent`,
                EXIT.REMOTE,
              );
            if (!isRemoteError(err, 'InvalidArgument')) throw err;
          }
          const product = AGENT_TYPE_NAMES[client.agentType];
          const result = `${extensions.length} package(s), ${formatBytes(bytes)} stored for ${product}`;
          if (!flags.quiet && !task.fanout && !task.json)
            process.stderr.write(
              `ext push: ${extensions.length} package(s), ${formatBytes(bytes)} stored on ${task.label} for ${product}\n`,
            );
          return {
            ok: true,
            result,
            json: { host: task.label, product, packages: extensions.map((e) => e.name), bytes },
          };
        },
      });
    }),
  );
}
