/**
 * Interop: an independent client of the contract, written in Python from
 * PROTOCOL.md alone (test/interop/contract_client.py imports nothing of
 * ours), runs its checks against the real agent (`outpost serve` from
 * source) in all three modes: handshake, meta, files, guards, processes,
 * sessions and resume, and in AES mode replays and wrong keys.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type AgentProcess, makeTestCertificate, startAgentProcess, tempDir } from '../helpers/agent.js';

const SCRIPT = fileURLToPath(new URL('./contract_client.py', import.meta.url));

function runPython(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('python3', [SCRIPT, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, out: `${stdout}${stderr}` });
    });
  });
}

describe('a Python client written from the contract alone', () => {
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  for (const mode of ['none', 'ssl', 'aes'] as const) {
    test(`passes every check in mode ${mode}`, async () => {
      const root = await tempDir('outpost-interop-');
      dirs.push(root);
      const work = join(root, 'work');
      await mkdir(work);
      const agent = await startAgentProcess({ mode, allowedRoots: [root] });
      agents.push(agent);
      const args = [agent.host, String(agent.port), mode, '--dir', work];
      if (mode === 'aes') args.push('--key', agent.key!.toString('hex'));
      if (mode === 'ssl') args.push('--ca', agent.certificate!.certFile);
      const { code, out } = await runPython(args);
      assert.match(out, /^\d+ passed, 0 failed$/m, out);
      assert.equal(code, 0, out);
      // Every check ran (a crash part-way would print fewer).
      const passed = Number(/^(\d+) passed/m.exec(out)?.[1]);
      assert.ok(passed >= (mode === 'aes' ? 18 : 16), out);
    });
  }

  test('outbound (§8): the Python side listens, the real agent dials it, is driven, and dials again after the drop', async () => {
    const root = await tempDir('outpost-interop-out-');
    dirs.push(root);
    const work = join(root, 'work');
    await mkdir(work);
    const cert = await makeTestCertificate(root, 'orchestrator');
    const agentKey = 'interop-agent-key';
    const py = spawn('python3', [
      SCRIPT,
      '127.0.0.1',
      '0',
      'outbound',
      '--cert',
      cert.certFile,
      '--keyfile',
      cert.keyFile,
      '--agent-key',
      agentKey,
      '--dir',
      work,
    ]);
    let out = '';
    py.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    py.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => py.once('close', (code) => r(code)));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`python did not listen: ${out}`)), 20_000);
      const onData = () => {
        const m = /^listening (\d+)$/m.exec(out);
        if (!m) return;
        clearTimeout(timer);
        py.stdout.off('data', onData);
        resolve(Number(m[1]));
      };
      py.stdout.on('data', onData);
    });
    // The agent also listens (mode none, loopback): both at once, as §8 allows.
    const agent = await startAgentProcess({
      mode: 'none',
      allowedRoots: [root],
      servers: [{ host: `127.0.0.1:${port}`, key: agentKey, thumbprint: cert.thumbprint }],
    });
    agents.push(agent);
    const code = await exited;
    assert.match(out, /^\d+ passed, 0 failed$/m, out);
    assert.equal(code, 0, out);
    assert.ok(Number(/^(\d+) passed/m.exec(out)?.[1]) >= 7, out);
  });
});
