/**
 * Writing InedoAgent.config: the template `outpost init`, `outpost start`
 * and the tests render (omitted values are left to the defaults).
 */
import type { EncryptionMode } from '../transport/index.js';
import { ROOT_ELEMENT } from './config-xml.js';

/** What `renderConfigXml` writes; omitted values are left to the defaults. */
export interface ConfigTemplate {
  mode: EncryptionMode;
  /** Mode aes: key as hex. */
  keyHex?: string;
  certificateFile?: string;
  keyFile?: string;
  address?: string;
  port?: number;
  allowedAddresses?: string[];
  allowedRoots?: string[];
  logFile?: string;
  extensionCachePath?: string;
  rootPaths?: Partial<Record<'BuildMaster' | 'Otter' | 'Hedgehog', string>>;
  sessionIdleTimeout?: number;
  detachedSessionTimeout?: number;
  maxProcessesPerSession?: number;
  maxOpenFilesPerSession?: number;
  hostIdleTimeout?: number;
  maxHostProcesses?: number;
  maxConcurrentHandshakes?: number;
  maxHandshakesPerAddress?: number;
  handshakeTimeout?: number;
  maxMessageSize?: number;
  /** Listener/@Enabled (default true). */
  listenerEnabled?: boolean;
  /** Outbound mode (§8): <Connections Enabled="true"> with these servers. */
  servers?: { host: string; key: string; thumbprint?: string; maxConnections?: number }[];
  /** Raw XML appended inside <Listener> and inside the root (tests, advanced use). */
  extraListenerXml?: string;
  extraXml?: string;
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Renders a config document (used by `outpost init`, `outpost start` and tests). */
export function renderConfigXml(t: ConfigTemplate): string {
  const el = (indent: string, name: string, v: string | number | undefined) =>
    v === undefined ? '' : `${indent}<${name}>${escapeXml(String(v))}</${name}>\n`;
  const i1 = '  ';
  const i2 = '    ';
  const i3 = '      ';
  let x = '<?xml version="1.0" encoding="utf-8"?>\n';
  x += `<${ROOT_ELEMENT}>\n`;
  x += el(i1, 'LogFile', t.logFile);
  x += el(i1, 'ExtensionCachePath', t.extensionCachePath);
  x += el(i1, 'BuildMasterRootPath', t.rootPaths?.BuildMaster);
  x += el(i1, 'OtterRootPath', t.rootPaths?.Otter);
  x += el(i1, 'HedgehogRootPath', t.rootPaths?.Hedgehog);
  x += el(i1, 'AllowedRoots', t.allowedRoots?.join(';'));
  x += el(i1, 'SessionIdleTimeout', t.sessionIdleTimeout);
  x += el(i1, 'DetachedSessionTimeout', t.detachedSessionTimeout);
  x += el(i1, 'MaxProcessesPerSession', t.maxProcessesPerSession);
  x += el(i1, 'MaxOpenFilesPerSession', t.maxOpenFilesPerSession);
  x += el(i1, 'HostIdleTimeout', t.hostIdleTimeout);
  x += el(i1, 'MaxHostProcesses', t.maxHostProcesses);
  x += `${i1}<Listener Enabled="${t.listenerEnabled === false ? 'false' : 'true'}">\n`;
  x += `${i2}<Encryption Mode="${t.mode}">\n`;
  x += el(i3, 'Key', t.keyHex);
  x += el(i3, 'CertificateFile', t.certificateFile);
  x += el(i3, 'KeyFile', t.keyFile);
  x += `${i2}</Encryption>\n`;
  x += el(i2, 'Address', t.address);
  x += el(i2, 'Port', t.port);
  x += el(i2, 'MaxConcurrentHandshakes', t.maxConcurrentHandshakes);
  x += el(i2, 'MaxHandshakesPerAddress', t.maxHandshakesPerAddress);
  x += el(i2, 'HandshakeTimeout', t.handshakeTimeout);
  x += el(i2, 'AllowedAddresses', t.allowedAddresses?.join(';'));
  x += el(i2, 'MaxMessageSize', t.maxMessageSize);
  if (t.extraListenerXml) x += `${i2}${t.extraListenerXml}\n`;
  x += `${i1}</Listener>\n`;
  if (t.servers?.length) {
    x += `${i1}<Connections Enabled="true">\n`;
    for (const s of t.servers) {
      const attr = (n: string, v: string | number | undefined) =>
        v === undefined ? '' : ` ${n}="${escapeXml(String(v))}"`;
      x += `${i2}<Server${attr('Host', s.host)}${attr('Key', s.key)}${attr('Thumbprint', s.thumbprint)}${attr('MaxConnections', s.maxConnections)} />\n`;
    }
    x += `${i1}</Connections>\n`;
  }
  if (t.extraXml) x += `${i1}${t.extraXml}\n`;
  x += `</${ROOT_ELEMENT}>\n`;
  return x;
}
