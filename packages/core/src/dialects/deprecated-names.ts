/**
 * The names the new-api and antigravity dialects had before each dialect got one name
 * ("console" and "pool"), kept so that code written against them still compiles. Each is the
 * new name under the old one.
 *
 * @module
 */
import type * as Antigravity from "./antigravity/routes.js";
import type { NewApiPrincipal } from "./new-api/auth.js";
import type * as NewApi from "./new-api/wire.js";

/** @deprecated Renamed `AntigravityTokenView`. */
export type PoolTokenView = Antigravity.AntigravityTokenView;
/** @deprecated Renamed `AntigravityTokenFields`. */
export type PoolTokenFields = Antigravity.AntigravityTokenFields;
/** @deprecated Renamed `AntigravityTokenAddBody`. */
export type PoolTokenAddBody = Antigravity.AntigravityTokenAddBody;
/** @deprecated Renamed `AntigravityTokenUpdateBody`. */
export type PoolTokenUpdateBody = Antigravity.AntigravityTokenUpdateBody;
/** @deprecated Renamed `AntigravityTokenListResponse`. */
export type PoolTokenListResponse = Antigravity.AntigravityTokenListResponse;
/** @deprecated Renamed `AntigravityMessageResponse`. */
export type PoolMessageResponse<T = undefined> = Antigravity.AntigravityMessageResponse<T>;
/** @deprecated Renamed `AntigravityTokenAddedData`. */
export type PoolTokenAddedData = Antigravity.AntigravityTokenAddedData;
/** @deprecated Renamed `AntigravityErrorResponse`. */
export type PoolErrorResponse = Antigravity.AntigravityErrorResponse;
/** @deprecated Renamed `NewApiResponse`. */
export type ConsoleResponse<T = undefined> = NewApi.NewApiResponse<T>;
/** @deprecated Renamed `NewApiSuccessResponse`. */
export type ConsoleSuccessResponse<T = undefined> = NewApi.NewApiSuccessResponse<T>;
/** @deprecated Renamed `NewApiErrorResponse`. */
export type ConsoleErrorResponse = NewApi.NewApiErrorResponse;
/** @deprecated Renamed `NewApiPage`. */
export type ConsolePage<T> = NewApi.NewApiPage<T>;
/** @deprecated Renamed `NewApiPageQuery`. */
export type ConsolePageQuery = NewApi.NewApiPageQuery;
/** @deprecated Renamed {@link NewApiPrincipal}. */
export type ConsolePrincipal = NewApiPrincipal;
