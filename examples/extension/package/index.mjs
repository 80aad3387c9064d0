// An Outpost extension: an ES module that exports `jobs`, job type → function.
// Each job runs in a worker thread of the agent's product host; see docs/EXTENSIONS.md.

/** example.hello {name, lines = 3} → "hello, NAME": logs `lines` lines first. */
async function hello(job) {
  const { name = 'world', lines = 3 } = JSON.parse(Buffer.from(job.payload).toString() || '{}');
  for (let i = 1; i <= lines; i++) job.log.info(`line ${i} of ${lines}`);
  job.log.debug(`root is ${job.root}`);
  return `hello, ${name}`;
}

/**
 * example.wait {stubborn = false, marker?} → "done": starts a child process
 * (`sleep 600`) and waits. Canceled, it stops at once — unless `stubborn`,
 * when it ignores the signal and is stopped by force after 5 s. Either way
 * the agent kills the child's whole process group. With `marker`, the
 * child's pid is written to that file (relative to the session root).
 */
async function wait(job) {
  const { stubborn = false, marker, seconds = 600 } = JSON.parse(Buffer.from(job.payload).toString() || '{}');
  const child = job.spawn('sleep', [String(seconds)]);
  await new Promise((resolve) => child.once('spawn', resolve));
  if (marker) {
    const { writeFile } = await import('node:fs/promises');
    await writeFile(job.resolve(marker), String(child.pid));
  }
  job.log.info(`started child ${child.pid}`);
  await new Promise((resolve, reject) => {
    child.once('exit', resolve);
    if (!stubborn) job.signal.addEventListener('abort', () => reject(job.signal.reason), { once: true });
  });
  if (stubborn) for (;;) await new Promise((r) => setTimeout(r, 1000));
  return 'done';
}

/**
 * example.count {n = 10, waitFor?} → "counted N": logs "waiting", waits
 * until the file `waitFor` (relative to the session root) exists, then logs
 * lines 1…n. Shows live logs; the tests drop the connection while it waits.
 */
async function count(job) {
  const { n = 10, waitFor } = JSON.parse(Buffer.from(job.payload).toString() || '{}');
  job.log.info('waiting');
  if (waitFor) {
    const { access } = await import('node:fs/promises');
    for (;;) {
      job.signal.throwIfAborted();
      if (
        await access(job.resolve(waitFor)).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  for (let i = 1; i <= n; i++) job.log.info(`count ${i}`);
  return `counted ${n}`;
}

/** example.fail → throws: the request ends with Error Internal and this message. */
function fail() {
  throw new Error('the example job failed on purpose');
}

/** example.crash → takes the whole host process down: Error HostCrashed. */
function crash() {
  process.kill(process.pid, 'SIGKILL');
}

/** example.deploy {archive, target} → uses the built-in outpost.extract from an extension. */
async function deploy(job) {
  const result = await job.run('outpost.extract', Buffer.from(job.payload));
  job.log.info(`deployed: ${Buffer.from(result).toString()}`);
  return result;
}

export const jobs = {
  'example.hello': hello,
  'example.wait': wait,
  'example.count': count,
  'example.fail': fail,
  'example.crash': crash,
  'example.deploy': deploy,
};
