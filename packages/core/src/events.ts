import { EventEmitter } from "eventemitter3";
import type { UsageRecord } from "./store/types.js";

/** Every event a gateway emits, with its payload. Payloads never contain secrets. */
export interface GatewayEvents {
  /** A request's usage record (with the quota its settlement charged) was written to the store. */
  "usage.recorded": (record: UsageRecord) => void;
  /** A key's reservation was refused because its quota (or its owner's) is used up. */
  "key.exhausted": (info: { keyId: number; reason: "key_quota" | "user_quota" }) => void;
  /** A credential was chosen for a request. */
  "credential.selected": (info: { credentialId: string; provider: string; model: string }) => void;
  /** A credential was cooled down for a model after a 429/quota error or repeated failures. */
  "credential.cooldown": (info: {
    credentialId: string;
    model: string;
    until: number;
    status: number;
  }) => void;
  /** An upstream call failed (status 0 = connection error). */
  "credential.error": (info: {
    credentialId: string;
    model: string;
    status: number;
    message: string;
  }) => void;
  /** A runtime setting changed (locally or in another instance). */
  "settings.changed": (info: { name: string; value: unknown }) => void;
  /** Something went wrong outside a request's own error handling (store write, flush ...). */
  error: (info: { where: string; error: Error }) => void;
}

/** The gateway's typed event emitter. */
export class GatewayEmitter extends EventEmitter<GatewayEvents> {}
