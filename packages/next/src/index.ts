export {
  type GatewaySource,
  type NextRouteHandler,
  type NextRouteHandlers,
  type NextRouteHandlersOptions,
  toNextRouteHandlers,
} from "./route-handlers.js";
export { forgetGateway, type GetGatewayOptions, getGateway } from "./singleton.js";
