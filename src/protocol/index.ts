/** Pure codecs for the Inedo Agent protocol v1. No I/O. */
export * from './binary.js';
export * from './constants.js';
export * from './errors.js';
export * from './frames.js';
export * from './handshake.js';
export * from './messages.js';
export * from './pipe.js';
export * from './replay.js';
export * from './schema.js';
export * from './ustar.js';
