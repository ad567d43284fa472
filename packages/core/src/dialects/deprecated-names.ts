/**
 * The names the new-api and antigravity dialects had before each dialect got one name
 * ("console" and "pool"), kept so that code written against them still compiles. Each is the
 * new name under the old one.
 *
 * @module
 */
import type {
  AntigravityErrorResponse,
  AntigravityMessageResponse,
  AntigravityTokenAddBody,
  AntigravityTokenAddedData,
  AntigravityTokenFields,
  AntigravityTokenListResponse,
  AntigravityTokenUpdateBody,
  AntigravityTokenView,
} from "./antigravity/routes.js";
import type { NewApiPrincipal } from "./new-api/auth.js";
import type {
  NewApiErrorResponse,
  NewApiPage,
  NewApiPageQuery,
  NewApiResponse,
  NewApiSuccessResponse,
} from "./new-api/wire.js";

/** @deprecated Renamed {@link AntigravityTokenView}. */
export type PoolTokenView = AntigravityTokenView;
/** @deprecated Renamed {@link AntigravityTokenFields}. */
export type PoolTokenFields = AntigravityTokenFields;
/** @deprecated Renamed {@link AntigravityTokenAddBody}. */
export type PoolTokenAddBody = AntigravityTokenAddBody;
/** @deprecated Renamed {@link AntigravityTokenUpdateBody}. */
export type PoolTokenUpdateBody = AntigravityTokenUpdateBody;
/** @deprecated Renamed {@link AntigravityTokenListResponse}. */
export type PoolTokenListResponse = AntigravityTokenListResponse;
/** @deprecated Renamed {@link AntigravityMessageResponse}. */
export type PoolMessageResponse<T = undefined> = AntigravityMessageResponse<T>;
/** @deprecated Renamed {@link AntigravityTokenAddedData}. */
export type PoolTokenAddedData = AntigravityTokenAddedData;
/** @deprecated Renamed {@link AntigravityErrorResponse}. */
export type PoolErrorResponse = AntigravityErrorResponse;
/** @deprecated Renamed {@link NewApiResponse}. */
export type ConsoleResponse<T = undefined> = NewApiResponse<T>;
/** @deprecated Renamed {@link NewApiSuccessResponse}. */
export type ConsoleSuccessResponse<T = undefined> = NewApiSuccessResponse<T>;
/** @deprecated Renamed {@link NewApiErrorResponse}. */
export type ConsoleErrorResponse = NewApiErrorResponse;
/** @deprecated Renamed {@link NewApiPage}. */
export type ConsolePage<T> = NewApiPage<T>;
/** @deprecated Renamed {@link NewApiPageQuery}. */
export type ConsolePageQuery = NewApiPageQuery;
/** @deprecated Renamed {@link NewApiPrincipal}. */
export type ConsolePrincipal = NewApiPrincipal;
