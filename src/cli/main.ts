#!/usr/bin/env node
/** Entry point of the `outpost` command (see program.ts for the commands and exit codes). */
import { buildProgram, report } from './program.js';

// The reader of our output went away (`outpost ls … | head`): stop quietly, unless a
// command is handling it (exec ends the remote command first).
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' && stream.listenerCount('error') === 1) process.exit(0);
  });

const program = await buildProgram(process.argv);
program.parseAsync(process.argv).catch(async (err: unknown) => {
  process.exitCode = await report(err, program);
});
