/**
 * The agent's configuration file, InedoAgent.config (XML, modelled on
 * Inedo's own):
 *
 *   <InedoAgentConfig>
 *     <LogFile/> <ExtensionCachePath/> <BuildMasterRootPath/> <OtterRootPath/> <HedgehogRootPath/>
 *     <AllowedRoots>path;path</AllowedRoots>
 *     <SessionIdleTimeout>1800</SessionIdleTimeout> <DetachedSessionTimeout>1800</DetachedSessionTimeout>
 *     <MaxProcessesPerSession>64</MaxProcessesPerSession> <MaxOpenFilesPerSession>1024</MaxOpenFilesPerSession>
 *     <HostIdleTimeout>60</HostIdleTimeout> <MaxHostProcesses>64</MaxHostProcesses>
 *     <Listener Enabled="true">
 *       <Encryption Mode="none|ssl|aes"><Key>hex</Key><CertificateFile/><KeyFile/></Encryption>
 *       <Address>0.0.0.0</Address> <Port>46336</Port>
 *       <MaxConcurrentHandshakes>100</MaxConcurrentHandshakes> <MaxHandshakesPerAddress>32</MaxHandshakesPerAddress>
 *       <HandshakeTimeout>30</HandshakeTimeout>
 *       <AllowedAddresses>127.0.0.1;10.0.0.0/8;::1;fd00::/8</AllowedAddresses>
 *       <MaxMessageSize>67108864</MaxMessageSize>
 *     </Listener>
 *     <Connections Enabled="false">                   (outbound mode, §8: see parseConnections)
 *       <Server Host="hub.example.com[:46336]" Key="…" Thumbprint="AB:CD:…" MaxConnections="8"/>
 *     </Connections>
 *   </InedoAgentConfig>
 *
 * Every problem is a `ConfigError` naming the element, and stops the start.
 * Unknown elements and attributes are warnings. Relative paths are resolved
 * against the config file's directory. Secrets (the AES key, the TLS private
 * key) are wrapped in `Secret` so they cannot be logged by accident.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { XMLValidator } from 'fast-xml-parser';
import {
  AGENT_TYPE_NAMES,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_PORT,
  MAX_MAX_MESSAGE_SIZE,
  MIN_MAX_MESSAGE_SIZE,
  PRODUCT_TYPES,
  type ProductType,
  parseAesKeyHex,
} from '../protocol/index.js';
import { type EncryptionMode, normalizeThumbprint, thumbprintOfDer } from '../transport/index.js';
import { OPERATIONS_ELEMENTS, type OperationsConfig, parseOperations } from './config-operations.js';
import {
  ConfigError,
  Element,
  parseInteger,
  parser,
  parseSeconds,
  ROOT_ELEMENT,
  type XmlObject,
} from './config-xml.js';
import { Secret } from './secret.js';

export {
  LOG_LEVELS,
  type LogLevel,
  type MetricsAddress,
  type OperationsConfig,
} from './config-operations.js';
export { type ConfigTemplate, escapeXml, renderConfigXml } from './config-render.js';
export { ConfigError, ROOT_ELEMENT } from './config-xml.js';

export const CONFIG_FILE_NAME = 'InedoAgent.config';

export const DEFAULTS = {
  address: '0.0.0.0',
  port: DEFAULT_PORT,
  sessionIdleTimeoutSeconds: 1800,
  detachedSessionTimeoutSeconds: 1800,
  maxDetachedSessionTimeoutSeconds: 86_400,
  /** Bytes of undelivered output one session keeps for its detached processes: 256 MiB. */
  maxDetachedSpoolSize: 256 * 1024 * 1024,
  maxProcessesPerSession: 64,
  maxOpenFilesPerSession: 1024,
  hostIdleTimeoutSeconds: 60,
  maxHostProcesses: 64,
  /** Bytes one archive extraction may write (jobs, extension packages): 4 GiB. */
  maxExtractedSize: 4 * 1024 * 1024 * 1024,
  maxConcurrentHandshakes: 100,
  maxHandshakesPerAddress: 32,
  handshakeTimeoutSeconds: 30,
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  maxConnections: 8,
} as const;

/** One entry of Listener/AllowedAddresses: an address or a CIDR range. */
export interface AddressRule {
  family: 'ipv4' | 'ipv6';
  address: string;
  /** Prefix length; absent for a single address. */
  prefix?: number;
  /** The entry as written. */
  text: string;
}

export interface EncryptionConfig {
  mode: EncryptionMode;
  /** Mode aes: the key (16, 24 or 32 bytes). */
  key: Secret<Buffer> | null;
  /** Mode ssl: resolved file paths, PEM contents, the ready context and the certificate's SHA-256 thumbprint. */
  certificateFile: string | null;
  keyFile: string | null;
  certificatePem: Buffer | null;
  privateKeyPem: Secret<Buffer> | null;
  secureContext: SecureContext | null;
  thumbprint: string | null;
}

export interface ListenerConfig {
  enabled: boolean;
  encryption: EncryptionConfig;
  address: string;
  /** 0 lets the OS pick a free port (it is logged on start). */
  port: number;
  /** Unfinished handshakes (accept → first valid frame) at once, over all addresses (§6). */
  maxConcurrentHandshakes: number;
  /** Unfinished handshakes at once from one remote address (§6). */
  maxHandshakesPerAddress: number;
  /** Accept → first valid frame (§2). */
  handshakeTimeoutMs: number;
  /** Empty: every address may connect. */
  allowedAddresses: AddressRule[];
  maxMessageSize: number;
}

/** One <Connections>/<Server>: an orchestrator this agent dials (§8). */
export interface OutboundServerConfig {
  /** Host name or IP address (brackets removed), resolved on every attempt. */
  host: string;
  port: number;
  /** How logs name it: `host:port` as written (IPv6 in brackets). */
  label: string;
  /** The key sent in the outbound hello; the server knows this agent by it. */
  key: Secret<string>;
  /** Pinned SHA-256 thumbprint (normalized: 64 lower-case hex digits); null: the trust store verifies. */
  thumbprint: string | null;
  /** Links to this server at once, the idle one included (default 8). */
  maxConnections: number;
}

export interface ConnectionsConfig {
  enabled: boolean;
  servers: OutboundServerConfig[];
}

export interface AgentConfig {
  /** The file it came from (null when built in code). */
  configPath: string | null;
  /** Relative paths were resolved against this directory. */
  configDir: string;
  logFile: string | null;
  /** UpdateAgent files go to `<this>/<instance>/<product>/{binaries,extensions}` (§5.1). */
  extensionCachePath: string;
  /** Root path per product agent type (1 Otter, 2 BuildMaster, 3 Hedgehog). */
  rootPaths: Record<ProductType, string>;
  /** Absolute directories product file/process paths must stay inside; null = unrestricted. */
  allowedRoots: string[] | null;
  sessionIdleTimeoutMs: number;
  detachedSessionTimeoutMs: number;
  /**
   * Extension (SetSessionOptions): the longest detached timeout a session may
   * ask for, e.g. for `outpost exec --detach` (a shorter one is always granted).
   */
  maxDetachedSessionTimeoutMs: number;
  /**
   * Bytes of output a session keeps (memory, then a spool file) for its
   * processes while no connection takes it; at the bound their host is paused.
   */
  maxDetachedSpoolSize: number;
  /** Where spool files go (`<this>/run-<pid>-<random>/`, 0700; files 0600). */
  detachedSpoolPath: string;
  maxProcessesPerSession: number;
  maxOpenFilesPerSession: number;
  /** A host process that holds nothing (no handle, process, job or request) is stopped after this. */
  hostIdleTimeoutMs: number;
  /** Host processes of the agent at once, warm spares included. */
  maxHostProcesses: number;
  /** Bytes one archive extraction (outpost.extract, an extension package) may write. */
  maxExtractedSize: number;
  listener: ListenerConfig;
  /** Outbound mode (§8): the servers this agent dials. */
  connections: ConnectionsConfig;
  /** Control socket, metrics, audit log, log level and rotation (docs/OPERATIONS.md). */
  operations: OperationsConfig;
  /** Non-fatal findings (unknown elements, risky settings), to log at start. */
  warnings: string[];
}

// ------------------------------------------------------------------ lookup

/** Where the agent looks for its config when no --config is given, in order. */
export function defaultConfigLocations(cwd = process.cwd()): string[] {
  const local = join(cwd, CONFIG_FILE_NAME);
  if (process.platform === 'win32') {
    const programData = process.env.PROGRAMDATA ?? 'C:\\ProgramData';
    return [local, join(programData, 'Inedo', 'SharedConfig', CONFIG_FILE_NAME)];
  }
  return [local, join('/etc/outpost', CONFIG_FILE_NAME)];
}

/** Resolves the config file to use; throws a ConfigError saying where it looked. */
export async function findConfigFile(explicit?: string, cwd = process.cwd()): Promise<string> {
  if (explicit !== undefined) {
    const p = resolve(cwd, explicit);
    try {
      await access(p);
    } catch {
      throw new ConfigError(
        '--config',
        `${p} does not exist; create one with \`outpost init --config ${p}\``,
      );
    }
    return p;
  }
  const candidates = defaultConfigLocations(cwd);
  for (const p of candidates) {
    try {
      await access(p);
      return p;
    } catch {
      // try the next one
    }
  }
  throw new ConfigError(
    '--config',
    `no configuration found (looked for ${candidates.join(' and ')}); pass --config PATH or create one with \`outpost init\``,
  );
}

// ------------------------------------------------------------------ parsing

const TOP_ELEMENTS = [
  'LogFile',
  'ExtensionCachePath',
  'BuildMasterRootPath',
  'OtterRootPath',
  'HedgehogRootPath',
  'AllowedRoots',
  'SessionIdleTimeout',
  'DetachedSessionTimeout',
  'MaxDetachedSessionTimeout',
  'MaxDetachedSpoolSize',
  'DetachedSpoolPath',
  'MaxProcessesPerSession',
  'MaxOpenFilesPerSession',
  'HostIdleTimeout',
  'MaxHostProcesses',
  'MaxExtractedSize',
  'Listener',
  'Connections',
  ...OPERATIONS_ELEMENTS,
];
const LISTENER_ELEMENTS = [
  'Encryption',
  'Address',
  'Port',
  'MaxConcurrentHandshakes',
  'MaxHandshakesPerAddress',
  'HandshakeTimeout',
  'AllowedAddresses',
  'MaxMessageSize',
];
const ENCRYPTION_ELEMENTS = ['Key', 'CertificateName', 'CertificateFile', 'KeyFile'];

export function parseAddressRules(text: string, element = 'Listener/AllowedAddresses'): AddressRule[] {
  const rules: AddressRule[] = [];
  for (const raw of text.split(/[;,\s]+/)) {
    const entry = raw.trim();
    if (entry === '') continue;
    const slash = entry.indexOf('/');
    let address = slash < 0 ? entry : entry.slice(0, slash);
    if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1);
    const version = isIP(address);
    if (version === 0)
      throw new ConfigError(
        element,
        `"${entry}" is not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1, fd00::/8)`,
      );
    const family = version === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) {
      rules.push({ family, address, text: entry });
      continue;
    }
    const p = entry.slice(slash + 1);
    const maxPrefix = version === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(p) || Number(p) > maxPrefix)
      throw new ConfigError(element, `"${entry}": prefix length must be 0 to ${maxPrefix}`);
    rules.push({ family, address, prefix: Number(p), text: entry });
  }
  return rules;
}

/** True for addresses that only this machine can reach. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  if (a === 'localhost' || a === '::1') return true;
  const v4 = a.startsWith('::ffff:') ? a.slice(7) : a;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

const MODES: readonly EncryptionMode[] = ['none', 'ssl', 'aes'];
const MAX_TIMEOUT_SECONDS = 2_000_000; // setTimeout's limit is ~24.8 days

/**
 * Parses and checks a config document. TLS files named in it are read and
 * validated too, so a successful return means the agent can start.
 */
export async function parseConfig(
  xml: string,
  configPath: string | null,
  cwd = process.cwd(),
): Promise<AgentConfig> {
  const file = configPath ?? '(config)';
  const valid = XMLValidator.validate(xml);
  if (valid !== true)
    throw new ConfigError(
      ROOT_ELEMENT,
      `${file} is not well-formed XML (line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg})`,
    );
  let doc: XmlObject;
  try {
    doc = parser.parse(xml) as XmlObject;
  } catch (err) {
    throw new ConfigError(ROOT_ELEMENT, `${file} cannot be parsed: ${(err as Error).message}`);
  }
  const roots = Object.keys(doc).filter((k) => !k.startsWith('?') && !k.startsWith('#'));
  if (!roots.includes(ROOT_ELEMENT))
    throw new ConfigError(
      ROOT_ELEMENT,
      `${file} has no <${ROOT_ELEMENT}> root element${roots.length ? ` (found <${roots[0]}>)` : ''}`,
    );
  const rootValues = doc[ROOT_ELEMENT] as unknown[];
  if (rootValues.length > 1) throw new ConfigError(ROOT_ELEMENT, `${file} has more than one root element`);
  const root = new Element('', typeof rootValues[0] === 'object' ? (rootValues[0] as XmlObject) : {});
  const warnings: string[] = [];
  root.checkUnknown(TOP_ELEMENTS, [], warnings);
  const connections = parseConnections(root.child('Connections'), warnings);

  const configDir = configPath ? dirname(resolve(cwd, configPath)) : cwd;
  const pathOf = (name: string, fallback: string): string => {
    const t = root.text(name);
    return t === undefined ? fallback : resolve(configDir, expandHome(t));
  };
  const stateDir = join(configDir, 'state');
  const rootPaths = {} as Record<ProductType, string>;
  for (const t of PRODUCT_TYPES) {
    const name = AGENT_TYPE_NAMES[t];
    rootPaths[t] = pathOf(`${name}RootPath`, join(stateDir, name));
  }
  const logFileText = root.text('LogFile');

  let allowedRoots: string[] | null = null;
  const rootsText = root.text('AllowedRoots');
  if (rootsText !== undefined) {
    allowedRoots = [];
    for (const entry of rootsText.split(';')) {
      const p = entry.trim();
      if (p === '') continue;
      const expanded = expandHome(p);
      if (!isAbsolute(expanded)) throw new ConfigError('AllowedRoots', `"${p}" is not an absolute path`);
      allowedRoots.push(resolve(expanded));
    }
    if (allowedRoots.length === 0) throw new ConfigError('AllowedRoots', 'is set but lists no directory');
  }

  const listenerEl = root.child('Listener') ?? (connections.enabled ? DISABLED_LISTENER : undefined);
  if (!listenerEl)
    throw new ConfigError(
      'Listener',
      'missing; add <Listener><Encryption Mode="aes"><Key>…</Key></Encryption></Listener> (see `outpost init`)',
    );
  listenerEl.checkUnknown(LISTENER_ELEMENTS, ['Enabled'], warnings);
  const enabledText = listenerEl.attr('Enabled');
  let enabled = true;
  if (enabledText !== undefined) {
    const e = enabledText.toLowerCase();
    if (e !== 'true' && e !== 'false')
      throw new ConfigError('Listener/@Enabled', `"${enabledText}" must be true or false`);
    enabled = e === 'true';
  }

  const address = listenerEl.text('Address') ?? DEFAULTS.address;
  if (isIP(address) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(address))
    throw new ConfigError('Listener/Address', `"${address}" is not an IP address or host name`);
  const port = parseInteger(listenerEl, 'Port', DEFAULTS.port, 0, 65535);
  // A listener that is off needs no encryption settings (an outbound-only agent).
  const encryptionEl = listenerEl.child('Encryption') ?? (enabled ? undefined : NO_ENCRYPTION);
  const encryption = await parseEncryption(encryptionEl, configDir, warnings);
  if (!enabled && !connections.enabled)
    throw new ConfigError(
      'Listener/@Enabled',
      'is "false" and <Connections> is not enabled: the agent would serve nobody; enable one of them',
    );
  const allowedText = listenerEl.text('AllowedAddresses');
  const allowedAddresses = allowedText === undefined ? [] : parseAddressRules(allowedText);

  if (enabled && encryption.mode === 'none' && !isLoopbackAddress(address))
    warnings.push(
      `Listener/Encryption: mode none on ${address}, which is not a loopback address: ANYONE WHO CAN REACH PORT ${port} ` +
        'CAN READ AND WRITE FILES AND RUN COMMANDS ON THIS MACHINE, and traffic is unencrypted. ' +
        'Use Mode="aes" or Mode="ssl", or listen on 127.0.0.1' +
        (allowedAddresses.length ? '' : ', and restrict Listener/AllowedAddresses'),
    );

  const config: AgentConfig = {
    configPath: configPath ? resolve(cwd, configPath) : null,
    configDir,
    logFile: logFileText === undefined ? null : resolve(configDir, expandHome(logFileText)),
    extensionCachePath: pathOf('ExtensionCachePath', join(stateDir, 'ExtensionCache')),
    rootPaths,
    allowedRoots,
    sessionIdleTimeoutMs: parseSeconds(
      root,
      'SessionIdleTimeout',
      DEFAULTS.sessionIdleTimeoutSeconds,
      MAX_TIMEOUT_SECONDS,
    ),
    detachedSessionTimeoutMs: parseSeconds(
      root,
      'DetachedSessionTimeout',
      DEFAULTS.detachedSessionTimeoutSeconds,
      MAX_TIMEOUT_SECONDS,
    ),
    maxDetachedSessionTimeoutMs: parseSeconds(
      root,
      'MaxDetachedSessionTimeout',
      DEFAULTS.maxDetachedSessionTimeoutSeconds,
      MAX_TIMEOUT_SECONDS,
    ),
    maxDetachedSpoolSize: parseInteger(
      root,
      'MaxDetachedSpoolSize',
      DEFAULTS.maxDetachedSpoolSize,
      65_536,
      Number.MAX_SAFE_INTEGER,
    ),
    detachedSpoolPath: pathOf('DetachedSpoolPath', join(stateDir, 'spool')),
    maxProcessesPerSession: parseInteger(
      root,
      'MaxProcessesPerSession',
      DEFAULTS.maxProcessesPerSession,
      1,
      100_000,
    ),
    maxOpenFilesPerSession: parseInteger(
      root,
      'MaxOpenFilesPerSession',
      DEFAULTS.maxOpenFilesPerSession,
      1,
      1_000_000,
    ),
    hostIdleTimeoutMs: parseSeconds(
      root,
      'HostIdleTimeout',
      DEFAULTS.hostIdleTimeoutSeconds,
      MAX_TIMEOUT_SECONDS,
    ),
    maxHostProcesses: parseInteger(root, 'MaxHostProcesses', DEFAULTS.maxHostProcesses, 1, 100_000),
    maxExtractedSize: parseInteger(
      root,
      'MaxExtractedSize',
      DEFAULTS.maxExtractedSize,
      1024,
      Number.MAX_SAFE_INTEGER,
    ),
    listener: {
      enabled,
      encryption,
      address,
      port,
      maxConcurrentHandshakes: parseInteger(
        listenerEl,
        'MaxConcurrentHandshakes',
        DEFAULTS.maxConcurrentHandshakes,
        1,
        100_000,
      ),
      maxHandshakesPerAddress: parseInteger(
        listenerEl,
        'MaxHandshakesPerAddress',
        DEFAULTS.maxHandshakesPerAddress,
        1,
        100_000,
      ),
      handshakeTimeoutMs: parseSeconds(
        listenerEl,
        'HandshakeTimeout',
        DEFAULTS.handshakeTimeoutSeconds,
        3600,
      ),
      allowedAddresses,
      maxMessageSize: parseInteger(
        listenerEl,
        'MaxMessageSize',
        DEFAULTS.maxMessageSize,
        MIN_MAX_MESSAGE_SIZE,
        MAX_MAX_MESSAGE_SIZE,
      ),
    },
    connections,
    operations: parseOperations(root, configDir, stateDir, expandHome),
    warnings,
  };
  return config;
}

const DISABLED_LISTENER = new Element('Listener', { '@_Enabled': 'false' });
const NO_ENCRYPTION = new Element('Listener/Encryption', { '@_Mode': 'none' });
const SERVER_ATTRIBUTES = ['Host', 'Key', 'Thumbprint', 'MaxConnections'];
/** Longest outbound key accepted (UTF-8 bytes); the server reads it bounded too. */
export const MAX_OUTBOUND_KEY_BYTES = 1024;
const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;

/**
 * <Connections Enabled="true"><Server Host Key Thumbprint MaxConnections/>…
 * (§8). Every malformed attribute is a ConfigError naming it: a Key,
 * Thumbprint or Host that cannot be used stops the start, never a fallback
 * to something weaker. Several <Server> elements are dialed independently.
 */
function parseConnections(el: Element | undefined, warnings: string[]): ConnectionsConfig {
  const off: ConnectionsConfig = { enabled: false, servers: [] };
  if (!el) return off;
  el.checkUnknown(['Server'], ['Enabled'], warnings);
  const enabledText = el.attr('Enabled');
  const e = (enabledText ?? 'false').toLowerCase();
  if (e !== 'true' && e !== 'false')
    throw new ConfigError('Connections/@Enabled', `"${enabledText}" must be true or false`);
  if (e === 'false') return off;
  const servers = el.children('Server').map((s, i) => parseServer(s, i, warnings));
  if (servers.length === 0)
    throw new ConfigError(
      'Connections/Server',
      'Connections is enabled but lists no <Server Host="…" Key="…"/>; add one or set Enabled="false"',
    );
  return { enabled: true, servers };
}

function parseServer(el: Element, index: number, warnings: string[]): OutboundServerConfig {
  const at = `Connections/Server[${index + 1}]`;
  for (const w of el.unknownAttributes(SERVER_ATTRIBUTES))
    warnings.push(`${at}/@${w}: unknown attribute, ignored`);
  const hostText = el.attr('Host') ?? '';
  if (hostText === '')
    throw new ConfigError(
      `${at}/@Host`,
      'missing: the server to dial, as host or host:port (default port 46336)',
    );
  const { host, port } = parseHostPort(hostText, `${at}/@Host`);
  const key = el.attr('Key') ?? '';
  if (key === '')
    throw new ConfigError(
      `${at}/@Key`,
      'missing: the key the server knows this agent by (`outpost hub key NAME` makes one)',
    );
  if (/[\u0000-\u001f\u007f]/.test(key) || Buffer.byteLength(key) > MAX_OUTBOUND_KEY_BYTES)
    throw new ConfigError(
      `${at}/@Key`,
      `must be printable text of at most ${MAX_OUTBOUND_KEY_BYTES} bytes (the key the server gave this agent)`,
    );
  const tpText = el.attr('Thumbprint');
  let thumbprint: string | null = null;
  if (tpText !== undefined && tpText !== '') {
    thumbprint = normalizeThumbprint(tpText);
    if (!thumbprint)
      throw new ConfigError(
        `${at}/@Thumbprint`,
        `"${tpText}" is not a SHA-256 thumbprint (64 hex digits, colons allowed), as \`outpost hub init\` printed it`,
      );
  }
  const maxText = el.attr('MaxConnections');
  let maxConnections: number = DEFAULTS.maxConnections;
  if (maxText !== undefined && maxText !== '') {
    if (!/^\d+$/.test(maxText) || Number(maxText) < 1 || Number(maxText) > 1000)
      throw new ConfigError(`${at}/@MaxConnections`, `"${maxText}" must be a whole number from 1 to 1000`);
    maxConnections = Number(maxText);
  }
  const label = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, label, key: new Secret(key), thumbprint, maxConnections };
}

/** `host`, `host:port`, `[v6]`, `[v6]:port` → host and port (default 46336). */
function parseHostPort(text: string, element: string): { host: string; port: number } {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    host = end < 0 ? '' : text.slice(1, end);
    const rest = end < 0 ? '' : text.slice(end + 1);
    if (end < 0 || isIP(host) !== 6 || (rest !== '' && !rest.startsWith(':')))
      throw new ConfigError(element, `"${text}" is not a valid [IPv6]:port`);
    if (rest !== '') portText = rest.slice(1);
  } else if (isIP(text) !== 6) {
    const i = text.lastIndexOf(':');
    if (i >= 0) {
      host = text.slice(0, i);
      portText = text.slice(i + 1);
    }
  }
  if (isIP(host) === 0 && !HOST_NAME.test(host))
    throw new ConfigError(element, `"${text}" does not start with a host name or IP address`);
  let port: number = DEFAULT_PORT;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
      throw new ConfigError(element, `"${text}": the port must be a number from 1 to 65535`);
    port = Number(portText);
  }
  return { host, port };
}

async function parseEncryption(
  el: Element | undefined,
  configDir: string,
  warnings: string[],
): Promise<EncryptionConfig> {
  const E = 'Listener/Encryption';
  if (!el)
    throw new ConfigError(
      E,
      'missing; choose Mode="aes" (with <Key>), Mode="ssl" (with <CertificateFile> and <KeyFile>) or Mode="none"',
    );
  el.checkUnknown(ENCRYPTION_ELEMENTS, ['Mode'], warnings);
  const modeText = el.attr('Mode');
  if (modeText === undefined || modeText === '')
    throw new ConfigError(`${E}/@Mode`, 'missing; must be aes, ssl or none');
  const mode = modeText.toLowerCase() as EncryptionMode;
  if (!MODES.includes(mode)) throw new ConfigError(`${E}/@Mode`, `"${modeText}" must be aes, ssl or none`);

  const enc: EncryptionConfig = {
    mode,
    key: null,
    certificateFile: null,
    keyFile: null,
    certificatePem: null,
    privateKeyPem: null,
    secureContext: null,
    thumbprint: null,
  };
  const keyText = el.text('Key');
  const certNameText = el.text('CertificateName');
  const certText = el.text('CertificateFile');
  const keyFileText = el.text('KeyFile');

  if (mode === 'aes') {
    if (keyText === undefined)
      throw new ConfigError(
        `${E}/Key`,
        'missing: mode aes needs a key of 32, 48 or 64 hex digits (`outpost init` makes one)',
      );
    const key = parseAesKeyHex(keyText);
    if (!key) throw new ConfigError(`${E}/Key`, 'AES key must be 32, 48 or 64 hex digits');
    enc.key = new Secret(key);
    if (certText !== undefined || keyFileText !== undefined)
      warnings.push(`${E}: CertificateFile and KeyFile are ignored in mode aes`);
    return enc;
  }
  if (keyText !== undefined) warnings.push(`${E}/Key: ignored in mode ${mode}`);
  if (mode === 'none') {
    if (certText !== undefined || keyFileText !== undefined)
      warnings.push(`${E}: CertificateFile and KeyFile are ignored in mode none`);
    return enc;
  }

  // mode ssl
  if (certText === undefined && certNameText !== undefined)
    throw new ConfigError(
      `${E}/CertificateName`,
      'certificate stores are not supported by Outpost; give <CertificateFile> and <KeyFile> (PEM) instead',
    );
  if (certNameText !== undefined) warnings.push(`${E}/CertificateName: ignored; CertificateFile is used`);
  if (certText === undefined)
    throw new ConfigError(`${E}/CertificateFile`, 'missing: mode ssl needs a PEM certificate file');
  if (keyFileText === undefined)
    throw new ConfigError(`${E}/KeyFile`, 'missing: mode ssl needs a PEM private key file');
  const certFile = resolve(configDir, expandHome(certText));
  const keyFile = resolve(configDir, expandHome(keyFileText));
  const certPem = await readConfigFile(`${E}/CertificateFile`, certFile);
  const keyPem = await readConfigFile(`${E}/KeyFile`, keyFile);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (err) {
    throw new ConfigError(
      `${E}/CertificateFile`,
      `${certFile} is not a valid PEM certificate (${(err as Error).message})`,
    );
  }
  try {
    createPrivateKey(keyPem);
  } catch (err) {
    throw new ConfigError(
      `${E}/KeyFile`,
      `${keyFile} is not a valid unencrypted PEM private key (${(err as Error).message})`,
    );
  }
  let ctx: SecureContext;
  try {
    // Also checks that the key belongs to the certificate.
    ctx = createSecureContext({ cert: certPem, key: keyPem, minVersion: 'TLSv1.2' });
  } catch (err) {
    throw new ConfigError(
      `${E}/KeyFile`,
      `${keyFile} does not match the certificate ${certFile} (${(err as Error).message})`,
    );
  }
  const now = Date.now();
  if (Date.parse(x509.validTo) < now)
    warnings.push(
      `${E}/CertificateFile: the certificate expired on ${x509.validTo}; clients that check dates will refuse it`,
    );
  enc.certificateFile = certFile;
  enc.keyFile = keyFile;
  enc.certificatePem = certPem;
  enc.privateKeyPem = new Secret(keyPem);
  enc.secureContext = ctx;
  enc.thumbprint = thumbprintOfDer(x509.raw);
  return enc;
}

async function readConfigFile(element: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(element, `cannot read ${path} (${code ?? (err as Error).message})`);
  }
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

/** Reads and parses a config file. */
export async function loadConfig(path: string): Promise<AgentConfig> {
  let xml: string;
  try {
    xml = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      '--config',
      `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  return parseConfig(xml, path);
}

/** A summary safe to log (no secrets). */
export function describeConfig(config: AgentConfig): Record<string, unknown> {
  const l = config.listener;
  return {
    configPath: config.configPath,
    mode: l.encryption.mode,
    address: l.address,
    port: l.port,
    thumbprint: l.encryption.thumbprint ?? undefined,
    allowedAddresses: l.allowedAddresses.map((r) => r.text),
    allowedRoots: config.allowedRoots,
    maxMessageSize: l.maxMessageSize,
    maxConcurrentHandshakes: l.maxConcurrentHandshakes,
    maxHandshakesPerAddress: l.maxHandshakesPerAddress,
    handshakeTimeoutMs: l.handshakeTimeoutMs,
    logFile: config.logFile,
    extensionCachePath: config.extensionCachePath,
    listenerEnabled: l.enabled,
    outbound: config.connections.servers.map((s) => ({
      server: s.label,
      thumbprint: s.thumbprint ?? 'trust store',
      maxConnections: s.maxConnections,
    })),
    controlSocket: config.operations.controlSocket,
    metrics: config.operations.metrics
      ? `${config.operations.metrics.host}:${config.operations.metrics.port}`
      : null,
    auditLogFile: config.operations.auditLogFile,
  };
}
