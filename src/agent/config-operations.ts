/**
 * The operator's settings of InedoAgent.config (docs/OPERATIONS.md), kept
 * apart from the wire settings:
 *
 *   <ControlSocket>path</ControlSocket>          default <config dir>/state/control.sock
 *   <Metrics Address="127.0.0.1:9346"/>          off unless present
 *   <AuditLogFile>path</AuditLogFile>            off unless set
 *   <LogLevel>info</LogLevel>                    trace|debug|info|warn|error|fatal|silent
 *   <LogFileMaxSize>10485760</LogFileMaxSize>    bytes before LogFile is rotated (default 10 MiB)
 *   <LogFileCount>5</LogFileCount>               rotated files kept besides the current one
 */
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { ConfigError, type Element, parseInteger } from './config-xml.js';

export const OPERATIONS_ELEMENTS = [
  'ControlSocket',
  'Metrics',
  'AuditLogFile',
  'LogLevel',
  'LogFileMaxSize',
  'LogFileCount',
] as const;

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface MetricsAddress {
  host: string;
  port: number;
}

export interface OperationsConfig {
  /** Unix socket of `outpost status` / `outpost reload` (owner-only). */
  controlSocket: string;
  /** ControlSocket was set (then failing to listen stops the start; the default only warns). */
  controlSocketExplicit: boolean;
  /** Where Prometheus scrapes /metrics; null: off. */
  metrics: MetricsAddress | null;
  /** JSON lines of every mutation, process start, job and session; null: off. */
  auditLogFile: string | null;
  logLevel: LogLevel;
  logFileMaxSize: number;
  logFileCount: number;
}

export const DEFAULT_METRICS_PORT = 9346;
/** Unix socket paths are limited to 107 bytes on Linux (108 with the NUL). */
const MAX_SOCKET_PATH = 107;

/** `host:port`, `[v6]:port`, or a bare host (the default port). */
export function parseMetricsAddress(text: string, element = 'Metrics/@Address'): MetricsAddress {
  let host = text;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if (isIP(text) !== 6) {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  if (isIP(host) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host))
    throw new ConfigError(element, `"${text}": "${host}" is not an IP address or host name`);
  const port = portText === undefined ? DEFAULT_METRICS_PORT : Number(portText);
  if (portText !== undefined && (!/^\d+$/.test(portText) || port > 65535))
    throw new ConfigError(element, `"${text}": the port must be a number from 0 to 65535`);
  return { host, port };
}

export function parseOperations(
  root: Element,
  configDir: string,
  stateDir: string,
  expandHome: (p: string) => string,
): OperationsConfig {
  const pathOf = (name: string): string | null => {
    const t = root.text(name);
    return t === undefined ? null : resolve(configDir, expandHome(t));
  };
  const explicit = pathOf('ControlSocket');
  const controlSocket = explicit ?? join(stateDir, 'control.sock');
  if (Buffer.byteLength(controlSocket) > MAX_SOCKET_PATH)
    throw new ConfigError(
      'ControlSocket',
      `${controlSocket} is longer than ${MAX_SOCKET_PATH} bytes, the limit of a Unix socket path; set a shorter <ControlSocket>`,
    );
  let metrics: MetricsAddress | null = null;
  const m = root.child('Metrics');
  if (m) {
    const enabled = m.attr('Enabled')?.toLowerCase();
    if (enabled !== undefined && enabled !== 'true' && enabled !== 'false')
      throw new ConfigError('Metrics/@Enabled', `"${m.attr('Enabled')}" must be true or false`);
    if (enabled !== 'false')
      metrics = parseMetricsAddress(m.attr('Address') ?? `127.0.0.1:${DEFAULT_METRICS_PORT}`);
  }
  const levelText = root.text('LogLevel');
  const logLevel = (levelText ?? 'info').toLowerCase() as LogLevel;
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError('LogLevel', `"${levelText}" must be one of ${LOG_LEVELS.join(', ')}`);
  return {
    controlSocket,
    controlSocketExplicit: explicit !== null,
    metrics,
    auditLogFile: pathOf('AuditLogFile'),
    logLevel,
    logFileMaxSize: parseInteger(root, 'LogFileMaxSize', 10 * 1024 * 1024, 64 * 1024, 2 ** 40),
    logFileCount: parseInteger(root, 'LogFileCount', 5, 1, 1000),
  };
}
