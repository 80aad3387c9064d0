/**
 * A value that must never reach a log: JSON serialisation (pino) and
 * `util.inspect` (console.log) both show `[redacted]`. Read it with `reveal()`
 * at the one place that needs it.
 */
import { inspect } from 'node:util';

export class Secret<T> {
  readonly #value: T;
  constructor(value: T) {
    this.#value = value;
  }
  reveal(): T {
    return this.#value;
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}
