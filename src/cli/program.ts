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
import { ConfigError } from '../agent/config-error.js';
import { AGENT_VERSION } from '../agent/version.js';
import { CONNECTION_HELP, EXIT, EXIT_CODES_HELP } from './usage.js';

type Register = (program: Command) => void;

/**
 * Every command: its name on the command line and how to load the module
 * that registers it. A command line that names one loads only that module
 * (start-up is most of a short command's time, and the agent's modules, the
 * TLS certificate tools and tar are not every command's); help, completion
 * and anything unknown load them all, in this order.
 */
const COMMANDS: ReadonlyArray<{ name: string; load: () => Promise<Register> }> = [
  // the agent
  { name: 'serve', load: async () => (await import('./serve.js')).registerServe },
  { name: 'start', load: async () => (await import('./start.js')).registerStart },
  { name: 'init', load: async () => (await import('./init.js')).registerInit },
  { name: 'keygen', load: async () => (await import('./keygen.js')).registerKeygen },
  { name: 'cert', load: async () => (await import('./cert.js')).registerCert },
  // outbound agents
  { name: 'hub', load: async () => (await import('./hub.js')).registerHub },
  { name: 'agents', load: async () => (await import('./hub.js')).registerAgents },
  { name: 'status', load: async () => (await import('./status.js')).registerStatus },
  { name: 'reload', load: async () => (await import('./reload.js')).registerReload },
  { name: 'service', load: async () => (await import('./service.js')).registerService },
  // talking to agents
  { name: 'ping', load: async () => (await import('./ping.js')).registerPing },
  { name: 'info', load: async () => (await import('./info.js')).registerInfo },
  { name: 'exec', load: async () => (await import('./exec.js')).registerExec },
  { name: 'ls', load: async () => (await import('./ls.js')).registerLs },
  { name: 'cat', load: async () => (await import('./cat.js')).registerCat },
  { name: 'put', load: async () => (await import('./put.js')).registerPut },
  { name: 'get', load: async () => (await import('./get.js')).registerGet },
  { name: 'rm', load: async () => (await import('./rm.js')).registerRm },
  { name: 'mkdir', load: async () => (await import('./mkdir.js')).registerMkdir },
  { name: 'sync', load: async () => (await import('./sync.js')).registerSync },
  // extensions and jobs
  { name: 'ext', load: async () => (await import('./ext.js')).registerExt },
  { name: 'job', load: async () => (await import('./job.js')).registerJob },
  // ps, kill and attach share one module
  { name: 'ps', load: async () => (await import('./processes.js')).registerProcesses },
  // the client's own
  { name: 'hosts', load: async () => (await import('./hosts-command.js')).registerHosts },
  { name: 'version', load: async () => (await import('./version.js')).registerVersion },
  { name: 'completion', load: async () => (await import('./completion.js')).registerCompletion },
];

/** Command names registered by another entry's module. */
const ALSO: Readonly<Record<string, string>> = { kill: 'ps', attach: 'ps' };

/** The entries a command line needs: the one it names, or all of them. */
function entriesFor(argv: readonly string[] | undefined): typeof COMMANDS {
  const first = argv?.[2];
  if (first === '-V' || first === '--version') return [];
  const name = first === undefined ? undefined : (ALSO[first] ?? first);
  // completion prints every command; help and unknown names need them all too.
  const one = name === 'completion' ? undefined : COMMANDS.find((c) => c.name === name);
  return one ? [one] : COMMANDS;
}

/**
 * The program with the commands `argv` needs (process.argv form: node,
 * script, command…); without `argv`, every command.
 */
export async function buildProgram(argv?: readonly string[]): Promise<Command> {
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
  const registers = await Promise.all(entriesFor(argv).map((c) => c.load()));
  for (const register of registers) register(program);
  return program;
}

/** The subcommand named on the command line, for "see 'outpost X --help'". */
function subcommandName(program: Command, argv: string[]): string | undefined {
  const names = new Set(program.commands.map((c) => c.name()));
  return argv.slice(2).find((a) => names.has(a));
}

/** Prints a failure as one line and returns the exit code. */
export async function report(err: unknown, program: Command): Promise<number> {
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
  // Loaded here: describing an SDK error needs the SDK's classes, which `serve` never loads otherwise.
  const { reportError } = await import('./errors.js');
  return reportError(err);
}
