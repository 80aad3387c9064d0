/**
 * The systemd unit `outpost service install` writes (docs/OPERATIONS.md,
 * "Hardening" says what each line confines and what it does not). Pure:
 * config in, unit text out, so tests check it without systemd.
 */
import { dirname, join, sep } from 'node:path';
import type { AgentConfig } from '../agent/index.js';

export interface UnitOptions {
  /** node and the CLI's main.js. */
  node: string;
  main: string;
  configPath: string;
  /** Run as this user, with the sandbox; undefined: as root, no sandbox. */
  user?: string | undefined;
}

export interface Unit {
  text: string;
  /** Why the sandbox is off or partial; printed by the command. */
  notes: string[];
  /** Directories the agent writes (created and given to the user at install). */
  writable: string[];
}

/** Quotes a word for a unit file: `%` and `$` are doubled, and a word with spaces or quotes is double-quoted. */
export function unitWord(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /[\s"'\\]/.test(escaped) ? `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"` : escaped;
}

function unique(paths: (string | null | undefined)[]): string[] {
  const out: string[] = [];
  for (const p of paths) if (p && !out.includes(p)) out.push(p);
  return out;
}

/** True when `p` is `dir` or inside it. */
function inside(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Drops paths that lie inside another one of the list. */
function outermost(paths: string[]): string[] {
  return paths.filter((p, i) => !paths.some((q, j) => j !== i && q !== p && inside(p, q)));
}

export function renderUnit(config: AgentConfig, options: UnitOptions): Unit {
  const notes: string[] = [];
  const ops = config.operations;
  const stateDirs = unique([
    join(config.configDir, 'state'),
    ...Object.values(config.rootPaths),
    config.extensionCachePath,
    dirname(ops.controlSocket),
    config.logFile ? dirname(config.logFile) : null,
    ops.auditLogFile ? dirname(ops.auditLogFile) : null,
  ]);
  const lowPort = config.listener.port > 0 && config.listener.port < 1024;
  const lines = [
    '# Written by `outpost service install`; see docs/OPERATIONS.md. Re-run install to regenerate.',
    '[Unit]',
    'Description=Outpost agent (Inedo Agent protocol v1)',
    'Documentation=https://github.com/outpost/outpost/blob/main/docs/OPERATIONS.md',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[options.node, options.main, 'serve', '--config', options.configPath].map(unitWord).join(' ')}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    'RestartSec=5s',
    'TimeoutStopSec=15s',
    // Remote processes are the agent's grandchildren: stopping the unit ends them too.
    'KillMode=control-group',
    'LimitNOFILE=65536',
    // JSON log lines to the journal (no TTY there anyway); npm's variables never reach remote processes.
    'Environment=OUTPOST_LOG_JSON=1',
  ];
  if (options.user === undefined) {
    notes.push(
      'no --user: the agent runs as root without a sandbox (remote processes can do anything root can); pass --user NAME to confine it',
    );
  } else {
    lines.push(
      '',
      '# Sandbox (docs/OPERATIONS.md, "Hardening").',
      `User=${unitWord(options.user)}`,
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      'PrivateDevices=yes',
      'ProtectKernelTunables=yes',
      'ProtectKernelModules=yes',
      'ProtectKernelLogs=yes',
      'ProtectControlGroups=yes',
      'ProtectClock=yes',
      'ProtectHostname=yes',
      'RestrictSUIDSGID=yes',
      'RestrictRealtime=yes',
      'RestrictNamespaces=yes',
      'LockPersonality=yes',
      'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK',
      'UMask=0027',
    );
    if (lowPort)
      lines.push('AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE');
    else lines.push('CapabilityBoundingSet=');
    if (config.allowedRoots === null) {
      notes.push(
        'the config has no AllowedRoots: the file-system sandbox (ProtectSystem=strict, ReadWritePaths) cannot apply, ' +
          `so remote processes may write wherever ${options.user} may; set AllowedRoots and re-run install`,
      );
    } else {
      const rw = outermost(unique([...config.allowedRoots, ...stateDirs]));
      const exposed = rw.find((d) => inside(options.configPath, d));
      if (exposed)
        notes.push(
          `the config file lies inside ${exposed}, which the service may write: the agent and its remote processes could rewrite their own config; ` +
            'keep LogFile, AuditLogFile, ControlSocket and AllowedRoots out of the config directory',
        );
      lines.push(
        // The whole file system read-only for the agent and every process it starts...
        'ProtectSystem=strict',
        // ...home directories too (reads stay as the user's permissions allow)...
        'ProtectHome=read-only',
        // ...except these: AllowedRoots, the root paths and the agent's state. '-': a missing one is skipped.
        `ReadWritePaths=${rw.map((p) => unitWord(`-${p}`)).join(' ')}`,
      );
    }
  }
  lines.push('', '[Install]', 'WantedBy=multi-user.target', '');
  return { text: lines.join('\n'), notes, writable: stateDirs };
}
