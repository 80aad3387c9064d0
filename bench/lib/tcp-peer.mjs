/**
 * The raw-TCP baseline's far end, run as its own process (like an agent):
 * listens on 127.0.0.1:0, prints the port, then per connection reads one JSON
 * header line {op:'put'|'get', path} and either writes the rest of the stream
 * to `path` (answering "ok" once it is on disk) or streams `path` back.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { createServer } from 'node:net';
import { pipeline } from 'node:stream/promises';

const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
  let head = Buffer.alloc(0);
  const onData = (chunk) => {
    head = Buffer.concat([head, chunk]);
    const nl = head.indexOf(10);
    if (nl < 0) {
      if (head.length > 4096) socket.destroy();
      return;
    }
    socket.off('data', onData);
    socket.pause();
    const req = JSON.parse(head.subarray(0, nl).toString());
    const rest = head.subarray(nl + 1);
    if (req.op === 'put') {
      const out = createWriteStream(req.path);
      if (rest.length) out.write(rest);
      socket.pipe(out);
      out.on('finish', () => socket.end('ok'));
      out.on('error', () => socket.destroy());
    } else {
      pipeline(createReadStream(req.path, { highWaterMark: 256 * 1024 }), socket).catch(() =>
        socket.destroy(),
      );
    }
  };
  socket.on('data', onData);
  socket.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
