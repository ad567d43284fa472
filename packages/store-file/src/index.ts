export { type FileStoreError, type FileStoreOptions, fileStore } from "./file-store.js";
export { DirectoryLockedError } from "./fs-util.js";
