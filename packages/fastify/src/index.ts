/**
 * The Fastify binding: the gateway as an encapsulated Fastify 5 plugin.
 *
 * @module
 */
import type { Gateway } from "@tokenpool/core";
import { serveNodeRequest } from "@tokenpool/core/node";
import type { FastifyPluginCallback, FastifyReply, FastifyRequest } from "fastify";

/** Options of {@link tokenpoolPlugin} (beside Fastify's own `prefix`). */
export interface TokenpoolPluginOptions {
  /** The gateway to serve (from `createGateway()`). */
  gateway: Pick<Gateway, "serve">;
  /**
   * The client IP the gateway sees (key IP allowlists, management's loopback rule, bans).
   * @default (request) => request.ip — the socket's peer, or the address Fastify resolved from
   * `X-Forwarded-For` under its `trustProxy` option.
   */
  clientIp?: (request: FastifyRequest) => string | undefined;
}

/**
 * A Fastify plugin serving every gateway route (proxy and management) under the prefix it is
 * registered with, for every method. It is encapsulated on purpose (no `fastify-plugin`): its
 * content-type parsers, which leave the body unread for the gateway, apply to its own routes only,
 * so the host app's routes keep Fastify's usual JSON parsing. Replies stream as they come
 * (`reply.hijack()`, then written to the node response).
 *
 * @example
 * ```ts
 * import Fastify from "fastify";
 * import { tokenpoolPlugin } from "@tokenpool/fastify";
 *
 * const app = Fastify();
 * await app.register(tokenpoolPlugin, { gateway, prefix: "/llm" }); // POST /llm/v1/chat/completions
 * await app.listen({ port: 3000 });
 * ```
 */
export const tokenpoolPlugin: FastifyPluginCallback<TokenpoolPluginOptions> = (
  app,
  options,
  done,
) => {
  const { gateway } = options;
  if (!gateway || typeof gateway.serve !== "function") {
    done(new Error("tokenpoolPlugin needs a `gateway` option: register it with { gateway }."));
    return;
  }
  const clientIp = options.clientIp ?? ((request: FastifyRequest) => request.ip);
  const prefix = app.prefix;

  // Every content type, or none, is accepted and left unread: the gateway reads the raw stream
  // itself (with its own size limit) and answers bad bodies in the route's own error format.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, _payload, next) => next(null));

  const handler = (request: FastifyRequest, reply: FastifyReply) => {
    reply.hijack();
    // request.url is the full target: the gateway routes on what follows the prefix.
    const rest = request.url.slice(prefix.length);
    const url = rest === "" || rest[0] === "?" ? `/${rest}` : rest;
    void serveNodeRequest(gateway, request.raw, reply.raw, {
      url,
      remoteAddress: clientIp(request),
    });
  };
  const routeOptions = { exposeHeadRoute: false, handler };
  app.all("/", routeOptions);
  app.all("/*", routeOptions);
  done();
};
