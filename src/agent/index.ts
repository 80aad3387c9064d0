/** The agent daemon: configuration, listener, sessions, meta commands and the product-router seam. */
export * from './admission.js';
export * from './agent.js';
export * from './config.js';
export * from './listener.js';
export * from './log.js';
export * from './meta.js';
export * from './outbound.js';
export * from './product.js';
export * from './secret.js';
export * from './sessions.js';
export * from './version.js';
