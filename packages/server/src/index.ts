export { applyConfig, loadConfig, type ServerConfig } from "./config.js";
export {
  type RotateServerSecretOptions,
  type RotateServerSecretResult,
  rotateServerSecret,
} from "./rotate-secret.js";
export { DEFAULT_STORE, type RunningServer, type ServeOptions, startServer } from "./serve.js";
