#!/usr/bin/env node
// Packs this folder into a .upack (a zip of upack.json and package/) with yazl:
//   node examples/extension/pack.mjs [OUT.upack] [DIR]
// (defaults: DIR is this folder, OUT is NAME-VERSION.upack in it)
// Ship it with `outpost ext push OUT.upack HOST`, or agent.update({ extensions: [...] }) in the SDK.
import { createWriteStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';

/** Packs `dir` (upack.json + package/) to `out`; resolves when the file is written. */
export function packUpack(dir, out) {
  const zip = new yazl.ZipFile();
  zip.addFile(join(dir, 'upack.json'), 'upack.json');
  const walk = (abs) => {
    for (const name of readdirSync(abs).sort()) {
      const p = join(abs, name);
      if (statSync(p).isDirectory()) walk(p);
      else zip.addFile(p, relative(dir, p).split('\\').join('/'));
    }
  };
  walk(join(dir, 'package'));
  zip.end();
  return new Promise((resolve, reject) => {
    const ws = createWriteStream(out);
    zip.outputStream.pipe(ws).on('close', resolve).on('error', reject);
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[3] ?? fileURLToPath(new URL('.', import.meta.url));
  const meta = JSON.parse(readFileSync(join(dir, 'upack.json'), 'utf8'));
  const out = process.argv[2] ?? join(dir, `${meta.name}-${meta.version}.upack`);
  await packUpack(dir, out);
  console.log(out);
}
