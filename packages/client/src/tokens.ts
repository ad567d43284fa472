import type {
  ConsolePage,
  KeyStatus,
  TokenCreateBody,
  TokenListQuery,
  TokenRevealData,
  TokenSearchQuery,
  TokenUpdateBody,
  TokenView,
} from "@tokenpool/core";
import { consoleResource } from "./console-resource.js";
import type { Transport } from "./http.js";

/** `client.tokens`: new-api's `/api/token/` (downstream keys). */
export interface TokensApi {
  /** `GET /api/token/?p=&size=` (`user_id` for admins): one page of tokens, keys masked. */
  list(query?: TokenListQuery): Promise<ConsolePage<TokenView>>;
  /** `GET /api/token/search?keyword=&token=`: tokens whose name or key matches, keys masked. */
  search(query: TokenSearchQuery): Promise<TokenView[]>;
  /** `GET /api/token/:id`. */
  get(id: number): Promise<TokenView>;
  /** `POST /api/token/`: one token; its `key` is the plain key, shown this once. */
  create(body: Omit<TokenCreateBody, "count">): Promise<TokenView>;
  /** `POST /api/token/` with `count`: that many tokens, all or nothing. */
  create(body: TokenCreateBody & { count: number }): Promise<TokenView[]>;
  /** `PUT /api/token/`: changes the fields given (e.g. `remain_quota` to set a quota). */
  update(body: TokenUpdateBody): Promise<TokenView>;
  /** `PUT /api/token/?status_only=true`: enables or disables a token. */
  setStatus(id: number, status: KeyStatus): Promise<TokenView>;
  /** `DELETE /api/token/:id`. */
  delete(id: number): Promise<void>;
  /** `POST /api/token/batch` `{ ids }`: deletes all or none; resolves with the number deleted. */
  deleteBatch(ids: number[]): Promise<number>;
  /** `POST /api/token/:id/key`: the full key. */
  reveal(id: number): Promise<string>;
}

/** `client.tokens` on a transport. */
export function tokensApi(t: Transport): TokensApi {
  const auth = "console" as const;
  return {
    ...consoleResource(t, "api/token"),
    create: ((body: TokenCreateBody) =>
      t.envelope("POST", "api/token/", { auth, json: body })) as TokensApi["create"],
    setStatus: (id, status) =>
      t.envelope("PUT", "api/token/", {
        auth,
        query: { status_only: "true" },
        json: { id, status },
      }),
    deleteBatch: (ids) => t.envelope("POST", "api/token/batch", { auth, json: { ids } }),
    reveal: async (id) =>
      (await t.envelope<TokenRevealData>("POST", `api/token/${id}/key`, { auth })).key,
  };
}
