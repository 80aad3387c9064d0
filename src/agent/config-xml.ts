/**
 * The XML side of InedoAgent.config: the parser settings and `Element`, a
 * checked view of one element (unknown children and attributes are warnings,
 * a repeated element or text where children belong is a ConfigError naming
 * it), with the number readers every setting uses.
 */
import { XMLParser } from 'fast-xml-parser';
import { ConfigError } from './config-error.js';

export { ConfigError };

export const ROOT_ELEMENT = 'InedoAgentConfig';

export type XmlObject = Record<string, unknown>;

export const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  isArray: (_name, _jpath, _isLeaf, isAttribute) => !isAttribute,
});

/** One element of the parsed tree with its path, for checked access. */
export class Element {
  constructor(
    readonly path: string,
    private readonly obj: XmlObject,
  ) {}

  /** Warns about children and attributes that are not in the lists. */
  checkUnknown(elements: string[], attributes: string[], warnings: string[]): void {
    for (const key of Object.keys(this.obj)) {
      if (key === '#text') {
        if (String(this.obj[key]).trim() !== '')
          warnings.push(`${this.path || ROOT_ELEMENT}: unexpected text ignored`);
      } else if (key.startsWith('@_')) {
        const name = key.slice(2);
        if (!attributes.includes(name))
          warnings.push(`${this.childPath(`@${name}`)}: unknown attribute, ignored`);
      } else if (!elements.includes(key)) {
        warnings.push(`${this.childPath(key)}: unknown element, ignored`);
      }
    }
  }

  private single(name: string): unknown {
    const v = this.obj[name];
    if (v === undefined) return undefined;
    const arr = v as unknown[];
    if (arr.length > 1) throw new ConfigError(this.childPath(name), 'appears more than once');
    return arr[0];
  }

  private childPath(name: string): string {
    return this.path ? `${this.path}/${name}` : name;
  }

  child(name: string): Element | undefined {
    const v = this.single(name);
    if (v === undefined) return undefined;
    const path = this.childPath(name);
    if (typeof v === 'string') {
      if (v.trim() !== '') throw new ConfigError(path, 'expected child elements, found text');
      return new Element(path, {});
    }
    return new Element(path, v as XmlObject);
  }

  /** Trimmed text of a child element; undefined when absent or empty. */
  text(name: string): string | undefined {
    const v = this.single(name);
    if (v === undefined) return undefined;
    const path = this.childPath(name);
    let t: string;
    if (typeof v === 'string') t = v;
    else {
      const o = v as XmlObject;
      if (Object.keys(o).some((k) => k !== '#text' && !k.startsWith('@_')))
        throw new ConfigError(path, 'expected text, found child elements');
      t = o['#text'] === undefined ? '' : String(o['#text']);
    }
    t = t.trim();
    return t === '' ? undefined : t;
  }

  /** Every occurrence of a repeatable child element. */
  children(name: string): Element[] {
    const v = this.obj[name];
    if (v === undefined) return [];
    const path = this.childPath(name);
    return (v as unknown[]).map((x) => {
      if (typeof x === 'string') {
        if (x.trim() !== '') throw new ConfigError(path, 'expected attributes or child elements, found text');
        return new Element(path, {});
      }
      return new Element(path, x as XmlObject);
    });
  }

  /** Names of attributes not in the list. */
  unknownAttributes(known: string[]): string[] {
    return Object.keys(this.obj)
      .filter((k) => k.startsWith('@_') && !known.includes(k.slice(2)))
      .map((k) => k.slice(2));
  }

  attr(name: string): string | undefined {
    const v = this.obj[`@_${name}`];
    return v === undefined ? undefined : String(v).trim();
  }
}

export function parseSeconds(el: Element, name: string, fallback: number, max: number): number {
  const t = el.text(name);
  if (t === undefined) return fallback * 1000;
  const path = el.path ? `${el.path}/${name}` : name;
  if (!/^\d+(\.\d+)?$/.test(t))
    throw new ConfigError(path, `"${t}" is not a number of seconds (e.g. 10 or 2.5)`);
  const v = Number(t);
  if (v <= 0 || v > max)
    throw new ConfigError(path, `${t} seconds is out of range: must be above 0 and at most ${max}`);
  return Math.max(1, Math.round(v * 1000));
}

export function parseInteger(el: Element, name: string, fallback: number, min: number, max: number): number {
  const t = el.text(name);
  if (t === undefined) return fallback;
  const path = el.path ? `${el.path}/${name}` : name;
  if (!/^\d+$/.test(t)) throw new ConfigError(path, `"${t}" is not a whole number`);
  const v = Number(t);
  if (v < min || v > max)
    throw new ConfigError(path, `${t} is out of range: must be between ${min} and ${max}`);
  return v;
}

/** Parses an AllowedAddresses list: entries separated by ';', ',' or white space. */
