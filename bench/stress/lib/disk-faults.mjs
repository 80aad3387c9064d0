/**
 * Disk full: a 2 MiB tmpfs mounted inside the agent's AllowedRoots, and
 * writes bigger than it (WriteAllBytes, and an upload streamed through a
 * handle). Each must fail with a clear IOError, leave the old file as it
 * was and leave no temp file. Where mounting is not permitted (no root, a
 * container without CAP_SYS_ADMIN) the rows say so and are skipped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupOnce, run } from '../../lib/util.mjs';
import { agentUser, chownTree, connectTo, kindOf, MiB, row, settleWithin } from './agent-faults.mjs';

const sha = (b) => createHash('sha256').update(b).digest('hex');
const S = 'faults: disk full (2 MiB tmpfs)';

/** Mounts a small tmpfs at `dir`; returns null on success, else why it could not. */
async function mountSmall(dir) {
  const u = agentUser();
  const owner = u ? `,uid=${u.uid},gid=${u.gid}` : '';
  const r = await run('mount', ['-t', 'tmpfs', '-o', `size=2m,mode=0755${owner}`, 'tmpfs', dir], {
    check: false,
    timeoutMs: 10_000,
  }).catch((err) => ({ code: -1, stderr: String(err?.message ?? err) }));
  return r.code === 0 ? null : r.stderr.trim() || `mount exited with ${r.code}`;
}

async function umount(dir) {
  await run('umount', ['-l', dir], { check: false, timeoutMs: 10_000 }).catch(() => {});
}

/** One too-big write; returns { kind, message, oldIntact, temps }. */
async function tooBig(client, mp, target, old, write) {
  const r = await settleWithin(write(), 30_000);
  const names = readdirSync(mp).filter((n) => n !== 'old.bin' && n !== 'lost+found');
  return {
    kind: r.timedOut ? 'no answer' : r.ok ? 'success' : kindOf(r.error),
    message: r.ok || r.timedOut ? '' : String(r.error?.message ?? r.error),
    oldIntact: sha(readFileSync(target)) === sha(old),
    temps: names.length,
    serving: (await settleWithin(client.exists(target), 10_000)).ok === true,
  };
}

/** The disk-full rows. */
export async function diskFullRows(ctx, agent, dir) {
  const mp = join(agent.root, 'small-disk');
  mkdirSync(mp, { recursive: true });
  chownTree(mp);
  const why = await mountSmall(mp);
  if (why) {
    ctx.log(`faults: disk full skipped: ${why}`);
    return [
      row(
        S,
        'too-big write: IOError, old file intact',
        `skipped: mounting not permitted (${why})`,
        'IOError, old intact',
        null,
      ),
    ];
  }
  // Unmounted however the run ends: the temp dir cannot be removed over a mount.
  const unmount = cleanupOnce(() => umount(mp));
  const client = await connectTo(agent);
  try {
    const target = join(mp, 'old.bin');
    const old = randomBytes(256 * 1024);
    await client.writeFile(target, old);
    const big = randomBytes(3 * MiB);
    const local = join(dir, 'too-big.bin');
    writeFileSync(local, big);
    ctx.log('faults: disk full: WriteAllBytes and a streamed upload of 3 MiB onto 2 MiB');
    const cases = [
      ['WriteAllBytes 3 MiB', await tooBig(client, mp, target, old, () => client.writeFile(target, big))],
      [
        'upload 3 MiB (handle, verified)',
        await tooBig(client, mp, target, old, () => client.upload(local, target, { verify: true })),
      ],
    ];
    const rows = [];
    for (const [what, c] of cases) {
      const clear = c.kind === 'IOError' && /space|ENOSPC|full/i.test(c.message);
      rows.push(
        row(
          S,
          `${what}: clear IOError`,
          c.message ? c.message.replaceAll(mp, '…').slice(0, 120) : c.kind,
          'IOError naming the lack of space',
          clear,
        ),
        row(
          S,
          `${what}: old file intact, no temp file`,
          `${c.oldIntact ? 'intact' : 'CHANGED'}, ${c.temps} temp`,
          'intact, 0 temp',
          c.oldIntact && c.temps === 0,
        ),
        row(S, `${what}: connection keeps serving`, c.serving ? 'yes' : 'no', 'yes', c.serving),
      );
    }
    return rows;
  } finally {
    await client.closeSession().catch(() => {});
    await unmount();
  }
}
