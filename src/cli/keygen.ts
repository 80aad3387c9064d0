/**
 * `outpost keygen`: prints a fresh AES-256 key (64 hex digits, from the OS's
 * CSPRNG) on stdout, for Listener/Encryption/Key and for clients' --key /
 * OUTPOST_KEY.
 */
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';

/** A new AES-256 key as 64 lower-case hex digits. */
export function generateKeyHex(): string {
  return randomBytes(32).toString('hex');
}

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description('print a fresh AES-256 key (64 hex digits) for an agent config and its clients')
    .addHelpText(
      'after',
      `
Examples:
  outpost keygen                       # e.g. 3f9c…e21a
  export OUTPOST_KEY=$(outpost keygen) # then put the same key in the agent's
                                       # <Encryption Mode="aes"><Key>…</Key> (or use outpost init)`,
    )
    .action(() => {
      process.stdout.write(`${generateKeyHex()}\n`);
    });
}
