/**
 * What every command shares and the top-level help shows: the exit codes and
 * the connection options. Free of the SDK, so `outpost serve` and
 * `outpost --help` do not load the client to print them.
 */
import { DEFAULT_PORT } from '../protocol/constants.js';

export const EXIT = {
  OK: 0,
  USAGE: 1,
  CONNECTION: 2,
  REMOTE: 3,
  FANOUT: 4,
  INTERRUPTED: 130,
} as const;

/** The exit-code table shown by `outpost --help`. */
export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    usage, configuration or local error (bad argument, bad HOST:PATH, unreadable file)
  2    connection error (unreachable host, wrong key, mode mismatch, TLS, timeout)
  3    remote error (the agent refused the operation: NotFound, AccessDenied, …)
  4    fan-out (--hosts): at least one host failed (see the summary table)
  130  interrupted (Ctrl-C)
  exec exits with the remote command's code (128+N if killed by signal N)`;

export const CONNECTION_HELP = `
Connection options (every client command):
  HOST[:PORT]        the agent (default port ${DEFAULT_PORT}); IPv6 as [::1] or [::1]:${DEFAULT_PORT}
  ALIAS / @GROUP     a host or group of the hosts file (~/.config/outpost/hosts.toml; outpost hosts add)
  HOST[:PORT]:PATH   a remote path, e.g. web01:/srv/app, @web:/srv/app or [::1]:${DEFAULT_PORT}:/srv/app
  --hosts FILE       every host listed in FILE; --parallel N, --fail-fast; exit 4 if any host failed
  -p PORT            the port of hosts that name none
  --key HEX          AES key of the agent (default: $OUTPOST_KEY); --key-file FILE reads it from a file
  --ca FILE / --thumbprint HEX   mode ssl: trust this certificate / pin this SHA-256 thumbprint
  --mode none|ssl|aes            default: aes with a key, ssl with --ca/--thumbprint, else none`;
