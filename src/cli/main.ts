#!/usr/bin/env node
/**
 * The `outpost` command. Each subcommand lives in its own module and exports
 * a `registerX(program)` function; add new ones to COMMANDS below.
 *
 * Errors thrown by a command are printed as `outpost: <message>` on stderr
 * (configuration errors name the element, e.g. `Listener/Port: …`) and the
 * exit code is 1. Set OUTPOST_DEBUG=1 to see stack traces.
 */
import { Command } from 'commander';
import { ConfigError } from '../agent/config.js';
import { AGENT_VERSION } from '../agent/version.js';
import { registerInit, UsageError } from './init.js';
import { registerServe } from './serve.js';
import { registerStart } from './start.js';

const COMMANDS: ReadonlyArray<(program: Command) => void> = [registerServe, registerInit, registerStart];

function buildProgram(): Command {
  const program = new Command('outpost')
    .description('Outpost: an agent for the Inedo Agent network protocol v1')
    .version(AGENT_VERSION, '-V, --version', 'print the version')
    .showHelpAfterError();
  for (const register of COMMANDS) register(program);
  return program;
}

function report(err: unknown): void {
  const known = err instanceof ConfigError || err instanceof UsageError;
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`outpost: ${known ? '' : 'error: '}${message}\n`);
  if (process.env.OUTPOST_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
}

buildProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    report(err);
    process.exitCode = 1;
  });
