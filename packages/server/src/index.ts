export { applyConfig, loadConfig, type ServerConfig } from "./config.js";
export { DEFAULT_STORE, type RunningServer, type ServeOptions, startServer } from "./serve.js";
