/** Sockets → frames: plain, TLS and AES connections, client and agent handshakes. */
export * from './certs.js';
export * from './connect.js';
export * from './framed.js';
export * from './local-socket.js';
export * from './pipe.js';
export * from './read.js';
export * from './server.js';
export * from './thumbprint.js';
export * from './writer.js';
