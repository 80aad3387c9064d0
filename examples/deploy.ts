/**
 * Deploy a build: upload it, run its installer, stream the installer's log,
 * check the exit code.
 *
 *   OUTPOST_HOST=10.0.0.5 OUTPOST_KEY=… BUILD_DIR=./build TARGET_DIR=/srv/app/releases/42 \
 *     node --import tsx examples/deploy.ts
 */
import { createInterface } from 'node:readline';
import { AgentClient } from '../src/index.js';

const env = process.env;
const agent = await AgentClient.connect({
  host: env.OUTPOST_HOST ?? '127.0.0.1',
  port: Number(env.OUTPOST_PORT ?? 46336),
  key: env.OUTPOST_KEY,
});
try {
  const target = env.TARGET_DIR ?? '/srv/app/releases/42';
  const { files, bytes } = await agent.upload(env.BUILD_DIR ?? './build', target); // SHA-256 verified, atomic per file
  console.log(`uploaded ${files} files (${bytes} bytes) to ${target}`);
  const installer = await agent.spawn('sh', ['install.sh'], { cwd: target });
  installer.stderr.pipe(process.stderr);
  for await (const line of createInterface({ input: installer.stdout })) console.log(`[install] ${line}`);
  const { code, signal } = await installer.exited;
  if (code !== 0) throw new Error(`the installer failed (exit code ${code}, signal ${signal})`);
  console.log('deployed');
} finally {
  await agent.close();
}
