/**
 * Outpost: an open-source implementation of the Inedo Agent network
 * protocol v1. The package root is the TypeScript SDK for orchestrators
 * ({@link AgentClient}); the pure protocol codec is `outpost/protocol`.
 *
 * @example
 * ```ts
 * import { AgentClient } from 'outpost';
 * const agent = await AgentClient.connect({ host: '10.0.0.5', key: process.env.OUTPOST_KEY });
 * console.log(await agent.exec('uname', ['-a'], { encoding: 'utf8' }));
 * await agent.close();
 * ```
 */
export * from './client/index.js';
export {
  AGENT_TYPE_NAMES,
  AgentType,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_PORT,
  ERROR_KINDS,
  ErrorKind,
  type ErrorKindName,
  formatVersion,
  HASH_ALGORITHMS,
  MAX_MAX_MESSAGE_SIZE,
  MAX_OUTPUT_CHUNK,
  MIN_MAX_MESSAGE_SIZE,
  PROTOCOL_VERSION,
  type ProductType,
  parseVersion,
} from './protocol/index.js';
export { type EncryptionMode, formatThumbprint, thumbprintOfPem } from './transport/index.js';
