/**
 * Rotation of the server secret: everything stored under it is re-encrypted (credential secrets,
 * downstream keys' `keyCipher`) or re-hashed (downstream keys' `keyHash`) under the new one.
 *
 * @module
 */
import { GatewayError } from "../errors.js";
import { type LoggerLike, silentLogger, toLogger } from "../logger.js";
import { SecretBox } from "../util/secrets.js";
import {
  hasPlaintextSecret,
  isSealedSecret,
  openSecret,
  sealSecret,
  withCredentialLock,
} from "./sealed.js";
import type { Store } from "./types.js";

/** Options of {@link rotateSecret}. */
export interface RotateSecretOptions {
  /** The adapter itself (not a gateway's view of it). */
  store: Store;
  /** The server secret the store was written with. */
  from: string;
  /** The new server secret (at least 32 characters). */
  to: string;
  /** Progress and problems (ids and counts, never a secret). @default silentLogger */
  logger?: LoggerLike;
}

/** What {@link rotateSecret} did. Ids only, never a secret. */
export interface RotateSecretReport {
  credentials: {
    /** Sealed with `from`, now sealed with `to`. */
    resealed: number;
    /** Plaintext (an earlier version), now sealed with `to`. */
    sealed: number;
    /** Already sealed with `to` (a run that stopped half-way, or a second run), or empty. */
    current: number;
    /** Left in the clear: the adapter's format is plaintext by design (store-file). */
    plaintext: number;
    /** Ids of credentials neither secret opens: left as they are. */
    unreadable: string[];
  };
  keys: {
    /** Re-encrypted and re-hashed under `to`. */
    rekeyed: number;
    /** Already under `to`. */
    current: number;
    /**
     * Ids of keys stored without `keyCipher`: their plain form is unknown, so they cannot be
     * re-hashed and stop authenticating under `to`. They are left as they are (revoke or reissue them).
     */
    withoutCipher: number[];
    /** Ids of keys whose `keyCipher` neither secret opens: left as they are. */
    unreadable: number[];
  };
  users: {
    /**
     * Users holding an access token. Only a keyed hash of such a token is stored, so it cannot
     * be carried over: tokens issued under `from` stop verifying under `to` (their hashes are
     * left in place, so a second run never touches tokens issued after the first). Issue new
     * ones (`gateway.users.issueAccessToken`).
     */
    withAccessToken: number;
  };
}

const PAGE = 500;

/**
 * Re-encrypts everything a store keeps under the server secret `from` so that it works under
 * `to`: every credential secret (sealed again with `to`; plaintext ones written by an earlier
 * version are sealed too) and every downstream key (`keyCipher` re-encrypted, `keyHash`
 * recomputed from the decrypted key, in one atomic `keys.rekey`).
 *
 * Safe to run twice and resumable after a crash: each record is rewritten in one atomic step,
 * and `to` is tried first when decrypting, so records already rotated are recognised and left
 * alone. Run it with the gateways on this store stopped (they hold `from` until they restart
 * with `to`); credential secrets are rewritten under their refresh lock all the same.
 *
 * Not carried over: users' access tokens (see {@link RotateSecretReport.users}) and OAuth
 * logins in progress (their short-lived state is lost; start them again). Pool-dialect ids
 * derived from a refresh token under `from` are ids, not secrets: they stay as they are.
 *
 * @example
 * ```ts
 * const report = await rotateSecret({ store: sqliteStore({ filename }), from: oldSecret, to: newSecret });
 * if (report.credentials.unreadable.length > 0) console.error("unreadable:", report.credentials.unreadable);
 * ```
 */
export async function rotateSecret(options: RotateSecretOptions): Promise<RotateSecretReport> {
  const { store, from, to } = options;
  const logger = options.logger ? toLogger(options.logger) : silentLogger;
  if (typeof to !== "string" || to.length < 32)
    throw new GatewayError(
      "INVALID_OPTIONS",
      "the new server secret needs at least 32 characters (e.g. `openssl rand -hex 32`)",
    );
  if (typeof from !== "string" || from === "")
    throw new GatewayError("INVALID_OPTIONS", "the current server secret is required");
  const oldBox = new SecretBox(from);
  const newBox = new SecretBox(to);
  const report: RotateSecretReport = {
    credentials: { resealed: 0, sealed: 0, current: 0, plaintext: 0, unreadable: [] },
    keys: { rekeyed: 0, current: 0, withoutCipher: [], unreadable: [] },
    users: { withAccessToken: 0 },
  };

  // Credential secrets.
  const plaintextFormat = store.capabilities.plaintextSecrets === true;
  for (const listed of await store.credentials.list()) {
    if (plaintextFormat) {
      report.credentials.plaintext++;
      continue;
    }
    const outcome = await withCredentialLock(store, listed.id, async () => {
      const rec = await store.credentials.get(listed.id);
      if (!rec) return "gone" as const;
      if (!isSealedSecret(rec.secret)) {
        if (!hasPlaintextSecret(rec.secret)) return "current" as const;
        await store.credentials.update(rec.id, { secret: sealSecret(newBox, rec.secret) });
        return "sealed" as const;
      }
      if (openSecret(newBox, rec.secret) !== null) return "current" as const;
      const plain = openSecret(oldBox, rec.secret);
      if (plain === null) return "unreadable" as const;
      await store.credentials.update(rec.id, { secret: sealSecret(newBox, plain) });
      return "resealed" as const;
    });
    if (outcome === undefined)
      throw new GatewayError(
        "STORE_ERROR",
        `could not take the lock of credential ${listed.id}: is a gateway still refreshing it? Stop the gateways and run the rotation again`,
      );
    if (outcome === "unreadable") {
      report.credentials.unreadable.push(listed.id);
      logger.error("credential secret opens with neither secret; left as it is", {
        credentialId: listed.id,
      });
    } else if (outcome !== "gone") report.credentials[outcome]++;
  }

  // Downstream keys. Re-keying never changes the order of the list, so paging stays stable.
  for (let offset = 0; ; offset += PAGE) {
    const page = await store.keys.list({ offset, limit: PAGE });
    for (const k of page.items) {
      if (k.keyCipher === null) {
        report.keys.withoutCipher.push(k.id);
        continue;
      }
      const current = newBox.decrypt(k.keyCipher);
      if (current !== null) {
        const hash = newBox.hash(current);
        if (hash === k.keyHash) report.keys.current++;
        else {
          await store.keys.rekey(k.id, hash, k.keyCipher);
          report.keys.rekeyed++;
        }
        continue;
      }
      const plain = oldBox.decrypt(k.keyCipher);
      if (plain === null) {
        report.keys.unreadable.push(k.id);
        logger.error("downstream key opens with neither secret; left as it is", { keyId: k.id });
        continue;
      }
      await store.keys.rekey(k.id, newBox.hash(plain), newBox.encrypt(plain));
      report.keys.rekeyed++;
    }
    if (page.items.length < PAGE || offset + PAGE >= page.total) break;
  }
  if (report.keys.withoutCipher.length > 0)
    logger.warn("downstream keys without a cipher cannot be re-hashed and stop working", {
      keyIds: report.keys.withoutCipher,
    });

  // Users' access tokens: counted, not changed (see the report's doc).
  for (let offset = 0; ; offset += PAGE) {
    const page = await store.users.list({ offset, limit: PAGE });
    for (const u of page.items) if (u.accessTokenHash !== null) report.users.withAccessToken++;
    if (page.items.length < PAGE || offset + PAGE >= page.total) break;
  }
  logger.info("server secret rotated", {
    credentials: { ...report.credentials, unreadable: report.credentials.unreadable.length },
    keys: {
      ...report.keys,
      withoutCipher: report.keys.withoutCipher.length,
      unreadable: report.keys.unreadable.length,
    },
    users: report.users,
  });
  return report;
}
