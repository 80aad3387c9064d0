/**
 * A new client that resumes a session whose first client died, and follows
 * a process that client had started. The SDK follows only processes it
 * started itself, so this one speaks through the SDK's own lower layers
 * (dist/transport and dist/protocol): handshake with the session ID, one
 * Ping (a resumed connection gets the buffered events only after its first
 * valid frame, §7), then every Stdout of the token until its Exited.
 */
const transport = await import(new URL('../../../dist/transport/index.js', import.meta.url).href);
const protocol = await import(new URL('../../../dist/protocol/index.js', import.meta.url).href);

/**
 * Resumes `sessionId` and collects `token`'s output. Resolves
 * { resumed, stdout: Buffer, exit: { exitCode, signal } | null, otherTokens, errors }
 * once Exited arrives or `timeoutMs` passes.
 */
export async function resumeAndFollow(connectOptions, sessionId, token, timeoutMs) {
  const { host, port, mode, key } = connectOptions;
  const ac = await transport.connectToAgent({ host, port, mode, key, sessionId, timeoutMs: 10_000 });
  const conn = ac.connection;
  const chunks = [];
  const errors = [];
  let otherTokens = 0;
  let exit = null;
  const done = new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    conn.on('message', (m) => {
      let r;
      try {
        r = protocol.decodeReply(m);
      } catch (err) {
        errors.push(String(err));
        return;
      }
      if (r.kind !== 'event' && r.kind !== 'error') return;
      if (r.token !== token) {
        otherTokens++;
        return;
      }
      if (r.kind === 'error') {
        errors.push(`${r.errorKind}: ${r.message}`);
        clearTimeout(timer);
        resolve();
        return;
      }
      if (r.event === protocol.EventCode.Stdout)
        chunks.push(Buffer.from(protocol.decodeEventBody('Stdout', r.body).data));
      if (r.event === protocol.EventCode.Exited) {
        exit = protocol.decodeEventBody('Exited', r.body);
        clearTimeout(timer);
        resolve();
      }
    });
    conn.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  conn.send(protocol.encodeMetaRequest('Ping', { token: 1 }));
  await done;
  conn.destroy();
  return { resumed: ac.sessionId === sessionId, stdout: Buffer.concat(chunks), exit, otherTokens, errors };
}

/**
 * Checks numbered output (`line 1` … `line N`, one per line) for order and
 * duplicates. Returns { numbers, inOrder, duplicates, first, last, malformed }.
 */
export function readLines(text) {
  const numbers = [];
  let malformed = 0;
  for (const l of text.split('\n')) {
    if (l === '') continue;
    const m = /^line (\d+)$/.exec(l);
    if (m) numbers.push(Number(m[1]));
    else malformed++;
  }
  let inOrder = true;
  let duplicates = 0;
  const seen = new Set();
  for (let i = 0; i < numbers.length; i++) {
    if (seen.has(numbers[i])) duplicates++;
    seen.add(numbers[i]);
    if (i > 0 && numbers[i] !== numbers[i - 1] + 1) inOrder = false;
  }
  return { numbers, inOrder, duplicates, first: numbers[0] ?? 0, last: numbers.at(-1) ?? 0, malformed };
}
