/**
 * A problem in the configuration; `element` is the path of the offending
 * element (`Listener/Port`). Its own module, free of the XML parser, so the
 * CLI can recognise one without loading the configuration code.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly element: string;
  constructor(element: string, problem: string) {
    super(`${element}: ${problem}`);
    this.element = element;
  }
}
