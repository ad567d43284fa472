/**
 * The nesting limit of JSON request bodies. Translators, the token counter and
 * `JSON.stringify` walk a body recursively; a body nested thousands of levels deep (say in a
 * tool's `input_schema`) would overflow the stack there and answer 500. Checking the depth once,
 * where a body is parsed, turns that into a 400 in the route's own error format.
 *
 * @module
 */
import { GatewayError } from "../errors.js";

/**
 * Deepest nesting of objects and arrays a JSON request body may have (the outermost object is
 * level 1). Real requests stay far below it: a tool schema rarely goes past 20 levels.
 */
export const MAX_JSON_DEPTH = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACE = 0x7d;
const CLOSE_BRACKET = 0x5d;

/**
 * Whether the JSON text in `bytes` nests objects and arrays deeper than `max` levels. One pass
 * over the bytes, no allocation: brackets inside strings (escapes honoured) do not count, and a
 * string is skipped with a native search for its closing quote, so a body that is mostly one long
 * string (a base64 image) costs next to nothing. UTF-8 continuation bytes are all >= 0x80, so
 * they can never be taken for a bracket or a quote. The text need not be valid JSON; an
 * unbalanced one just counts what it opens, an unterminated string ends the scan.
 */
export function jsonDepthExceeds(bytes: Uint8Array, max: number = MAX_JSON_DEPTH): boolean {
  // Going past `max` levels takes more than `max` opening brackets.
  if (bytes.length <= max) return false;
  let depth = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === QUOTE) {
      // The closing quote is the next one not escaped, i.e. preceded by an even run of backslashes
      // (the opening quote stops the run).
      for (;;) {
        i = bytes.indexOf(QUOTE, i + 1);
        if (i < 0) return false;
        let slashes = 0;
        while (bytes[i - 1 - slashes] === BACKSLASH) slashes++;
        if (slashes % 2 === 0) break;
      }
    } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
      if (++depth > max) return true;
    } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) depth--;
  }
  return false;
}

/** The 400 of a body nested deeper than {@link MAX_JSON_DEPTH}; each dialect renders it. */
export function jsonTooDeep(max: number = MAX_JSON_DEPTH): GatewayError {
  return new GatewayError("JSON_TOO_DEEP", `The JSON body is nested more than ${max} levels deep.`);
}

/** Throws {@link jsonTooDeep} when `bytes` nest deeper than `max` (see {@link jsonDepthExceeds}). */
export function checkJsonDepth(bytes: Uint8Array, max: number = MAX_JSON_DEPTH): void {
  if (jsonDepthExceeds(bytes, max)) throw jsonTooDeep(max);
}

/**
 * Whether an already parsed value (a framework's `req.body`) nests objects and arrays deeper
 * than `max` levels. Iterative, so a value deep enough to overflow `JSON.stringify` cannot
 * overflow this check; a cyclic value counts as too deep.
 */
export function valueDepthExceeds(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (typeof value !== "object" || value === null) return false;
  const stack: [object, number][] = [[value, 1]];
  for (let top = stack.pop(); top; top = stack.pop()) {
    const [v, depth] = top;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
