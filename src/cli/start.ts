/**
 * `outpost start` (what `npm start` runs): a ready-to-use local agent.
 *
 * On first run it creates ./.outpost/InedoAgent.config with a fresh AES-256
 * key, listening on 127.0.0.1 port 46336 (root paths under ./.outpost/state);
 * later runs reuse it. Then it serves and prints how to connect, key
 * included — delete ./.outpost to start over with a new key.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { CONFIG_FILE_NAME, renderConfigXml } from '../agent/index.js';
import { DEFAULT_PORT } from '../protocol/index.js';
import { formatThumbprint } from '../transport/index.js';
import { targetLabel } from './connection.js';
import { UsageError, writeFileAtomic } from './init.js';
import { serve } from './serve.js';

export const START_DIR = '.outpost';

export interface StartOptions {
  /** Directory holding the config (default ./.outpost). */
  dir?: string | undefined;
  /** Port written on first run (default 46336). */
  port?: string | undefined;
}

export async function start(options: StartOptions = {}): Promise<void> {
  const dir = resolve(options.dir ?? START_DIR);
  const configPath = join(dir, CONFIG_FILE_NAME);
  let created = false;
  try {
    await stat(configPath);
  } catch {
    const portText = options.port ?? String(DEFAULT_PORT);
    if (!/^\d+$/.test(portText) || Number(portText) > 65535)
      throw new UsageError(`--port: "${portText}" is not a port number`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const xml = renderConfigXml({
      mode: 'aes',
      keyHex: randomBytes(32).toString('hex'),
      address: '127.0.0.1',
      port: Number(portText),
    });
    try {
      await writeFileAtomic(configPath, xml, { mode: 0o600, overwrite: false });
      created = true;
    } catch (err) {
      if (!(err instanceof UsageError)) throw err; // created by a concurrent start: use it
    }
  }

  await serve({
    configPath,
    onListening: (agent, config) => {
      const enc = config.listener.encryption;
      const lines = [
        '',
        created ? `Created ${configPath}` : `Using ${configPath}`,
        ...(!created && options.port !== undefined && Number(options.port) !== agent.port
          ? [
              `Note: --port ${options.port} only applies when ${dir} is created; this config listens on port ${agent.port}. ` +
                `Edit Listener/Port in ${configPath}, or delete ${dir} to start over with --port ${options.port} (and a new key).`,
            ]
          : []),
        `Outpost agent listening on ${agent.address}:${agent.port}, encryption mode ${enc.mode}.`,
        'Connect an orchestrator with:',
        `  host: ${agent.address}`,
        `  port: ${agent.port}`,
        `  mode: ${enc.mode}`,
      ];
      if (enc.mode === 'aes' && enc.key) lines.push(`  key:  ${enc.key.reveal().toString('hex')}`);
      if (enc.mode === 'ssl' && enc.thumbprint)
        lines.push(`  thumbprint (SHA-256): ${formatThumbprint(enc.thumbprint)}`);
      if (enc.mode === 'aes' && enc.key) {
        const a = agent.address;
        const target = targetLabel(a === '0.0.0.0' ? '127.0.0.1' : a === '::' ? '::1' : a, agent.port);
        lines.push(
          'From another terminal (docs/CLI.md):',
          `  export OUTPOST_KEY=${enc.key.reveal().toString('hex')}`,
          `  npx outpost ping ${target}`,
          `  npx outpost exec ${target} -- uname -a`,
        );
      }
      lines.push(`Delete ${dir} to start over with a new key. Stop with Ctrl+C.`, '');
      process.stdout.write(`${lines.join('\n')}\n`);
    },
  });
}

export function registerStart(program: Command): void {
  program
    .command('start')
    .description(
      `run a local agent from ./${START_DIR} (created on first run with a new AES key) and print how to connect`,
    )
    .option('--port <port>', `port for a newly created config (default ${DEFAULT_PORT})`)
    .action(async (opts: { port?: string }) => {
      await start({ port: opts.port });
    });
}
