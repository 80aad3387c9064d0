/**
 * Reload (SIGHUP, `outpost reload`): which settings of a freshly parsed
 * config take effect in a running agent, and which need a restart.
 *
 * The caller has parsed the whole file first: a config with any error is
 * refused whole and the running one stays (parseConfig throws before this
 * runs). `mergeReload` is pure: it returns the config to run with — the new
 * one, with every restart-only setting kept as it runs now — and the names
 * of the settings that changed, split into applied and restart-only.
 *
 * Applied to new connections and requests, with no session dropped:
 * AllowedAddresses, AllowedRoots, the per-session and handshake limits, the
 * timeouts, LogLevel, the
 * TLS certificate and key (new handshakes), and what `Connections` holds
 * (the outbound dialer's hook). Restart-only: RESTART_ONLY below.
 */
import { isDeepStrictEqual } from 'node:util';
import type { AgentConfig } from './config.js';

type Setting = [name: string, read: (c: AgentConfig) => unknown];

/** Settings a running agent cannot change: the listening socket, its mode and key, files opened at start. */
export const RESTART_ONLY: readonly Setting[] = [
  ['Listener/@Enabled', (c) => c.listener.enabled],
  ['Listener/Address', (c) => c.listener.address],
  ['Listener/Port', (c) => c.listener.port],
  ['Listener/Encryption/@Mode', (c) => c.listener.encryption.mode],
  ['Listener/Encryption/Key', (c) => c.listener.encryption.key?.reveal().toString('hex') ?? null],
  // The host pipes' frame limit is fixed when the host pool is made.
  ['Listener/MaxMessageSize', (c) => c.listener.maxMessageSize],
  ['LogFile', (c) => c.logFile],
  ['LogFileMaxSize', (c) => c.operations.logFileMaxSize],
  ['LogFileCount', (c) => c.operations.logFileCount],
  ['AuditLogFile', (c) => c.operations.auditLogFile],
  ['ControlSocket', (c) => c.operations.controlSocket],
  ['Metrics', (c) => c.operations.metrics],
  ['ExtensionCachePath', (c) => c.extensionCachePath],
  ['DetachedSpoolPath', (c) => c.detachedSpoolPath],
  ['BuildMasterRootPath / OtterRootPath / HedgehogRootPath', (c) => c.rootPaths],
];

/** Settings a reload applies (for the answer: which of them changed). */
export const RELOADABLE: readonly Setting[] = [
  ['Listener/AllowedAddresses', (c) => c.listener.allowedAddresses.map((r) => r.text)],
  ['AllowedRoots', (c) => c.allowedRoots],
  ['Listener/Encryption/CertificateFile + KeyFile', (c) => c.listener.encryption.thumbprint],
  ['Listener/MaxConcurrentHandshakes', (c) => c.listener.maxConcurrentHandshakes],
  ['Listener/MaxHandshakesPerAddress', (c) => c.listener.maxHandshakesPerAddress],
  ['Listener/HandshakeTimeout', (c) => c.listener.handshakeTimeoutMs],
  ['SessionIdleTimeout', (c) => c.sessionIdleTimeoutMs],
  ['DetachedSessionTimeout', (c) => c.detachedSessionTimeoutMs],
  ['MaxDetachedSpoolSize', (c) => c.maxDetachedSpoolSize],
  ['MaxProcessesPerSession', (c) => c.maxProcessesPerSession],
  ['MaxOpenFilesPerSession', (c) => c.maxOpenFilesPerSession],
  ['HostIdleTimeout', (c) => c.hostIdleTimeoutMs],
  ['MaxHostProcesses', (c) => c.maxHostProcesses],
  ['LogLevel', (c) => c.operations.logLevel],
];

export interface ReloadPlan {
  /** What the agent runs with from now on. */
  config: AgentConfig;
  /** Reloadable settings whose value changed (now in effect). */
  applied: string[];
  /** Settings that changed in the file but keep their running value until a restart. */
  restartRequired: string[];
}

function changed(list: readonly Setting[], a: AgentConfig, b: AgentConfig): string[] {
  return list.filter(([, read]) => !isDeepStrictEqual(read(a), read(b))).map(([name]) => name);
}

export function mergeReload(running: AgentConfig, next: AgentConfig): ReloadPlan {
  const restartRequired = changed(RESTART_ONLY, running, next);
  const applied = changed(RELOADABLE, running, next);
  const sameMode = running.listener.encryption.mode === next.listener.encryption.mode;
  const config: AgentConfig = {
    ...next,
    configPath: running.configPath,
    configDir: running.configDir,
    logFile: running.logFile,
    extensionCachePath: running.extensionCachePath,
    detachedSpoolPath: running.detachedSpoolPath,
    rootPaths: running.rootPaths,
    operations: { ...running.operations, logLevel: next.operations.logLevel },
    listener: {
      ...next.listener,
      enabled: running.listener.enabled,
      address: running.listener.address,
      port: running.listener.port,
      maxMessageSize: running.listener.maxMessageSize,
      // Mode ssl keeps its mode and takes the new certificate and key; any other change waits for a restart.
      encryption:
        sameMode && next.listener.encryption.mode === 'ssl'
          ? next.listener.encryption
          : running.listener.encryption,
    },
  };
  return { config, applied, restartRequired };
}
