import type {
  ConsolePage,
  ConsolePageQuery,
  UserAccessTokenData,
  UserCreateBody,
  UserCreatedData,
  UserSearchQuery,
  UserUpdateBody,
  NewApiUserView as UserView,
} from "@tokenpool/core";
import { consoleResource } from "./console-resource.js";
import type { Transport } from "./http.js";

/** `client.users`: the user administration under `/api/user/` (admins only). */
export interface UsersApi {
  /** `GET /api/user/?p=&size=`. */
  list(query?: ConsolePageQuery): Promise<ConsolePage<UserView>>;
  /** `GET /api/user/search?keyword=`. */
  search(query: UserSearchQuery): Promise<ConsolePage<UserView>>;
  /** `GET /api/user/:id`. */
  get(id: number): Promise<UserView>;
  /** `POST /api/user/`: the user and its `access_token` (shown this once). */
  create(body: UserCreateBody): Promise<UserCreatedData>;
  /** `PUT /api/user/`: changes the fields given (e.g. `quota`). */
  update(body: UserUpdateBody): Promise<UserView>;
  /** `DELETE /api/user/:id` (deletes the user's tokens too). */
  delete(id: number): Promise<void>;
  /** `POST /api/user/:id/token`: a new access token; the old one stops working. */
  issueAccessToken(id: number): Promise<string>;
}

/** `client.users` on a transport. */
export function usersApi(t: Transport): UsersApi {
  const auth = "console" as const;
  return {
    ...consoleResource(t, "api/user"),
    create: (body) => t.envelope("POST", "api/user/", { auth, json: body }),
    issueAccessToken: async (id) =>
      (await t.envelope<UserAccessTokenData>("POST", `api/user/${id}/token`, { auth }))
        .access_token,
  };
}
