import type { Json } from "./types.js";

/** Narrowing helpers shared by the translators: they read untrusted JSON without throwing. */

/** Whether `v` is a plain JSON object (not null, not an array). */
export function isObj(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `v` when it is an object, else an empty object. */
export function obj(v: unknown): Json {
  return isObj(v) ? v : {};
}

/** `v` when it is an array, else an empty array. */
export function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** `v` when it is a string. */
export function str(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** `v` when it is a finite number. */
export function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** The current time in Unix seconds. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}
