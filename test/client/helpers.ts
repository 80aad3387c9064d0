/**
 * Shared setup for the SDK tests: one real agent process per test file,
 * confined with AllowedRoots to a fresh temp directory (`root`), whose
 * BuildMaster root path is also inside it. Every path a test touches is
 * under `root`.
 */
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient, type ClientOptions } from '../../src/index.js';
import { type AgentProcess, type AgentProcessOptions, startAgentProcess } from '../helpers/agent.js';

export interface ClientAgent {
  agent: AgentProcess;
  /** The only directory the agent may touch (AllowedRoots). */
  root: string;
  /** Connection options for this agent (mode, key or thumbprint). */
  options: ClientOptions;
  connect(overrides?: Partial<ClientOptions>): Promise<AgentClient>;
  stop(): Promise<void>;
}

export async function startClientAgent(options: AgentProcessOptions = {}): Promise<ClientAgent> {
  const root = await realpath(await mkdtemp(join(tmpdir(), 'outpost-sdk-')));
  const agent = await startAgentProcess({
    mode: 'aes',
    allowedRoots: [root],
    rootPaths: {
      BuildMaster: join(root, 'bm'),
      Otter: join(root, 'otter'),
      Hedgehog: join(root, 'hedgehog'),
    },
    ...options,
  });
  const connection: ClientOptions = {
    host: agent.host,
    port: agent.port,
    mode: agent.mode,
    ...(agent.key ? { key: agent.key } : {}),
    ...(agent.certificate ? { thumbprint: agent.certificate.thumbprint } : {}),
    // The wire does not report the agent's MaxMessageSize: tell the client.
    ...(options.maxMessageSize !== undefined ? { agentMaxMessageSize: options.maxMessageSize } : {}),
    timeoutMs: 5000,
  };
  return {
    agent,
    root,
    options: connection,
    connect: (overrides = {}) => AgentClient.connect({ ...connection, ...overrides }),
    async stop() {
      await agent.stop();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Internals the tests look at (the pending-request map and the live connection). */
export interface ClientInternals {
  channel: {
    pending: Map<number, unknown>;
    metaQueue: unknown[];
    conn: { isPaused: boolean; socket: { destroy(): void } } | null;
  };
}

export function internals(client: AgentClient): ClientInternals {
  return client as unknown as ClientInternals;
}

/** Resolves after `ms`. */
export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
