/**
 * Where `outpost status` and `outpost reload` find the agent's control
 * socket: --socket PATH, else the ControlSocket of the config (--config PATH
 * or the default locations; default `<config dir>/state/control.sock`).
 */
import { type ControlAnswer, type ControlRequest, requestControl } from '../agent/control.js';
import { findConfigFile, loadConfig } from '../agent/index.js';
import { CliError, EXIT } from './errors.js';

export interface ControlFlags {
  config?: string;
  socket?: string;
}

export async function controlSocketPath(flags: ControlFlags): Promise<string> {
  if (flags.socket) return flags.socket;
  const config = await loadConfig(await findConfigFile(flags.config));
  return config.operations.controlSocket;
}

/** Asks the agent; a socket nobody answers on is a connection error (exit 2) that says what to check. */
export async function askAgent(flags: ControlFlags, request: ControlRequest): Promise<ControlAnswer> {
  const path = await controlSocketPath(flags);
  try {
    return await requestControl(path, request);
  } catch (err) {
    throw new CliError(
      `${(err as Error).message}; is the agent running (outpost serve, or systemctl status outpost), and are you its user or root?`,
      EXIT.CONNECTION,
    );
  }
}
