/**
 * The `outpost` command line. Each subcommand lives in its own module and exports
 * a `registerX(program)` function; add new ones to COMMANDS below.
 *
 * Every error is one line on stderr, `outpost: <what happened>; <what to do>`
 * (configuration errors name the element, e.g. `Listener/Port: …`), with the
 * exit codes listed in errors.ts, docs/CLI.md and `outpost --help`. Set
 * OUTPOST_DEBUG=1 to see stack traces.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError } from '../agent/config.js';
import { AGENT_VERSION } from '../agent/version.js';
import { registerCat } from './cat.js';
import { registerCert } from './cert.js';
import { registerCompletion } from './completion.js';
import { CONNECTION_HELP } from './connection.js';
import { EXIT, EXIT_CODES_HELP, reportError } from './errors.js';
import { registerExec } from './exec.js';
import { registerExt } from './ext.js';
import { registerGet } from './get.js';
import { registerHosts } from './hosts-command.js';
import { registerAgents, registerHub } from './hub.js';
import { registerInfo } from './info.js';
import { registerInit } from './init.js';
import { registerJob } from './job.js';
import { registerKeygen } from './keygen.js';
import { registerLs } from './ls.js';
import { registerMkdir } from './mkdir.js';
import { registerPing } from './ping.js';
import { registerProcesses } from './processes.js';
import { registerPut } from './put.js';
import { registerReload } from './reload.js';
import { registerRm } from './rm.js';
import { registerServe } from './serve.js';
import { registerService } from './service.js';
import { registerStart } from './start.js';
import { registerStatus } from './status.js';
import { registerSync } from './sync.js';
import { registerVersion } from './version.js';

const COMMANDS: ReadonlyArray<(program: Command) => void> = [
  // the agent
  registerServe,
  registerStart,
  registerInit,
  registerKeygen,
  registerCert,
  // outbound agents
  registerHub,
  registerAgents,
  registerStatus,
  registerReload,
  registerService,
  // talking to agents
  registerPing,
  registerInfo,
  registerExec,
  registerLs,
  registerCat,
  registerPut,
  registerGet,
  registerRm,
  registerMkdir,
  registerSync,
  // extensions and jobs
  registerExt,
  registerJob,
  registerProcesses,
  // the client's own
  registerHosts,
  registerVersion,
  registerCompletion,
];

export function buildProgram(): Command {
  const program = new Command('outpost')
    .description(
      'Outpost: an agent for the Inedo Agent network protocol v1, and the commands to drive agents',
    )
    .version(AGENT_VERSION, '-V, --version', 'print the version')
    // Commander's own errors (unknown option, missing argument) become one line too; see below.
    .configureOutput({ outputError: () => {} })
    .exitOverride();
  program.addHelpText(
    'after',
    `
Examples:
  npm start                                   # a local agent; prints OUTPOST_KEY=…
  export OUTPOST_KEY=…
  outpost ping 127.0.0.1
  outpost exec 127.0.0.1 -- uname -a
  outpost put ./dist 127.0.0.1:/srv/app
  outpost sync ./dist 127.0.0.1:/srv/app --delete
  outpost ext push ext.upack 127.0.0.1 && outpost job 127.0.0.1 example.hello
  outpost exec --hosts hosts.txt -- uptime
  outpost hosts add web01 10.0.0.5 --key-file ~/.config/outpost/fleet.key
  outpost exec @web -- uptime                 # a group of ~/.config/outpost/hosts.toml
${CONNECTION_HELP}
${EXIT_CODES_HELP}

Run 'outpost COMMAND --help' for a command's options and examples; docs/CLI.md has the details.`,
  );
  for (const register of COMMANDS) register(program);
  return program;
}

/** The subcommand named on the command line, for "see 'outpost X --help'". */
function subcommandName(program: Command, argv: string[]): string | undefined {
  const names = new Set(program.commands.map((c) => c.name()));
  return argv.slice(2).find((a) => names.has(a));
}

/** Prints a failure as one line and returns the exit code. */
export function report(err: unknown, program: Command): number {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.OK;
    if (err.code === 'commander.help') return EXIT.USAGE; // `outpost` alone: help on stderr
    const sub = subcommandName(program, process.argv);
    const message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    const hint =
      sub === 'exec' && err.code === 'commander.unknownOption'
        ? "; if it is the remote command's, put the command after --: outpost exec HOST -- CMD ARGS…"
        : `; see 'outpost ${sub ? `${sub} ` : ''}--help'`;
    process.stderr.write(`outpost: ${message}${hint}\n`);
    return EXIT.USAGE;
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`outpost: ${err.message}\n`);
    if (process.env.OUTPOST_DEBUG && err.stack) process.stderr.write(`${err.stack}\n`);
    return EXIT.USAGE;
  }
  return reportError(err);
}
